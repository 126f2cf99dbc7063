"""SIGTERM (a preempted VM, `kill`, a scheduler's timeout) asks the loop to save and stop.

With several processes, every process must save at the same step, whichever of them
got the signal: jax.distributed's preemption sync manager (which catches SIGTERM
itself) agrees on that step through the coordination service.
"""

import signal
import threading

import jax
from jax.experimental import multihost_utils


class PreemptionWatcher:
  """Turns SIGTERM into a stop that the loop polls between device calls."""

  def __init__(self):
    self._requested = threading.Event()
    self._previous = None
    self._multi_process = jax.process_count() > 1
    if not self._multi_process and threading.current_thread() is threading.main_thread():
      self._previous = signal.signal(signal.SIGTERM, self._handle)  # signals only reach the main thread

  def _handle(self, signum, frame) -> None:
    del signum, frame
    self._requested.set()

  def should_stop(self, step: int) -> bool:
    """Whether to save and stop after `step`; the same answer on every process."""
    if self._multi_process:
      return multihost_utils.reached_preemption_sync_point(step)
    return self._requested.is_set()

  def close(self) -> None:
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)
