"""A batch of images as one picture: a grid with a gutter, each image enlarged to at least
`min_size` pixels (8x8 digits would be specks), as uint8 for a PNG."""

import io
import math

import numpy as np
from PIL import Image


def grid(images: np.ndarray, pixel_range: tuple[float, float], *, columns: int | None = None,
         min_size: int = 32, gutter: int = 2) -> np.ndarray:
  """[N, H, W, C] images with values in `pixel_range` -> [rows x columns grid, C] uint8 (C = 1 or 3);
  `columns` defaults to a square layout."""
  images = np.asarray(images, np.float32)
  n, height, width, channels = images.shape
  if channels not in (1, 3):
    raise ValueError(f'a grid shows 1- or 3-channel images, got {channels} channels')
  low, high = pixel_range
  pixels = np.round(np.clip((images - low) / (high - low), 0, 1) * 255).astype(np.uint8)
  scale = max(1, math.ceil(min_size / max(height, width)))
  pixels = pixels.repeat(scale, axis=1).repeat(scale, axis=2)
  columns = columns or math.ceil(math.sqrt(n))
  rows = math.ceil(n / columns)
  cell_h, cell_w = height * scale + gutter, width * scale + gutter
  out = np.full((rows * cell_h + gutter, columns * cell_w + gutter, channels), 255, np.uint8)
  for i, image in enumerate(pixels):
    r, c = divmod(i, columns)
    out[gutter + r * cell_h:(r + 1) * cell_h, gutter + c * cell_w:(c + 1) * cell_w] = image
  return out


def png(image: np.ndarray) -> bytes:
  """An [H, W, 1 or 3] uint8 image as PNG bytes."""
  image = np.asarray(image)
  if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] not in (1, 3):
    raise ValueError(f'a PNG takes [H, W, 1 or 3] uint8, got {image.shape} {image.dtype}')
  out = io.BytesIO()
  Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(out, format='PNG')
  return out.getvalue()
