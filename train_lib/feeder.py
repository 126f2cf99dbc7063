"""Feeds the device: K host batches stacked into one global array per call, prepared ahead.

A background thread reads the next calls' batches and starts their transfer while the
device runs the current call, so data loading stays off the critical path. Each item
carries the iterator state after its last batch, which is what a checkpoint must save.
"""

import queue
import threading
from collections.abc import Iterator

import jax
import numpy as np
from jax.sharding import NamedSharding


class Feeder:

  def __init__(self, iterator: Iterator[dict], *, steps_per_call: int, sharding: NamedSharding,
               process_count: int, depth: int = 2):
    self._iterator = iterator
    self._steps_per_call = steps_per_call
    self._sharding = sharding
    self._process_count = process_count
    self._queue: queue.Queue = queue.Queue(maxsize=depth)
    self._stop = threading.Event()
    self._thread = threading.Thread(target=self._run, daemon=True, name='lamina-feeder')
    self._thread.start()

  def _global(self, local: np.ndarray) -> jax.Array:
    # Dimension 1 is the example axis; processes contribute equal, disjoint slices of it.
    global_shape = (local.shape[0], local.shape[1] * self._process_count, *local.shape[2:])
    return jax.make_array_from_process_local_data(self._sharding, local, global_shape)

  def _run(self) -> None:
    try:
      while not self._stop.is_set():
        host = [next(self._iterator) for _ in range(self._steps_per_call)]
        stacked = jax.tree.map(lambda *xs: np.stack(xs), *host)
        item = (jax.tree.map(self._global, stacked), self._iterator.get_state())
        while not self._stop.is_set():
          try:
            self._queue.put(item, timeout=0.1)
            break
          except queue.Full:
            continue
    except BaseException as e:  # surfaced to the loop on its next get()
      self._queue.put(e)

  def next(self) -> tuple[dict, bytes]:
    """(global batches [K, B, ...], data-iterator state after them)."""
    item = self._queue.get()
    if isinstance(item, BaseException):
      raise item
    return item

  def close(self) -> None:
    self._stop.set()
    self._thread.join(timeout=5)
