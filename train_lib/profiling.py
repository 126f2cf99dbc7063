"""An optional jax.profiler trace of a window of steps (TensorBoard / Perfetto format)."""

import jax
import ml_collections
from absl import logging


class Profiler:
  """Traces the calls that start in [first_step, first_step + num_steps)."""

  def __init__(self, directory: str, cfg: ml_collections.ConfigDict):
    self._directory = directory
    self._first = cfg.first_step
    self._last = cfg.first_step + cfg.num_steps
    self._active = False

  def before_call(self, step: int) -> None:
    if not self._active and self._first <= step < self._last:
      jax.profiler.start_trace(self._directory, create_perfetto_trace=True)
      self._active = True
    elif self._active and step >= self._last:
      self.close()

  def close(self) -> None:
    if self._active:
      jax.profiler.stop_trace()  # waits for the traced device work to finish
      self._active = False
      logging.info('Wrote a profile of steps %d..%d to %s', self._first, self._last - 1, self._directory)
