"""Randomness for one process's slice of a global batch, independent of the process count.

Random pp ops draw per-example values with the example axis first. Drawing them for
the whole global batch from a generator seeded by (seed, batch number) and keeping
this process's rows gives every example the same augmentation whether the batch is
read by one process or split over many, so a run's metrics do not depend on topology.
"""

from collections.abc import Sequence

import numpy as np


class GlobalBatchRng:
  """The subset of np.random.Generator that pp ops use, sliced to rows [offset, offset + rows)."""

  def __init__(self, seed: Sequence[int], *, offset: int, rows: int, global_rows: int):
    self._generator = np.random.default_rng(list(seed))
    self._rows = slice(offset, offset + rows)
    self._global_rows = global_rows

  def _global_size(self, size: int | tuple[int, ...]) -> tuple[int, ...]:
    size = (size,) if isinstance(size, int) else tuple(size)
    return (self._global_rows, *size[1:])

  def integers(self, low: int, high: int, size: int | tuple[int, ...]) -> np.ndarray:
    return self._generator.integers(low, high, size=self._global_size(size))[self._rows]

  def random(self, size: int | tuple[int, ...]) -> np.ndarray:
    return self._generator.random(self._global_size(size))[self._rows]
