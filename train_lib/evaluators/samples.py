"""Samples of an image generator (train_lib/tasks/generative.py): a grid, and their quality in
the feature space of a classifier this codebase trained on the same data.

  config.frozen.digits_cnn = {'workdir': '/tmp/lamina/digits'}       # experiments/digits_cnn.py
  config.evals.ddim50 = {'type': 'samples', 'num': 1000, 'features': 'digits_cnn',
                         'sampler': {'name': 'ddim', 'steps': 50}}

Each run draws `num` samples (`batch_size` at a time, one jitted program each; from the EMA
weights when the run keeps them) with keys from `seed`, so every evaluation draws from the same
noise. A conditional model is asked for the classes 0, 1, 2, ... in turn. Results:

  grid                  the first `grid` samples as one picture (a class per column when conditional)
  fd_<features>         the Fréchet distance between the samples and the `split` (default the
                        eval split) in the space of the classifier's penultimate layer (the input
                        of its 'head')
  fd_<features>_floor   the same distance for `num` real images of `floor_split` against `split`:
                        what a perfect generator would score with this many samples
  class_match           (conditional) the fraction of samples the classifier puts in the class asked for
  class_min_fraction, class_max_fraction   (unconditional) the rarest and commonest predicted
                        class's share of the samples: 1 / classes each when balanced
  seconds               the wall time of drawing the samples and scoring them

The classifier is a frozen part (train_lib/frozen.py) and must have read the same data set
through the same preprocessing (its config's data.name and pp_eval), which is this evaluator's `pp`.
"""

import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

import input_pipeline
from train_lib import frechet, frozen, image_grid
from train_lib import mesh as mesh_lib
from train_lib.errors import ConfigError
from train_lib.evaluators import base
from train_lib.tasks.generative import ImageGenerator


