"""Checks a dataset config before anything compiles, without reading data."""

import ml_collections
import numpy as np

from input_pipeline import builders
from input_pipeline import few_labels
from input_pipeline import preprocess
from input_pipeline import sources
from input_pipeline import text_data
from input_pipeline import tokenizers

# field -> (accepted types, what to write)
_FIELDS = {
    'name': ((str,), 'a dataset name'),
    'data_dir': ((str, type(None)), 'a directory or None'),
    'train_split': ((str,), "a split such as 'train' or 'train_per_class[10]'"),
    'eval_split': ((str,), "a split such as 'test'"),
    'pp_train': ((str,), "a pp string such as 'value_range(0, 1)'"),
    'pp_eval': ((str,), "a pp string such as 'value_range(0, 1)'"),
    'worker_count': ((int,), 'an int >= 0'),
    'shuffle': ((bool,), 'True or False'),
    'subset_seed': ((int,), 'an int >= 0'),
    'tokenizer': ((str,), f"'' for non-text data, or {tokenizers.SPEC_HELP}"),
    'seq_len': ((int,), 'an int > 0 for text data (tokens per window)'),
    'window_stride': ((int,), 'an int > 0'),
}


def validate(data_cfg: ml_collections.ConfigDict) -> None:
  """Raises a one-line ValueError for a bad field, dataset, split or pp string.

  Checks that the dataset is available (an offline one, or a prepared tfds
  one) and runs both pp strings on a zero batch shaped like the dataset's
  features, so wrong keys or ranks show up here rather than mid-training.
  A few-label split ('train_per_class[10]') must have class labels; whether
  each class has N examples shows only once its labels are read (records.py).
  """
  for field, (types, expected) in _FIELDS.items():
    if field not in data_cfg:
      raise ValueError(f'data config lacks {field!r}: set it to {expected}')
    value = data_cfg[field]
    if not isinstance(value, types) or (
        field in ('worker_count', 'subset_seed') and (isinstance(value, bool) or value < 0)):
      raise ValueError(f'{field} must be {expected}, got {value!r}')
  name = data_cfg.name
  builder = sources.find_builder(name, sources.resolve_data_dir(data_cfg))
  splits = builders.OFFLINE_SPLITS.get(name) or list(builder.info.splits)
  spec = _record_spec(data_cfg, sources.feature_spec(builder.info.features))
  for field in ('train_split', 'eval_split'):
    try:
      sources.check_split(name, data_cfg[field], splits)
      if few_labels.parse(data_cfg[field]):
        few_labels.class_names(name, data_cfg[field], builder.info.features)
    except ValueError as e:
      raise ValueError(f'{field}: {e}') from None
  for field in ('pp_train', 'pp_eval'):
    try:
      pipeline = preprocess.parse(data_cfg[field])
      pipeline(_zero_batch(spec), np.random.default_rng(0))
    except ValueError as e:
      raise ValueError(f'{field}: {e}') from None


def _record_spec(data_cfg: ml_collections.ConfigDict,
                 features: dict[str, tuple[tuple, np.dtype]]) -> dict[str, tuple[tuple, np.dtype]]:
  """The fields of one record as the pp strings see it: an example, or a text window."""
  is_text_data = features.get(text_data.TEXT_KEY, ((None,), None))[1] == object
  if not is_text_data:
    if data_cfg.tokenizer:
      raise ValueError(f'data.tokenizer={data_cfg.tokenizer!r} needs a text data set (with a '
                       f"'text' feature), and {data_cfg.name!r} has none; set data.tokenizer=''")
    return features
  if not data_cfg.tokenizer:
    raise ValueError(f'{data_cfg.name!r} is a text data set: set data.tokenizer to {tokenizers.SPEC_HELP}')
  tokenizers.parse_spec(data_cfg.tokenizer)
  for field in ('seq_len', 'window_stride'):
    if isinstance(data_cfg[field], bool) or data_cfg[field] <= 0:
      raise ValueError(f'data.{field} must be an int > 0 for text data, got {data_cfg[field]!r}')
  window = ((data_cfg.seq_len,), np.dtype(np.int32))
  return {'inputs': window, 'targets': window, 'weights': ((data_cfg.seq_len,), np.dtype(np.float32))}


def _zero_batch(spec: dict[str, tuple[tuple, np.dtype]]) -> preprocess.Batch:
  return {k: np.zeros((2, *(d or 1 for d in shape)), dtype)
          for k, (shape, dtype) in spec.items()}
