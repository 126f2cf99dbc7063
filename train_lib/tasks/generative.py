"""Image generators: tasks whose models draw images (GANs, diffusion), for the 'samples'
evaluator and `python -m train_lib.sample` to ask for.

A generator trains on the images of `task.image_key` as the pp string leaves them, in
`task.pixel_range` (default [0, 1]: the range the data sets' classifiers read, so a
classifier of this codebase can score the samples), and maps them to [-1, 1] inside.
`generate` returns images in that same range. With `task.conditional`, the labels of
`task.label_key` condition the model and each sample has a requested class.

How a generator samples is its `sampler_fields` (an evaluator's `sampler` dict, or the
command line's flags): `sampler(settings, where)` checks them and returns the hashable
value `generate` takes.
"""

import abc
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections

from train_lib.errors import ConfigError
from train_lib.tasks import base
from train_lib.train_state import TrainState


class ImageGenerator(base.Task):
  config_fields = {'image_key': 'image', 'label_key': 'label', 'conditional': False, 'pixel_range': (0.0, 1.0)}
  # An evaluator's `sampler` keys and their defaults.
  sampler_fields: dict[str, Any] = {}

  def __init__(self, config: ml_collections.ConfigDict, data_info: dict):
    super().__init__(config, data_info)
    self.image_key = self.arg('image_key')
    self.label_key = self.arg('label_key')
    features = data_info['features']
    if self.image_key not in features:
      raise ConfigError(f"task.image_key '{self.image_key}' is not a feature of data set '{config.data.name}' "
                        f'(it has {sorted(features)})')
    self.image_shape = tuple(features[self.image_key]['shape'])
    if len(self.image_shape) != 3:
      raise ConfigError(f"task.image_key '{self.image_key}' has shape {self.image_shape}; a generator wants "
                        '[height, width, channels] images')
    self.conditional = bool(self.arg('conditional'))
    self.num_classes = data_info.get('num_classes')
    if self.conditional and not self.num_classes:
      raise ConfigError(f"task.conditional needs class labels; data set '{config.data.name}' has none")
    low, high = (float(v) for v in self.arg('pixel_range'))
    if not low < high:
      raise ConfigError(f'task.pixel_range must be (low, high) with low < high, got {self.arg("pixel_range")}')
    self.pixel_range = (low, high)

  def to_model(self, images: jax.Array) -> jax.Array:
    """Images in pixel_range -> [-1, 1] float32."""
    low, high = self.pixel_range
    return (images.astype(jnp.float32) - low) * (2.0 / (high - low)) - 1.0

  def from_model(self, x: jax.Array) -> jax.Array:
    """[-1, 1] -> pixel_range, clipped."""
    low, high = self.pixel_range
    return jnp.clip((x + 1.0) * ((high - low) / 2.0) + low, low, high)

  def labels(self, batch: dict) -> jax.Array | None:
    """The batch's labels when the model is conditional, else None."""
    return batch[self.label_key] if self.conditional else None

  def sampler(self, settings: dict | ml_collections.ConfigDict | None, where: str) -> Any:
    """The checked, hashable form of `settings` (keys of `sampler_fields`); a bad key or value is one
    ConfigError line that starts with `where`."""
    settings = dict(settings or {})
    unknown = sorted(set(settings) - set(self.sampler_fields))
    if unknown:
      valid = sorted(self.sampler_fields) or 'none: it draws in one pass'
      raise ConfigError(f"{where}: task '{self.config.task.name}' has no sampler setting {unknown}; valid: {valid}")
    try:
      return self.make_sampler({**self.sampler_fields, **settings})
    except ValueError as e:
      raise ConfigError(f'{where}: {e}') from e

  def make_sampler(self, settings: dict) -> Any:
    """`settings` (every key of sampler_fields) as the value `generate` takes; ValueError if bad."""
    del settings
    return None

  @abc.abstractmethod
  def generate(self, params: Any, state: TrainState, rng: jax.Array, labels: jax.Array | None, num: int,
               sampler: Any) -> jax.Array:
    """`num` images [num, H, W, C] in pixel_range drawn with `rng` (labels [num] when conditional)."""
