"""metrics.jsonl (one JSON object per logged step), TensorBoard event files, and images as
PNGs under WORKDIR/samples/ (and TensorBoard images), on a local disk or in a bucket.

A bucket has no appends: there metrics.jsonl is kept in memory and rewritten whole in the
background every `flush_secs` and on `flush`, and TensorBoard's event files are uploaded
whole by tensorboardX's own writer thread.
"""

import concurrent.futures
import importlib
import io
import json
import re
import sys
import time

import numpy as np
from etils import epath

from train_lib import image_grid, storage


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


class _BucketEventFile:
  """One TensorBoard event file in a bucket, uploaded whole through epath on each flush."""

  def __init__(self, path: str):
    self._path = storage.path(path)
    self._buffer = io.BytesIO()
    self._flushed = 0

  def write(self, data: bytes) -> None:
    self._buffer.write(data)

  def flush(self) -> None:
    if self._buffer.tell() != self._flushed:
      self._flushed = self._buffer.tell()
      storage.write_atomically(self._path, self._buffer.getvalue())

  def close(self) -> None:
    self.flush()


class _BucketEventFiles:
  """tensorboardX's writer factory for gs:// (in place of its own, which bypasses epath)."""

  def open(self, path: str) -> _BucketEventFile:
    return _BucketEventFile(path)

  def directory_check(self, path: str) -> None:
    del path  # a bucket has no directories to create


for _scheme in storage.REMOTE_SCHEMES:
  tensorboardX.record_writer.register_writer_factory(_scheme.rstrip(':/'), _BucketEventFiles())


class MetricWriter:
  """Writes only when `enabled` (process 0). On resume, drops records past the restored step.

  A run killed after its last checkpoint logged steps that the resumed run repeats;
  dropping them keeps metrics.jsonl equal to an uninterrupted run's. PNGs, and metrics.jsonl
  in a bucket, are written on a background thread.
  """

  def __init__(self, workdir: str | epath.Path, *, enabled: bool, resume_step: int, flush_secs: float = 30):
    self.enabled = enabled
    if not enabled:
      return
    workdir = storage.path(workdir)
    self.path = workdir / 'metrics.jsonl'
    self.samples = workdir / 'samples'
    self._background = storage.BackgroundWriter()
    self._flush_secs = flush_secs
    self._remote = storage.is_remote(workdir)
    self._lines = _lines_up_to(self.path, resume_step)
    storage.write_atomically(self.path, ''.join(self._lines))
    self._flushed_at = time.monotonic()
    self._file = None if self._remote else open(self.path, 'a', encoding='utf-8')
    self._tb = tensorboardX.SummaryWriter(str(workdir / 'tensorboard'), purge_step=resume_step + 1,
                                          max_queue=1000)

  def write(self, step: int, metrics: dict[str, float]) -> None:
    if not self.enabled:
      return
    line = json.dumps({'step': step, **metrics}) + '\n'
    if self._remote:
      self._lines.append(line)
      if time.monotonic() - self._flushed_at > self._flush_secs:
        self.flush()
    else:
      self._file.write(line)
      self._file.flush()
    for name, value in metrics.items():
      self._tb.add_scalar(name, value, step)

  def flush(self) -> concurrent.futures.Future | None:
    """Starts writing metrics.jsonl out (in a bucket; a local file is always current); returns
    the write's future, so a caller can overlap it with other work and then wait."""
    if not self.enabled or not self._remote:
      return None
    self._flushed_at = time.monotonic()
    return self._background.submit(storage.write_atomically, self.path, ''.join(self._lines))

  def write_images(self, step: int, images: dict[str, np.ndarray]) -> None:
    """Each [H, W, C] uint8 image (C = 1 or 3) as samples/<key>_<step>.png and a TensorBoard image."""
    if not self.enabled:
      return
    for key, image in images.items():
      try:
        png = image_grid.png(image)
      except ValueError as e:
        raise ValueError(f'image {key!r}: {e}') from e
      file_name = re.sub(r'[^\w.-]+', '_', key)  # 'eval/grid' -> 'eval_grid'
      self._background.submit(storage.write_atomically, self.samples / f'{file_name}_{step}.png', png)
      self._tb.add_image(key, image, step, dataformats='HWC')

  def close(self) -> None:
    if self.enabled:
      self.flush()
      if self._file:
        self._file.close()
      self._tb.close()
      self._background.close()


def _lines_up_to(path: epath.Path, step: int) -> list[str]:
  text = storage.read_text(path) or ''
  return [line + '\n' for line in text.splitlines() if line.strip() and json.loads(line)['step'] <= step]


def read_metrics(workdir: str | epath.Path) -> list[dict]:
  """All records of a run's metrics.jsonl, in order."""
  text = storage.read_text(storage.path(workdir) / 'metrics.jsonl')
  if text is None:
    raise FileNotFoundError(f'no metrics.jsonl in {workdir}')
  return [json.loads(line) for line in text.splitlines() if line.strip()]
