"""SIGTERM (a preempted VM, `kill`, a scheduler's timeout) asks the loop to save and stop."""

import signal
import threading


class PreemptionWatcher:
  """Turns SIGTERM into a flag that the loop polls between device calls."""

  def __init__(self):
    self._requested = threading.Event()
    self._previous = None
    if threading.current_thread() is threading.main_thread():  # signals only reach the main thread
      self._previous = signal.signal(signal.SIGTERM, self._handle)

  def _handle(self, signum, frame) -> None:
    del signum, frame
    self._requested.set()

  @property
  def requested(self) -> bool:
    return self._requested.is_set()

  def close(self) -> None:
    if self._previous is not None:
      signal.signal(signal.SIGTERM, self._previous)
