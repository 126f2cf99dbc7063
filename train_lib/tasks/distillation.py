"""Knowledge distillation (Hinton et al. 2015): a student learns from a frozen teacher's softened
logits and from the labels.

  config.task = {'name': 'distillation', 'student': 'classification', 'teacher': 'teacher',
                 'alpha': 0.9, 'temperature': 4.0}
  config.frozen.teacher = {'workdir': '/tmp/lamina/fmnist_resnet'}

loss = alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T)) + (1 - alpha) * CE(labels).
T^2 keeps the soft term's gradients on the scale of the hard one's as T grows. The teacher is
any classifier or language-model run of this codebase, restored read-only as a frozen part; its
logits are computed inside the same jitted step, on the same (augmented) batch as the student's.
The student is `config.model`, trained by its own task ('classification' or 'language_model'),
which also gives the evaluation metrics: a distilled run is a classifier or an LM like any other,
so it can be sampled, exported, quantized or itself become a teacher.
"""

import copy

import jax
import jax.numpy as jnp
import ml_collections
import optax

from train_lib import frozen, registry
from train_lib.errors import ConfigError
from train_lib.tasks import base
from train_lib.tasks.classification import ClassificationTask
from train_lib.tasks.language_model import LanguageModelTask

STUDENT_TASKS = {'classification': ClassificationTask, 'language_model': LanguageModelTask}
DISTILLATION_FIELDS = {'student': 'classification', 'teacher': 'teacher', 'alpha': 0.9, 'temperature': 4.0}


class DistillationTask(base.Task):
  """The student's own task, with the teacher's soft targets mixed into its loss."""

  def __init__(self, config: ml_collections.ConfigDict, data_info: dict):
    student_name = config.task.get('student', DISTILLATION_FIELDS['student'])
    student_cls = registry.lookup(STUDENT_TASKS, student_name, kind='student task', where='task.student')
    self.config_fields = {**DISTILLATION_FIELDS, **student_cls.config_fields}
    super().__init__(config, data_info)
    self.alpha = float(self.arg('alpha'))
    self.temperature = float(self.arg('temperature'))
    if not 0.0 <= self.alpha <= 1.0:
      raise ConfigError(f'task.alpha (the weight of the teacher term) must be in [0, 1], got {self.alpha}')
    if self.temperature <= 0:
      raise ConfigError(f'task.temperature must be > 0, got {self.temperature}')
    student_config = copy.deepcopy(config)
    student_config.task = {k: v for k, v in config.task.items() if k not in DISTILLATION_FIELDS or k == 'name'}
    student_config.task.name = student_name
    self.student = student_cls(student_config, data_info)
    self.model = self.student.model
    self.tokens_per_example = self.student.tokens_per_example
    self.eval_count_name = self.student.eval_count_name
    self.teacher_name = self.arg('teacher')
    self.teacher = frozen.part(config, self.teacher_name).model

  def inputs(self, batch: dict) -> jax.Array:
    """What the student (and the teacher) read."""
    return self.student.inputs(batch)

  def init_variables(self, rng: jax.Array, batch: dict) -> dict:
    self._check_teacher(batch)
    return self.student.init_variables(rng, batch)

  def _check_teacher(self, batch: dict) -> None:
    """The teacher must score the same classes (or vocabulary) as the student."""
    inputs, rng = self.inputs(batch), jax.random.key(0)
    student = jax.eval_shape(lambda: self.model.init_with_output(rng, inputs, train=False)[0])
    teacher = jax.eval_shape(lambda: self.teacher.init_with_output(rng, inputs, train=False)[0])
    if teacher.shape != student.shape:
      raise ConfigError(f'frozen.{self.teacher_name} gives logits of shape {teacher.shape} and the student '
                        f'{student.shape}; distil from a teacher trained on the same classes (or vocabulary)')

  def loss(self, params, state, batch, rng):
    logits, model_state = self.student.logits(params, state.model_state, batch, train=True, rng=rng)
    hard, metrics = self.student.supervised_loss(logits, batch)
    teacher_logits = self.teacher.apply(state.frozen[self.teacher_name], self.inputs(batch), train=False)
    soft = distillation_kl(logits, jax.lax.stop_gradient(teacher_logits), self.temperature,
                           self.student.logit_weights(batch))
    loss = self.alpha * soft + (1.0 - self.alpha) * hard
    return loss, (model_state, {**metrics, 'kl': soft / self.temperature**2, 'hard_loss': hard})

  def eval_metrics(self, params, state, batch):
    return self.student.eval_metrics(params, state, batch)

  def eval_weights(self, batch: dict) -> jax.Array | None:
    return self.student.eval_weights(batch)


def distillation_kl(student_logits: jax.Array, teacher_logits: jax.Array, temperature: float,
                    weights: jax.Array) -> jax.Array:
  """T^2 * KL(softmax(teacher / T) || softmax(student / T)), averaged over the rows `weights` counts
  (weights has the logits' shape without the class axis). Exactly zero for equal logits."""
  student_log_p = jax.nn.log_softmax(student_logits.astype(jnp.float32) / temperature)
  teacher_log_p = jax.nn.log_softmax(teacher_logits.astype(jnp.float32) / temperature)
  per_row = optax.losses.kl_divergence_with_log_targets(student_log_p, teacher_log_p)
  return temperature**2 * (per_row * weights).sum() / jnp.maximum(weights.sum(), 1.0)
