"""metrics.jsonl (one JSON object per logged step), TensorBoard event files, and images as
PNGs under WORKDIR/samples/ (and TensorBoard images)."""

import importlib
import json
import os
import re
import sys

import numpy as np
from PIL import Image


def _import_tensorboardx():
  """tensorboardX, without the torch import it makes only to recognise torch tensors.

  That import costs every lamina process 1.5-2 s where torch is installed (the
  `bench` extra); lamina writes plain floats. torch stays importable afterwards.
  """
  if 'torch' in sys.modules:
    return importlib.import_module('tensorboardX')
  sys.modules['torch'] = None  # makes `import torch` raise ImportError for the moment
  try:
    return importlib.import_module('tensorboardX')
  finally:
    del sys.modules['torch']


tensorboardX = _import_tensorboardx()


class MetricWriter:
  """Writes only when `enabled` (process 0). On resume, drops records past the restored step.

  A run killed after its last checkpoint logged steps that the resumed run repeats;
  dropping them keeps metrics.jsonl equal to an uninterrupted run's.
  """

  def __init__(self, workdir: str, *, enabled: bool, resume_step: int):
    self.enabled = enabled
    if not enabled:
      return
    self.path = os.path.join(workdir, 'metrics.jsonl')
    self.samples = os.path.join(workdir, 'samples')
    _truncate_after(self.path, resume_step)
    self._file = open(self.path, 'a', encoding='utf-8')
    self._tb = tensorboardX.SummaryWriter(os.path.join(workdir, 'tensorboard'), purge_step=resume_step + 1)

  def write(self, step: int, metrics: dict[str, float]) -> None:
    if not self.enabled:
      return
    self._file.write(json.dumps({'step': step, **metrics}) + '\n')
    self._file.flush()
    for name, value in metrics.items():
      self._tb.add_scalar(name, value, step)

  def write_images(self, step: int, images: dict[str, np.ndarray]) -> None:
    """Each [H, W, C] uint8 image (C = 1 or 3) as samples/<key>_<step>.png and a TensorBoard image."""
    if not self.enabled:
      return
    os.makedirs(self.samples, exist_ok=True)
    for key, image in images.items():
      image = np.asarray(image)
      if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] not in (1, 3):
        raise ValueError(f'image {key!r} must be [H, W, 1 or 3] uint8, got {image.shape} {image.dtype}')
      file_name = re.sub(r'[^\w.-]+', '_', key)  # 'eval/grid' -> 'eval_grid'
      path = os.path.join(self.samples, f'{file_name}_{step}.png')
      Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(path + '.tmp', format='PNG')
      os.replace(path + '.tmp', path)
      self._tb.add_image(key, image, step, dataformats='HWC')

  def close(self) -> None:
    if self.enabled:
      self._file.close()
      self._tb.close()


def _truncate_after(path: str, step: int) -> None:
  if not os.path.exists(path):
    return
  with open(path, encoding='utf-8') as f:
    kept = [line for line in f if line.strip() and json.loads(line)['step'] <= step]
  tmp = path + '.tmp'
  with open(tmp, 'w', encoding='utf-8') as f:
    f.writelines(kept)
  os.replace(tmp, path)


def read_metrics(workdir: str) -> list[dict]:
  """All records of a run's metrics.jsonl, in order."""
  with open(os.path.join(workdir, 'metrics.jsonl'), encoding='utf-8') as f:
    return [json.loads(line) for line in f if line.strip()]
