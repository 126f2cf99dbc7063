"""Preprocessing ops: each acts on a whole batch (dict of numpy arrays, leading batch dim).

An op is registered by its factory: the factory takes the op's arguments from
the pp string, checks them, and returns `op(batch, rng) -> batch`. Ops never
modify their input arrays (they may be views of an in-memory dataset) and work
vectorised over the batch: per-example Python is too slow for tiny images.
Random ops draw everything from the `np.random.Generator` they are given.
"""

from typing import Callable

import numpy as np

Batch = dict[str, np.ndarray]
Op = Callable[[Batch, np.random.Generator | None], Batch]

# name -> (factory, whether the op needs an rng)
OPS: dict[str, tuple[Callable[..., Op], bool]] = {}


def _register(random: bool = False):
  def add(factory):
    OPS[factory.__name__] = (factory, random)
    return factory
  return add


def _get(batch: Batch, key: str) -> np.ndarray:
  if key not in batch:
    raise ValueError(f'no key {key!r} in the batch (keys: {", ".join(batch)})')
  return batch[key]


def _images(batch: Batch, key: str) -> np.ndarray:
  x = _get(batch, key)
  if x.ndim != 4:
    raise ValueError(f'{key!r} must be images (batch, height, width, channels), '
                     f'got shape {x.shape}')
  return x


def _check_key(key) -> None:
  if not isinstance(key, str):
    raise ValueError(f'key must be a string, got {key!r}')


@_register()
def value_range(vmin: float, vmax: float, in_min: float = 0,
                in_max: float = 255, key: str = 'image') -> Op:
  """Maps [in_min, in_max] linearly onto [vmin, vmax], as float32."""
  _check_key(key)
  if in_max == in_min:
    raise ValueError('in_min and in_max must differ')
  scale = (vmax - vmin) / (in_max - in_min)

  def op(batch, rng):
    x = _get(batch, key).astype(np.float32)
    return {**batch, key: (x - in_min) * np.float32(scale) + np.float32(vmin)}
  return op


@_register()
def normalize(mean: float | list[float], std: float | list[float],
              key: str = 'image') -> Op:
  """(x - mean) / std as float32; lists give per-channel (last axis) values."""
  _check_key(key)
  mean, std = np.asarray(mean, np.float32), np.asarray(std, np.float32)
  if mean.ndim > 1 or std.ndim > 1 or np.any(std <= 0):
    raise ValueError('mean and std must be numbers or lists, std > 0')

  def op(batch, rng):
    x = _get(batch, key)
    for name, v in (('mean', mean), ('std', std)):
      if v.size > 1 and v.size != x.shape[-1]:
        raise ValueError(f'{name} has {v.size} values but {key!r} has '
                         f'{x.shape[-1]} channels (shape {x.shape})')
    return {**batch, key: (x.astype(np.float32) - mean) / std}
  return op


@_register()
def onehot(depth: int, key: str = 'label', on: float = 1.0,
           off: float = 0.0) -> Op:
  """Integer labels (any shape) -> float32 one-hot vectors on a new last axis."""
  _check_key(key)
  if not isinstance(depth, int) or depth < 1:
    raise ValueError(f'depth must be a positive int, got {depth!r}')

  def op(batch, rng):
    labels = _get(batch, key)
    if labels.size and (labels.min() < 0 or labels.max() >= depth):
      raise ValueError(f'{key!r} values must lie in [0, {depth}), got '
                       f'[{labels.min()}, {labels.max()}]')
    hot = labels[..., None] == np.arange(depth)
    return {**batch, key: np.where(hot, np.float32(on), np.float32(off))}
  return op


@_register(random=True)
def random_crop(pad: int, key: str = 'image') -> Op:
  """Zero-pads height and width by `pad`, then crops each image back at its own offset."""
  _check_key(key)
  if not isinstance(pad, int) or pad < 0:
    raise ValueError(f'pad must be an int >= 0, got {pad!r}')

  def op(batch, rng):
    x = _images(batch, key)
    b, h, w, _ = x.shape
    padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    top, left = rng.integers(0, 2 * pad + 1, size=(b, 2)).T  # example axis first
    rows = (top[:, None] + np.arange(h))[:, :, None]
    cols = (left[:, None] + np.arange(w))[:, None, :]
    return {**batch, key: padded[np.arange(b)[:, None, None], rows, cols]}
  return op


@_register(random=True)
def random_flip_lr(key: str = 'image') -> Op:
  """Mirrors each image left-right with probability 1/2."""
  _check_key(key)

  def op(batch, rng):
    x = _images(batch, key)
    flip = rng.random(x.shape[0]) < 0.5
    return {**batch, key: np.where(flip[:, None, None, None], x[:, :, ::-1], x)}
  return op


@_register()
def keep(*keys: str) -> Op:
  """Drops every key not listed."""
  if not keys or not all(isinstance(k, str) for k in keys):
    raise ValueError(f'needs one or more key names, got {keys!r}')

  def op(batch, rng):
    return {k: _get(batch, k) for k in keys}
  return op


@_register()
def rename(**old_to_new: str) -> Op:
  """rename(old='new', ...): renames keys, keeping the others."""
  if not old_to_new or not all(isinstance(v, str) for v in old_to_new.values()):
    raise ValueError("needs old='new' pairs, e.g. rename(signal='image')")

  def op(batch, rng):
    for old in old_to_new:
      _get(batch, old)
    return {old_to_new.get(k, k): v for k, v in batch.items()}
  return op


@_register()
def cast(dtype: str, key: str = 'image') -> Op:
  """Casts one key to a numpy dtype ('float32', 'int32', ...)."""
  _check_key(key)
  try:
    dtype = np.dtype(dtype)
  except TypeError:
    raise ValueError(f'unknown dtype {dtype!r}') from None

  def op(batch, rng):
    return {**batch, key: _get(batch, key).astype(dtype)}
  return op
