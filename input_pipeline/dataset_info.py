"""What a task needs to know about its data before building a model."""

import os
from typing import Any

import ml_collections
import tensorflow_datasets as tfds

from input_pipeline import records
from input_pipeline import sources
from input_pipeline import text_data


def dataset_info(data_cfg: ml_collections.ConfigDict) -> dict[str, Any]:
  """Facts a task needs before building a model: classes, features, split sizes.

  Returns {'name', 'tfds_name', 'data_dir', 'num_classes' (None when there is
  no ClassLabel 'label'), 'features': {key: {'shape', 'dtype'}}, 'splits':
  {split: num_examples}}; for text data sets (`data.tokenizer` set) also
  'vocab_size', with the features of one token window. Prepares an offline
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
  return info


def num_examples(data_cfg: ml_collections.ConfigDict, split: str) -> int:
  """Examples in `split` (a tfds split spec, or 'SPLIT_per_class[N]': N * classes).

  For text data sets, non-overlapping windows of seq_len.
  """
  return len(records.load_records(data_cfg, split, training=False))
