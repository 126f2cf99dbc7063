"""Evaluation batches: every example of a split exactly once, on any number of processes."""

import math
from typing import Iterator

import ml_collections
import numpy as np

from input_pipeline import hosts
from input_pipeline import preprocess
from input_pipeline import records as records_lib


def make_eval_batches(data_cfg: ml_collections.ConfigDict, *, split: str,
                      global_batch_size: int, process_index: int,
                      process_count: int) -> Iterator[records_lib.Batch]:
  """Yields this process's rows of ceil(N / global_batch_size) global batches.

  Global batch b holds examples [b*G, (b+1)*G) in the split's order; process p
  gets rows [p*L, (p+1)*L) of it (L = G // process_count), zero-padded past
  the end of the split. Every process yields the same number of batches, and
  each batch carries a float32 `mask` (1 real, 0 padding) added after pp_eval.
  Random pp ops draw from an rng seeded by (batch, process): eval repeats.
  """
  local = hosts.local_batch_size(global_batch_size, process_index,
                                 process_count)
  pipeline = preprocess.parse(data_cfg.pp_eval)
  records = records_lib.load_records(data_cfg, split, training=False)
  num_batches = math.ceil(len(records) / global_batch_size)

  def batches():
    for b in range(num_batches):
      start = b * global_batch_size + process_index * local
      indices = np.arange(start, min(start + local, len(records)))
      batch = {k: _pad(v, local) for k, v in records.read(indices).items()}
      batch = pipeline(batch, np.random.default_rng([b, process_index]))
      mask = np.zeros(local, np.float32)
      mask[:len(indices)] = 1
      yield {**batch, 'mask': mask}
  return batches()


def _pad(x: np.ndarray, rows: int) -> np.ndarray:
  return np.concatenate([x, np.zeros((rows - len(x), *x.shape[1:]), x.dtype)])
