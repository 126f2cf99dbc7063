"""Denoising diffusion (Ho et al. 2020) on the one trainer: the network learns to undo Gaussian
noise, and the 'samples' evaluator draws images with DDPM or DDIM (train_lib/diffusion/).

Each step draws, per image, a timestep t uniform over the T training steps and noise eps,
forms x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps (x_0: the image mapped to [-1, 1]), and
regresses the network's output on eps ('epsilon') or on v = sqrt(abar_t) eps - sqrt(1 - abar_t) x_0
('v') with the mean squared error. A class-conditional model (task.conditional) sees its
image's label, replaced by "no label" with probability `label_dropout`, so the same network
also predicts unconditionally: classifier-free guidance (Ho & Salimans 2022) then samples with
out = out(no label) + s (out(label) - out(no label)) at guidance scale s.

Task fields: schedule ('cosine' | 'linear'), num_steps (T, 1000), prediction ('epsilon' | 'v'),
label_dropout (0.1), with the image fields of train_lib/tasks/generative.py.
Sampler settings (an evaluator's `sampler`): name ('ddim' | 'ddpm'), steps (50), eta (0.0, DDIM
only), clip_x0 (True), guidance (None). Eval metric: `loss`, the training loss of each test
image at a timestep and noise drawn from one constant key, so it moves only with the model.
"""

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from train_lib.diffusion import samplers, schedule as schedule_lib
from train_lib.errors import ConfigError
from train_lib.tasks import generative
from train_lib.tasks.classification import build_model

_EVAL_KEY = 0


class DiffusionTask(generative.ImageGenerator):
  config_fields = {**generative.ImageGenerator.config_fields, 'schedule': 'cosine', 'num_steps': 1000,
                   'prediction': 'epsilon', 'label_dropout': 0.1}
  sampler_fields = {'name': 'ddim', 'steps': 50, 'eta': 0.0, 'clip_x0': True, 'guidance': None}

  def __init__(self, config: ml_collections.ConfigDict, data_info: dict):
    super().__init__(config, data_info)
    num_steps = self.arg('num_steps')
    if isinstance(num_steps, bool) or not isinstance(num_steps, int) or num_steps < 2:
      raise ConfigError(f'task.num_steps must be an int >= 2, got {num_steps!r}')
    try:
      self.schedule = schedule_lib.make(self.arg('schedule'), num_steps)
    except ValueError as e:
      raise ConfigError(f'task.schedule: {e}') from e
    self.prediction = self.arg('prediction')
    if self.prediction not in schedule_lib.PREDICTIONS:
      raise ConfigError(f"task.prediction: unknown '{self.prediction}'; valid: {list(schedule_lib.PREDICTIONS)}")
    self.label_dropout = self.arg('label_dropout')
    if not 0.0 <= self.label_dropout < 1.0:
      raise ConfigError(f'task.label_dropout must be in [0, 1), got {self.label_dropout}')
    self.model = build_model(config.model, config, num_classes=self.num_classes if self.conditional else None)
    # The label the network reads as "no label".
    self.null_label = self.num_classes if self.conditional else None

  def init_variables(self, rng: jax.Array, batch: dict) -> dict:
    params_rng, dropout_rng = jax.random.split(rng)
    x = batch[self.image_key]
    t = jnp.zeros(x.shape[:1], jnp.int32)
    return self.model.init({'params': params_rng, 'dropout': dropout_rng}, x, t, self.labels(batch), train=False)

  def _losses(self, params: Any, model_state: dict, batch: dict, rng: jax.Array, *,
              train: bool) -> tuple[jax.Array, dict]:
    """([B] per-image mean squared errors, the new model_state) at random timesteps and noise."""
    x0 = self.to_model(batch[self.image_key])
    t_rng, noise_rng, drop_rng, dropout_rng = jax.random.split(rng, 4)
    t = jax.random.randint(t_rng, x0.shape[:1], 0, self.schedule.num_steps)
    noise = jax.random.normal(noise_rng, x0.shape)
    labels = self.labels(batch)
    if labels is not None and train and self.label_dropout:
      labels = jnp.where(jax.random.bernoulli(drop_rng, self.label_dropout, labels.shape), self.null_label, labels)
    xt = schedule_lib.q_sample(self.schedule, x0, t, noise)
    output, new_state = self.model.apply({'params': params, **model_state}, xt, t, labels, train=train,
                                         rngs={'dropout': dropout_rng}, mutable=list(model_state))
    target = schedule_lib.target(self.schedule, self.prediction, x0, noise, t)
    return jnp.mean((output - target) ** 2, axis=range(1, x0.ndim)), new_state

  def loss(self, params, state, batch, rng):
    losses, model_state = self._losses(params, state.model_state, batch, rng, train=True)
    return losses.mean(), (model_state, {})

  def eval_metrics(self, params, state, batch):
    losses, _ = self._losses(params, state.model_state, batch, jax.random.PRNGKey(_EVAL_KEY), train=False)
    return {'loss': losses}

  def make_sampler(self, settings: dict) -> samplers.Sampler:
    sampler = samplers.Sampler(**settings).check(self.schedule.num_steps)
    if sampler.guidance is not None and not self.conditional:
      raise ValueError('guidance needs a class-conditional model (task.conditional=True); this one is '
                       'unconditional: leave guidance unset')
    return sampler

  def generate(self, params, state, rng, labels, num, sampler):
    variables = {'params': params, **state.model_state}
    guided = labels is not None and sampler.guidance not in (None, 1.0)

    def denoise(xt: jax.Array, t: jax.Array) -> tuple[jax.Array, jax.Array]:
      if guided:
        # One call on [conditional; unconditional]: the same weights read twice the batch.
        both = self.model.apply(variables, jnp.concatenate([xt, xt]), jnp.concatenate([t, t]),
                                jnp.concatenate([labels, jnp.full_like(labels, self.null_label)]), train=False)
        conditional, unconditional = jnp.split(both, 2)
        output = unconditional + sampler.guidance * (conditional - unconditional)
      else:
        output = self.model.apply(variables, xt, t, labels, train=False)
      return schedule_lib.predicted_x0_eps(self.schedule, self.prediction, output, xt, t)

    x0 = samplers.sample(denoise, self.schedule, sampler, rng, (num, *self.image_shape))
    return self.from_model(x0)
