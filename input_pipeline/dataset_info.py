"""What a task needs to know about its data before building a model."""

import os
import sys
from typing import Any

import ml_collections
import tensorflow_datasets as tfds

from input_pipeline import records
from input_pipeline import sources
from input_pipeline import text_data
from input_pipeline import tokenizers


def dataset_info(data_cfg: ml_collections.ConfigDict) -> dict[str, Any]:
  """Facts a task needs before building a model: classes, features, split sizes.

  Returns {'name', 'tfds_name', 'data_dir', 'num_classes' (None when there is
  no ClassLabel 'label'), 'features': {key: {'shape', 'dtype'}}, 'splits':
  {split: num_examples}}; for text data sets (`data.tokenizer` set) also
  'vocab_size', with the features of one token window, and for data sets whose
  builder carries a tokenizer (caption data) its 'vocab_size'. Prepares an offline
  dataset (and learns a tokenizer) on first use.
  """
  builder = sources.get_builder(data_cfg)
  features = builder.info.features
  label = features['label'] if 'label' in features.keys() else None
  info = {
      'name': data_cfg.name,
      'tfds_name': builder.name,
      'data_dir': os.fspath(builder.data_dir),
      'num_classes': (label.num_classes
                      if isinstance(label, tfds.features.ClassLabel) else None),
      'features': {k: {'shape': shape, 'dtype': dtype.name}
                   for k, (shape, dtype) in sources.feature_spec(features).items()},
      'splits': {k: v.num_examples for k, v in builder.info.splits.items()},
  }
  if text_data.is_text(data_cfg):
    window = {'shape': (data_cfg.seq_len,), 'dtype': 'int32'}
    info['features'] = {'inputs': window, 'targets': window, 'weights': {**window, 'dtype': 'float32'}}
    info['vocab_size'] = text_data.tokenizer(data_cfg).vocab_size
  elif (tokenizer := dataset_tokenizer(data_cfg)) is not None:
    info['vocab_size'] = tokenizer.vocab_size
  return info


def dataset_tokenizer(data_cfg: ml_collections.ConfigDict) -> tokenizers.Tokenizer | None:
  """The tokenizer a run saves with its checkpoints, so sampling decodes its ids: a text data set's
  `data.tokenizer`, or the fixed one a builder carries as `TOKENIZER` (on its class or in its
  module; caption data sets, whose records hold ids already); None for other data."""
  if text_data.is_text(data_cfg):
    return text_data.tokenizer(data_cfg)
  builder = sources.get_builder(data_cfg)
  return getattr(builder, 'TOKENIZER', None) or getattr(sys.modules[type(builder).__module__], 'TOKENIZER', None)


def num_examples(data_cfg: ml_collections.ConfigDict, split: str) -> int:
  """Examples in `split` (a tfds split spec, or 'SPLIT_per_class[N]': N * classes).

  For text data sets, non-overlapping windows of seq_len.
  """
  return len(records.load_records(data_cfg, split, training=False))