def features_and_logits(model: nn.Module, variables: dict, images: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(The input of the classifier's 'head' layer [B, D], its logits [B, classes]) in inference mode."""
  captured = []

  def capture(next_fun, args, kwargs, context):
    if context.module.name == 'head' and context.method_name == '__call__':
      captured.append(args[0])
    return next_fun(*args, **kwargs)

  with nn.intercept_methods(capture):
    logits = model.apply(variables, images, train=False)
  if len(captured) != 1:
    raise ValueError(f'{type(model).__name__} has no single layer named head; its input is the feature space')
  return captured[0].reshape(captured[0].shape[0], -1).astype(jnp.float32), logits


class SamplesEvaluator(base.Evaluator):
  config_fields = {'num': 1000, 'grid': 64, 'features': None, 'sampler': None, 'seed': 0, 'floor_split': 'train'}

  def __init__(self, name, cfg, context):
    super().__init__(name, cfg, context)
    where = f'evals.{name}'
    task = context.task
    if not isinstance(task, ImageGenerator):
      raise ConfigError(f"{where}: type 'samples' needs a task that generates images (gan, diffusion); "
                        f"task '{context.config.task.name}' does not")
    self.task = task
    self.num, self.grid = self.arg('num'), self.arg('grid')
    if isinstance(self.num, bool) or not isinstance(self.num, int) or self.num < 2:
      raise ConfigError(f'{where}.num must be an int >= 2, got {self.num!r}')
    if isinstance(self.grid, bool) or not isinstance(self.grid, int) or not 0 <= self.grid <= self.num:
      raise ConfigError(f'{where}.grid must be an int in 0..num ({self.num}), got {self.grid!r}')
    self.sampler = task.sampler(self.arg('sampler'), where=f'{where}.sampler')
    self.labels = (np.arange(self.num, dtype=np.int32) % task.num_classes if task.conditional
                   else np.zeros(self.num, np.int32))
    self._batches = mesh_lib.batch_sharding(context.mesh, context.rules)
    self._replicated = mesh_lib.replicated(context.mesh)
    self.part = self.arg('features')
    self._reference = None  # (statistics of `split`, the floor), computed on the first run
    if self.part is not None:
      self._frozen = self._check_part(where)
    use_ema = context.config.ema_decay > 0
    self._draw = jax.jit(self._draw_fn(use_ema), in_shardings=(context.state_shardings, None, self._batches),
                         out_shardings=self._replicated, compiler_options=context.compiler_options)

  def _check_part(self, where: str) -> frozen.FrozenPart:
    """The feature classifier, checked to read this data the way the real images are read here."""
    part = frozen.part(self.context.config, self.part)
    source = part.source.config.data
    if source.name != self.data.name or source.pp_eval != self.data.pp_eval:
      raise ConfigError(f"{where}.features: classifier '{self.part}' read data set '{source.name}' through pp "
                        f"'{source.pp_eval}'; this evaluator reads '{self.data.name}' through '{self.data.pp_eval}'. "
                        f'Train the generator on that range and set {where}.pp to match')
    abstract = frozen.abstract_variables({self.part: part}, self.context.mesh)[self.part]
    images = jax.ShapeDtypeStruct((2, *self.task.image_shape), jnp.float32)
    try:
      jax.eval_shape(lambda v, x: features_and_logits(part.model, v, x), abstract, images)
    except (ValueError, TypeError) as e:
      raise ConfigError(f"{where}.features: '{self.part}' must be an image classifier of this codebase, whose last "
                        f"layer is 'head' (the run in {part.source.workdir} trained a {type(part.model).__name__}: "
                        f'{e})') from e

    def real_features(variables, images, mask):
      return features_and_logits(part.model, variables, images)[0], mask

    self._real = jax.jit(real_features, in_shardings=(self._replicated, self._batches, self._batches),
                         out_shardings=self._replicated)
    return part

  def _draw_fn(self, use_ema: bool):
    task, sampler, size, part = self.task, self.sampler, self.batch_size, self.part
    model = self._frozen.model if part is not None else None

    def draw(state, rng, labels):
      params = state.ema_params if use_ema else state.params
      images = task.generate(params, state, rng, labels if task.conditional else None, size, sampler)
      if part is None:
        return images, None, None
      features, logits = features_and_logits(model, state.frozen[part], images)
      return images, features, logits

    return draw

  def _real_features(self, state, split: str) -> np.ndarray:
    """The classifier's features of `split` as this evaluator reads it, every example once."""
    out = []
    for local in input_pipeline.make_eval_batches(self.data, split=split, global_batch_size=self.batch_size,
                                                  process_index=jax.process_index(),
                                                  process_count=jax.process_count()):
      batch = mesh_lib.global_batch({'image': local[self.task.image_key], 'mask': local['mask']}, self._batches)
      features, mask = mesh_lib.replicated_to_host(self._real(state.frozen[self.part], batch['image'], batch['mask']))
      out.append(features[mask > 0])
    return np.concatenate(out)

  def run(self, state) -> base.Result:
    start = time.perf_counter()
    images, features, logits = [], [], []
    key = jax.random.PRNGKey(self.arg('seed'))
    for i, first in enumerate(range(0, self.num, self.batch_size)):
      labels = np.resize(self.labels[first:first + self.batch_size], self.batch_size)  # the last batch wraps
      labels = jax.make_array_from_callback(labels.shape, self._batches, lambda index, labels=labels: labels[index])
      drawn = mesh_lib.replicated_to_host(self._draw(state, jax.random.fold_in(key, i), labels))
      images.append(drawn[0])
      features.append(drawn[1])
      logits.append(drawn[2])
    images = np.concatenate(images)[:self.num]
    result = base.Result()
    if self.grid:
      columns = self.task.num_classes if self.task.conditional else None
      result.images['grid'] = image_grid.grid(images[:self.grid], self.task.pixel_range, columns=columns)
    if self.part is not None:
      result.scalars.update(self._quality(state, np.concatenate(features)[:self.num], np.concatenate(logits)[:self.num]))
    result.scalars['seconds'] = time.perf_counter() - start
    return result

  def _quality(self, state, features: np.ndarray, logits: np.ndarray) -> dict[str, float]:
    if self._reference is None:
      reference = frechet.statistics(self._real_features(state, self.data.eval_split))
      floor_images = self._real_features(state, f'{self.arg("floor_split")}[:{self.num}]')
      self._reference = reference, frechet.distance(frechet.statistics(floor_images), reference)
    reference, floor = self._reference
    name = f'fd_{self.part}'
    scalars = {name: frechet.distance(frechet.statistics(features), reference), f'{name}_floor': floor}
    predicted = logits.argmax(-1)
    if self.task.conditional:
      scalars['class_match'] = float(np.mean(predicted == self.labels))
    else:
      shares = np.bincount(predicted, minlength=logits.shape[-1]) / len(predicted)
      scalars.update(class_min_fraction=float(shares.min()), class_max_fraction=float(shares.max()))
    return scalars
