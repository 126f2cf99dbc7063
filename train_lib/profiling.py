"""An optional jax.profiler trace of a window of steps (TensorBoard / Perfetto format).

The profiler writes to a local directory only; for a workdir in a bucket the trace is
written to a temporary directory and uploaded in the background.
"""

import tempfile

import jax
import ml_collections
from absl import logging
from etils import epath

from train_lib import storage


class Profiler:
  """Traces the calls that start in [first_step, first_step + num_steps)."""

  def __init__(self, directory: epath.Path, cfg: ml_collections.ConfigDict):
    self._directory = directory
    self._first = cfg.first_step
    self._last = cfg.first_step + cfg.num_steps
    self._active = False
    self._staging = None
    self._background = storage.BackgroundWriter()

  def before_call(self, step: int) -> None:
    if not self._active and self._first <= step < self._last:
      local = self._directory
      if storage.is_remote(self._directory):
        self._staging = tempfile.TemporaryDirectory(prefix='lamina-profile-')
        local = self._staging.name
      jax.profiler.start_trace(str(local), create_perfetto_trace=True)
      self._active = True
    elif self._active and step >= self._last:
      self._stop()

  def _stop(self) -> None:
    jax.profiler.stop_trace()  # waits for the traced device work to finish
    self._active = False
    if self._staging:
      self._background.submit(self._upload, self._staging)
    logging.info('Wrote a profile of steps %d..%d to %s', self._first, self._last - 1, self._directory)

  def _upload(self, staging: tempfile.TemporaryDirectory) -> None:
    with staging:
      storage.copy_tree(staging.name, self._directory)

  def close(self) -> None:
    if self._active:
      self._stop()
    self._background.close()
