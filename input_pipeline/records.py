"""Batched reads from a split: the whole split in memory when small, else via tfds.

Reading record by record costs ~75 us per example in tfds's decoder, so small
splits (all offline datasets, cifar-sized ones) are decoded once into numpy
arrays, kept on disk for later processes (input_pipeline/decoded_cache.py), and a
batch becomes one fancy index. Larger splits are read with one `__getitems__` call
per batch. A few-label split ('train_per_class[10]', input_pipeline/few_labels.py)
is a `Subset` of its base split's records, chosen from their labels alone.
"""

import dataclasses
import functools
import os
from typing import Sequence

import ml_collections
import numpy as np
import tensorflow_datasets as tfds

from input_pipeline import decoded_cache, few_labels, sources

from input_pipeline import text_data
from input_pipeline import token_windows

Batch = dict[str, np.ndarray]
# Decoded size up to which a split is held in memory (per process, and per
# grain worker, which receives a pickled copy).
IN_MEMORY_BYTES = 512 * 2**20
_LOAD_CHUNK = 4096


class ArrayRecords:
  """A whole split as numpy arrays."""

  def __init__(self, arrays: Batch, description: str):
    self._arrays = arrays
    self._description = description

  def __len__(self) -> int:
    return len(next(iter(self._arrays.values())))

  def read(self, indices: np.ndarray) -> Batch:
    return {k: v[indices] for k, v in self._arrays.items()}

  def labels(self) -> np.ndarray:
    """Every record's 'label' (already decoded)."""
    return self._arrays['label']

  def __repr__(self) -> str:
    return self._description


class SourceRecords:
  """Reads a tfds data source one batch (`__getitems__`) at a time."""

  def __init__(self, source: Sequence, spec: dict[str, tuple[tuple, np.dtype]],
               description: str):
    self._source = source
    self._spec = spec
    self._description = description

  def __len__(self) -> int:
    return len(self._source)

  def read(self, indices: np.ndarray) -> Batch:
    examples = self._source.__getitems__([int(i) for i in indices])
    if not examples:
      return {k: np.zeros((0, *shape), dtype)
              for k, (shape, dtype) in self._spec.items()}
    return {k: np.stack([e[k] for e in examples]) for k in examples[0]}

  def labels(self) -> np.ndarray:
    """Every record's 'label', leaving the other features (images) undecoded."""
    features = self._source.dataset_info.features
    skip = {k: tfds.decode.SkipDecoding() for k in features.keys() if k != 'label'}
    # tfds data sources are dataclasses: this is the same split with other decoders.
    labels_only = dataclasses.replace(self._source, decoders=skip)
    n = len(labels_only)
    return np.array([e['label'] for i in range(0, n, _LOAD_CHUNK)
                     for e in labels_only.__getitems__(list(range(i, min(i + _LOAD_CHUNK, n))))])

  def __repr__(self) -> str:
    return self._description


class Subset:
  """Records `indices` of other records, in that order: a few-label split."""

  def __init__(self, records: ArrayRecords | SourceRecords, indices: np.ndarray,
               description: str):
    self._records = records
    self._indices = indices
    self._description = description

  def __len__(self) -> int:
    return len(self._indices)

  def read(self, indices: np.ndarray) -> Batch:
    return self._records.read(self._indices[indices])

  def __repr__(self) -> str:
    return self._description


Records = ArrayRecords | SourceRecords | Subset | token_windows.TokenWindows


def load_records(data_cfg: ml_collections.ConfigDict, split: str, *, training: bool) -> Records:
  """Records of `split`: examples, or for text data sets windows of its token stream.

  Example records are cached per (data_dir, name, split) within a process; a
  few-label split ('train_per_class[10]') also per data_cfg.subset_seed.
  """
  if few_labels.parse(split):
    return _load_per_class(sources.resolve_data_dir(data_cfg), data_cfg.name, split,
                           data_cfg.subset_seed)
  if text_data.is_text(data_cfg):
    stride = data_cfg.window_stride if training else data_cfg.seq_len
    return token_windows.TokenWindows(
        text_data.token_stream(data_cfg, split), seq_len=data_cfg.seq_len, stride=stride,
        pad_last=not training, description=f'{data_cfg.name}:{split}:{data_cfg.tokenizer}')
  return _load(sources.resolve_data_dir(data_cfg), data_cfg.name, split)


@functools.lru_cache(maxsize=4)
def _load(data_dir: str, name: str, split: str) -> Records:
  cfg = ml_collections.ConfigDict({'name': name, 'data_dir': data_dir})
  source = sources.get_source(cfg, split)
  spec = sources.feature_spec(source.dataset_info.features)
  # Stable across data_dirs and topologies: grain checks it when restoring.
  records = SourceRecords(source, spec, f'{name}:{split}:{len(source)}')
  if not _fits_in_memory(spec, len(source)):
    return records

  def decode() -> Batch:
    chunks = [records.read(np.arange(i, min(i + _LOAD_CHUNK, len(source))))
              for i in range(0, len(source), _LOAD_CHUNK)]
    return {k: np.concatenate([c[k] for c in chunks]) for k in chunks[0]}

  arrays = decoded_cache.load_or_decode(os.fspath(source.dataset_info.data_dir), name, split, spec, decode)
  return ArrayRecords(arrays, repr(records))


@functools.lru_cache(maxsize=4)
def _load_per_class(data_dir: str, name: str, split: str, seed: int) -> Subset:
  per_class = few_labels.parse(split)
  builder = sources.get_builder(ml_collections.ConfigDict({'name': name, 'data_dir': data_dir}))
  classes = few_labels.class_names(name, split, builder.info.features)
  base = _load(data_dir, name, per_class.base)
  indices = few_labels.select(base.labels(), per_class, classes, seed, name=name)
  return Subset(base, indices, f'{name}:{split}/seed={seed}:{len(indices)}')


def _fits_in_memory(spec: dict[str, tuple[tuple, np.dtype]], n: int) -> bool:
  if any(None in shape or dtype == object for shape, dtype in spec.values()):
    return False  # Variable-size or string features: no fixed array layout.
  per_example = sum(int(np.prod(shape)) * dtype.itemsize
                    for shape, dtype in spec.values())
  return per_example * n <= IN_MEMORY_BYTES
