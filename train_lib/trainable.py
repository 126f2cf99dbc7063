"""Which parameters train: `config.optimizer.trainable`, a regex over parameter paths.

  config.optimizer.trainable = 'head/.*'   # a linear probe: only the classifier head trains

A parameter whose path ('stage1_block1/conv_0/kernel') does not match in full is frozen:
its gradient is cut inside the loss, so no backward pass runs through a frozen backbone,
and the optimizer gives it a zero update and keeps no state for it (no moments, no weight
decay). Non-trained variables still follow the data: a frozen BatchNorm layer normalises
each training batch by its own statistics, so its running statistics must be this data's
too, or evaluation would see features on another scale than the head trained on (a random
backbone's probe falls to chance that way).
"""

import re
from typing import Any

import jax
import ml_collections
from flax import linen as nn

from train_lib.errors import ConfigError

ALL = '.*'


def compile_regex(text: str, *, where: str) -> re.Pattern:
  """A config value's regex over paths; a bad one is a ConfigError line naming `where` it came from."""
  try:
    return re.compile(text)
  except (re.error, TypeError) as e:
    raise ConfigError(f'{where} is not a regex: {e}') from e


def pattern(cfg: ml_collections.ConfigDict) -> re.Pattern:
  """`cfg.trainable` (config.optimizer) compiled."""
  return compile_regex(cfg.trainable, where='optimizer.trainable')


def variable_paths(tree: Any) -> Any:
  """The tree with each leaf replaced by its path, 'block_0/mlp/up/kernel' (boxes allowed)."""
  is_box = lambda x: isinstance(x, nn.meta.AxisMetadata)
  return jax.tree_util.tree_map_with_path(
      lambda path, _: '/'.join(str(getattr(k, 'key', getattr(k, 'idx', k))) for k in path), tree, is_leaf=is_box)


def mask(cfg: ml_collections.ConfigDict, tree: Any) -> Any:
  """True where a parameter of `tree` trains."""
  trains = pattern(cfg)
  return jax.tree.map(lambda path: bool(trains.fullmatch(path)), variable_paths(tree))


def stop_frozen(cfg: ml_collections.ConfigDict, params: Any) -> Any:
  """`params` with the gradient of every frozen parameter cut."""
  if cfg.trainable == ALL:
    return params
  return jax.tree.map(lambda p, trains: p if trains else jax.lax.stop_gradient(p), params, mask(cfg, params))
