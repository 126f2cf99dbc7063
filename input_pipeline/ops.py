"""Preprocessing ops: each acts on a whole batch (dict of numpy arrays, leading batch dim).

An op is registered by its factory: the factory takes the op's arguments from
the pp string, checks them, and returns `op(batch, rng) -> batch`. Ops never
modify their input arrays (they may be views of an in-memory dataset) and work
vectorised over the batch: per-example Python is too slow for tiny images.
Random ops draw everything from the `np.random.Generator` they are given.
"""

from typing import Callable

import numpy as np

from input_pipeline import audio

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


@_register()
def log_mel(key: str = 'audio', sample_rate: int = audio.SAMPLE_RATE, frame_length: int = 400,
            hop_length: int = 160, fft_size: int = 512, num_mels: int = 40) -> Op:
  """int16 waveforms [B, T] -> float32 log-mel spectrograms [B, frames, num_mels, 1] under the
  same key: an image of time by frequency, for an image tower (input_pipeline/audio.py)."""
  _check_key(key)
  for name, value in (('frame_length', frame_length), ('hop_length', hop_length), ('fft_size', fft_size),
                      ('num_mels', num_mels), ('sample_rate', sample_rate)):
    if not isinstance(value, int) or value < 1:
      raise ValueError(f'{name} must be a positive int, got {value!r}')

  def op(batch, rng):
    waves = _get(batch, key)
    if waves.ndim != 2 or waves.dtype != np.int16:
      raise ValueError(f'{key!r} must be int16 waveforms (batch, samples), got {waves.dtype} {waves.shape}')
    spectrograms = audio.log_mel(waves.astype(np.float32) / 32768, sample_rate, frame_length, hop_length,
                                 fft_size, num_mels)
    return {**batch, key: spectrograms[..., None]}
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


@_register(random=True)
def random_resized_crop(scale: tuple[float, float] = (0.08, 1.0),
                        ratio: tuple[float, float] = (3 / 4, 4 / 3),
                        key: str = 'image') -> Op:
  """Crops a random box from each image and resizes it back to the image's size, bilinearly.

  The box covers a fraction of the image's area drawn uniformly from `scale`, with an
  aspect ratio (width / height) drawn log-uniformly from `ratio`, its sides clipped to
  the image, at a uniform position (Inception's and SimCLR's crop; torchvision's
  RandomResizedCrop redraws a box that does not fit instead of clipping it). Sampling
  uses half-pixel centres, so scale=(1, 1) with the image's own aspect ratio returns it
  unchanged. Integer images are rounded back to their dtype.
  """
  _check_key(key)
  scale, ratio = _range('scale', scale), _range('ratio', ratio)
  if scale[1] > 1:
    raise ValueError(f'scale must lie in (0, 1], got {scale}')
  log_ratio = np.log(ratio)

  def op(batch, rng):
    x = _images(batch, key)
    b, h, w, _ = x.shape
    area, aspect, top, left = rng.random((b, 4)).T  # example axis first
    area = h * w * (scale[0] + (scale[1] - scale[0]) * area)
    aspect = np.exp(log_ratio[0] + (log_ratio[1] - log_ratio[0]) * aspect)
    crop_h = np.clip(np.sqrt(area / aspect), 1, h)
    crop_w = np.clip(np.sqrt(area * aspect), 1, w)
    rows = _sample_points(top * (h - crop_h), crop_h, h)
    cols = _sample_points(left * (w - crop_w), crop_w, w)
    out = _bilinear(x, rows, cols)
    if np.issubdtype(x.dtype, np.integer):
      info = np.iinfo(x.dtype)
      out = np.clip(np.rint(out), info.min, info.max)
    return {**batch, key: out.astype(x.dtype)}
  return op


def _range(name: str, value) -> tuple[float, float]:
  """A (lo, hi) pair of numbers with 0 < lo <= hi, or a one-line ValueError."""
  if not (isinstance(value, (tuple, list)) and len(value) == 2
          and all(isinstance(v, (int, float)) for v in value) and 0 < value[0] <= value[1]):
    raise ValueError(f'{name} must be (lo, hi) with 0 < lo <= hi, got {value!r}')
  return float(value[0]), float(value[1])


def _sample_points(start: np.ndarray, length: np.ndarray, size: int) -> np.ndarray:
  """[B, size] source coordinates of `size` output pixel centres spread over [start, start + length)."""
  step = (length / size)[:, None]  # exactly 1 for a full-size crop: the identity
  return np.clip(start[:, None] + (np.arange(size) + 0.5) * step - 0.5, 0, size - 1)


def _bilinear(x: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
  """x [B, H, W, C] sampled at rows [B, H'] x cols [B, W'] -> float32 [B, H', W', C]."""
  r0 = np.floor(rows).astype(np.intp)
  c0 = np.floor(cols).astype(np.intp)
  r1 = np.minimum(r0 + 1, x.shape[1] - 1)
  c1 = np.minimum(c0 + 1, x.shape[2] - 1)
  wr = (rows - r0).astype(np.float32)[:, :, None, None]
  wc = (cols - c0).astype(np.float32)[:, None, :, None]
  b = np.arange(x.shape[0])[:, None, None]

  def at(r, c):
    return x[b, r[:, :, None], c[:, None, :]].astype(np.float32)
  top = at(r0, c0) * (1 - wc) + at(r0, c1) * wc
  bottom = at(r1, c0) * (1 - wc) + at(r1, c1) * wc
  return top * (1 - wr) + bottom * wr


@_register(random=True)
def random_brightness_contrast(brightness: float = 0.4, contrast: float = 0.4,
                               key: str = 'image') -> Op:
  """Scales each image by a factor from [1 - brightness, 1 + brightness], then its
  contrast (distance from the image's mean) by one from [1 - contrast, 1 + contrast],
  clipping to [0, 1] after each (as torchvision's ColorJitter): the grey-scale part of
  SimCLR's colour jitter. Wants float images in [0, 1] (after value_range(0, 1)).
  """
  _check_key(key)
  for name, v in (('brightness', brightness), ('contrast', contrast)):
    if not 0 <= v < 1:
      raise ValueError(f'{name} must be in [0, 1), got {v!r}')

  def op(batch, rng):
    x = _images(batch, key)
    if not np.issubdtype(x.dtype, np.floating):
      raise ValueError(f'{key!r} must be float images in [0, 1] (value_range(0, 1) first), got {x.dtype}')
    u = 2 * rng.random((x.shape[0], 2)).astype(x.dtype) - 1  # in [-1, 1), example axis first
    factor_b = (1 + brightness * u[:, 0]).reshape(-1, 1, 1, 1)
    factor_c = (1 + contrast * u[:, 1]).reshape(-1, 1, 1, 1)
    x = np.clip(x * factor_b, 0, 1)
    mean = x.mean(axis=(1, 2, 3), keepdims=True)
    return {**batch, key: np.clip((x - mean) * factor_c + mean, 0, 1)}
  return op


@_register()
def copy(**src_to_dst: str) -> Op:
  """copy(image='image2'): adds key 'image2' holding the same arrays as 'image', so
  random ops applied to each key afterwards make two independently augmented views."""
  if not src_to_dst or not all(isinstance(v, str) for v in src_to_dst.values()):
    raise ValueError("needs src='dst' pairs, e.g. copy(image='image2')")

  def op(batch, rng):
    for src, dst in src_to_dst.items():
      _get(batch, src)
      if dst in batch:
        raise ValueError(f'copy would overwrite key {dst!r}')
    # Ops never modify their inputs, so both keys may share one array.
    return {**batch, **{dst: batch[src] for src, dst in src_to_dst.items()}}
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
