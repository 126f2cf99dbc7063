"""Zero-shot classification: images labelled by their nearest class prompt in a contrastive model's space.

  config.evals.zero_shot = {'type': 'zero_shot', 'templates': 'held_out'}

Every class's phrase is put in every template (a set the data set names, such as
fashion_mnist_captions' 'held_out', or a tuple of strings with '{}'); the text tower embeds the
prompts, and each class's normalised prompt embeddings are averaged and normalised again (CLIP's
prompt ensemble). An image's prediction is the class whose embedding is most similar to its own.
Writes '<name>/accuracy' (top-1) and '<name>/top<K>_accuracy' for the other `ks`. The data set's
builder supplies the prompts (`TEMPLATES` and `class_prompts(templates)`), so they are tokenized
exactly as its captions are.
"""

import jax
import numpy as np

from input_pipeline import sources
from train_lib import contrastive
from train_lib import mesh as mesh_lib
from train_lib.errors import ConfigError
from train_lib.evaluators import base
from train_lib.train_state import TrainState


def accuracy_at_k(scores: np.ndarray, labels: np.ndarray, ks: tuple[int, ...]) -> dict[int, float]:
  """{K: the fraction of rows of scores [N, C] whose label is among its K highest}."""
  top = np.argsort(-scores, axis=1, kind='stable')[:, :max(ks)]
  found = top == labels[:, None]
  return {k: float(found[:, :k].any(axis=1).mean()) for k in ks}


class ZeroShotEvaluator(base.Evaluator):
  config_fields = {'image_tower': 'image', 'text_tower': 'text', 'templates': 'held_out', 'ks': (1,),
                   'label_key': 'label'}

  def __init__(self, name, cfg, context):
    super().__init__(name, cfg, context)
    where = f'evals.{name}'
    task = context.task
    towers = getattr(task, 'towers', None)
    if towers is None:
      raise ConfigError(f"{where}: type 'zero_shot' compares a contrastive task's embeddings; task "
                        f"'{context.config.task.name}' has no towers")
    image_tower, text_tower = self.arg('image_tower'), self.arg('text_tower')
    for field, tower in (('image_tower', image_tower), ('text_tower', text_tower)):
      if tower not in towers:
        raise ConfigError(f'{where}.{field}: no tower {tower!r}; towers are {", ".join(towers)}')
    self.ks = tuple(self.arg('ks'))
    if not self.ks or not all(isinstance(k, int) and k >= 1 for k in self.ks):
      raise ConfigError(f'{where}.ks must be ints >= 1, e.g. (1, 5), got {self.arg("ks")!r}')
    self.label_key = self.arg('label_key')
    features = task.data_info.get('features', {})
    if features and self.label_key not in features:
      raise ConfigError(f'{where}.label_key: no key {self.label_key!r} in the data (keys: {", ".join(features)})')
    prompts = _prompts(self.data, self.arg('templates'), where)
    text_batch = {task.input_keys[text_tower]: prompts.reshape(-1, prompts.shape[-1])}
    use_ema = context.config.ema_decay > 0
    replicated = mesh_lib.replicated(context.mesh)

    def params(state: TrainState):
      return state.ema_params if use_ema else state.params

    def class_embeddings(state: TrainState, text: dict) -> jax.Array:
      embedded, _ = task.embed(params(state), state.model_state, text, train=False, towers=(text_tower,))
      per_prompt = contrastive.normalize(embedded[text_tower]).reshape(*prompts.shape[:2], -1)
      return contrastive.normalize(per_prompt.mean(axis=1))

    def scores(state: TrainState, batch: dict, classes: jax.Array) -> dict[str, jax.Array]:
      embedded, _ = task.embed(params(state), state.model_state, batch, train=False, towers=(image_tower,))
      return {'scores': contrastive.normalize(embedded[image_tower]) @ classes.T,
              'labels': batch[self.label_key], 'mask': batch['mask']}

    compile_options = dict(out_shardings=replicated, compiler_options=context.compiler_options)
    self._classes = jax.jit(class_embeddings, in_shardings=(context.state_shardings, replicated), **compile_options)
    self._text = text_batch
    self._scores = jax.jit(scores, in_shardings=(context.state_shardings,
                                                 mesh_lib.batch_sharding(context.mesh, context.rules), replicated),
                           **compile_options)

  def run(self, state: TrainState) -> base.Result:
    classes = self._classes(state, self._text)
    arrays = self.split_outputs(lambda s, batch: self._scores(s, batch, classes), state)
    accuracies = accuracy_at_k(arrays['scores'], arrays['labels'], self.ks)
    return base.Result(scalars={('accuracy' if k == 1 else f'top{k}_accuracy'): value
                                for k, value in accuracies.items()})


def _prompts(data_cfg, templates, where: str) -> np.ndarray:
  """[classes, templates, length] int32 prompt ids from the data set's builder."""
  builder = sources.find_builder(data_cfg.name, sources.resolve_data_dir(data_cfg))
  named = getattr(builder, 'TEMPLATES', None)
  if named is None or not hasattr(builder, 'class_prompts'):
    raise ConfigError(f"{where}: data set {data_cfg.name!r} has no class prompts; zero_shot needs a caption data "
                      f"set such as fashion_mnist_captions")
  if isinstance(templates, str):
    if templates not in named:
      raise ConfigError(f'{where}.templates: {data_cfg.name} has no template set {templates!r}; valid: '
                        f'{", ".join(named)}, or a tuple of strings with {{}}')
    templates = named[templates]
  templates = tuple(templates)
  if not templates or not all(isinstance(t, str) and t.count('{}') == 1 for t in templates):
    raise ConfigError(f"{where}.templates must be a set's name or strings each with one '{{}}', got {templates!r}")
  return np.asarray(builder.class_prompts(templates))
