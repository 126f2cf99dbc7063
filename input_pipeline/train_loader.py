"""The training loader: an infinite, seeded, per-process grain.DataLoader of batches.

Record k of the loader's data source is this process's share of global batch
k, already preprocessed: one vectorised read and one pass of batch-level pp
ops, not grain's per-record path, which costs ~150 us per example (sampler
rng, bookkeeping) on this CPU. Doing the pp inside the read also puts it on
grain's prefetch thread, off the training step's critical path.

Global batch k covers positions [k*G, (k+1)*G) of an endless stream of epochs,
each a fresh permutation of the split (seeded by (seed, epoch)); batches run
across epoch boundaries, so epoch = step * G / N exactly and nothing is
dropped. The stream depends only on (seed, G), not on the process count: a run
resumed on a different topology sees the same global batches, augmentations
included (batch_rng.GlobalBatchRng).
"""

from absl import flags
import grain
import ml_collections
import numpy as np

from input_pipeline import batch_rng
from input_pipeline import hosts
from input_pipeline import preprocess
from input_pipeline import records as records_lib

# Effectively infinite: the loader never reaches the end of its source.
_NUM_BATCHES = 2**40


class GlobalBatchSource(grain.sources.RandomAccessDataSource):
  """Record k: rows [p*L, (p+1)*L) of global batch k over shuffled epochs, preprocessed."""

  def __init__(self, records: records_lib.Records, *, global_batch_size: int,
               process_index: int, process_count: int, shuffle: bool,
               seed: int, pipeline: preprocess.Pipeline):
    self._records = records
    self._pipeline = pipeline
    self._global_batch_size = global_batch_size
    self._local_batch_size = global_batch_size // process_count
    self._offset = process_index * self._local_batch_size
    self._shuffle = shuffle
    self._seed = seed
    self._permutations = {}  # epoch -> permutation; the last two are kept.

  def __len__(self) -> int:
    return _NUM_BATCHES

  def __getitem__(self, k: int) -> records_lib.Batch:
    start = k * self._global_batch_size + self._offset
    epoch, i = np.divmod(np.arange(start, start + self._local_batch_size),
                         len(self._records))
    if self._shuffle:
      i = np.concatenate([self._permutation(int(e))[i[epoch == e]]
                          for e in np.unique(epoch)])
    rng = batch_rng.GlobalBatchRng([self._seed, k], offset=self._offset, rows=self._local_batch_size,
                                   global_rows=self._global_batch_size)
    return self._pipeline(self._records.read(i), rng)

  def _permutation(self, epoch: int) -> np.ndarray:
    if epoch not in self._permutations:
      rng = np.random.default_rng([self._seed, epoch])
      self._permutations = {
          e: p for e, p in self._permutations.items() if e >= epoch - 1}
      self._permutations[epoch] = rng.permutation(len(self._records))
    return self._permutations[epoch]

  def __repr__(self) -> str:
    # grain compares this on restore: it names the stream, not the topology
    # or the pp (changing augmentation mid-run is allowed).
    return (f'GlobalBatchSource({self._records!r}, global_batch_size='
            f'{self._global_batch_size}, shuffle={self._shuffle}, '
            f'seed={self._seed})')


def make_train_loader(data_cfg: ml_collections.ConfigDict, *,
                      global_batch_size: int, seed: int, process_index: int,
                      process_count: int) -> grain.DataLoader:
  """An endless loader of this process's (global_batch_size // process_count) batches.

  `iter(loader)` gives a grain DataLoaderIterator with get_state/set_state,
  checkpointable with `grain.checkpoint.CheckpointSave/CheckpointRestore`.
  A saved state restores onto any process count with the same
  global_batch_size, seed, dataset and worker_count (grain checks the last).
  """
  hosts.local_batch_size(global_batch_size, process_index, process_count)
  if not isinstance(seed, int) or seed < 0:
    raise ValueError(f'seed must be an int >= 0, got {seed!r}')
  pipeline = preprocess.parse(data_cfg.pp_train)
  source = GlobalBatchSource(
      records_lib.load_records(data_cfg, data_cfg.train_split, training=True),
      global_batch_size=global_batch_size, process_index=process_index,
      process_count=process_count, shuffle=data_cfg.shuffle, seed=seed,
      pipeline=pipeline)
  if data_cfg.worker_count and not flags.FLAGS.is_parsed():
    # grain's workers read absl flags; outside absl.app (tests, notebooks)
    # nothing parsed them, so take their defaults.
    flags.FLAGS.mark_as_parsed()
  # The source's records are this process's finished batches: the sampler
  # only walks them in order.
  return grain.DataLoader(
      data_source=source,
      sampler=grain.samplers.IndexSampler(
          len(source), shard_options=grain.sharding.NoSharding(),
          shuffle=False, num_epochs=None),
      worker_count=data_cfg.worker_count,
      shard_options=grain.sharding.NoSharding(),
      read_options=grain.ReadOptions(num_threads=1, prefetch_buffer_size=2),
  )
