"""Random-access sources: a dataset config's name and split -> a tfds data source.

Lamina's offline names (`builders.OFFLINE_DATASETS`) are prepared locally on
first use; any other name goes to tfds unchanged and must already be prepared
(array_record) in the data_dir — tfds is never allowed to download.
"""

import difflib
import os
import re
from typing import Any, Sequence

import ml_collections
import numpy as np
import tensorflow_datasets as tfds

from input_pipeline import builders
from input_pipeline import few_labels

_OFFLINE = ', '.join(builders.OFFLINE_DATASETS)


def resolve_data_dir(data_cfg: ml_collections.ConfigDict) -> str:
  """`data_cfg.data_dir`, else $TFDS_DATA_DIR, else ~/tensorflow_datasets."""
  data_dir = (data_cfg.data_dir or os.environ.get('TFDS_DATA_DIR') or
              '~/tensorflow_datasets')
  return os.path.expanduser(data_dir)


def find_builder(name: str, data_dir: str) -> tfds.core.DatasetBuilder:
  """The builder for `name`; offline ones may still be unprepared. Never downloads."""
  if name in builders.OFFLINE_DATASETS:
    return builders.offline_builder(name, data_dir)
  try:
    builder = tfds.builder(name, data_dir=data_dir)
  except Exception as e:  # tfds raises several types for unusable names.
    raise ValueError(
        f'unknown dataset {name!r}{_did_you_mean(name)}: not one of lamina\'s '
        f'offline datasets ({_OFFLINE}) nor a tfds dataset (tfds: '
        f'{_first_line(e)})') from None
  if not builders.is_prepared(builder):
    raise ValueError(
        f'dataset {name!r} is not prepared: nothing in {builder.data_path}; '
        f'run `tfds build {name} --file_format=array_record '
        f'--data_dir={data_dir}` on a machine with internet and copy it here, '
        f'or point data_dir / $TFDS_DATA_DIR at a prepared copy '
        f'(offline datasets need nothing: {_OFFLINE})')
  if not builders.is_readable(builder):
    formats = ', '.join(f.value for f in builder.info.available_file_formats())
    raise ValueError(
        f'dataset {name!r} in {builder.data_path} is stored as {formats}, '
        f'which has no random access; run `tfds convert_format '
        f'--dataset_version_dir={builder.data_path} '
        f'--out_file_format=array_record` (needs TensorFlow) or rebuild it '
        f'with --file_format=array_record')
  return builder


def get_builder(data_cfg: ml_collections.ConfigDict) -> tfds.core.DatasetBuilder:
  """The prepared builder for `data_cfg.name` (prepares offline datasets once)."""
  builder = find_builder(data_cfg.name, resolve_data_dir(data_cfg))
  return builders.prepare(builder)


def split_names(split: str) -> list[str]:
  """Base split names in a split spec: 'train[:90%]+test' -> [train, test].

  A few-label split names its base split's: 'train_per_class[10]' -> [train].
  """
  return [re.sub(r'\[.*', '', part).strip()
          for part in few_labels.base_split(split).split('+')]


def check_split(name: str, split: str, valid: Sequence[str]) -> None:
  """Raises a one-line ValueError if `split` names a split `name` lacks."""
  if not isinstance(split, str) or not split.strip():
    raise ValueError(f'split for dataset {name!r} must be a non-empty string, '
                     f'got {split!r}; valid splits: {", ".join(sorted(valid))}')
  for base in split_names(split):
    if base not in valid:
      raise ValueError(
          f'unknown split {base!r} in {split!r} for dataset {name!r}; valid '
          f'splits: {", ".join(sorted(valid))} (tfds slices such as '
          f"'train[:90%]' and few-label splits such as 'train_per_class[10]' work too)")


def get_source(data_cfg: ml_collections.ConfigDict,
               split: str) -> Sequence[dict[str, Any]]:
  """A random-access source over `split`: len(), [i] and __getitems__ -> dicts of numpy."""
  builder = get_builder(data_cfg)
  check_split(data_cfg.name, split, list(builder.info.splits))
  if few_labels.parse(split):
    raise ValueError(f'{split!r} is a few-label split, which tfds cannot serve: read it with '
                     f'make_train_loader, make_eval_batches or records.load_records')
  try:
    return builder.as_data_source(split=split)
  except (ValueError, AssertionError) as e:  # Malformed slice syntax.
    raise ValueError(f'bad split {split!r} for dataset {data_cfg.name!r}: '
                     f'{_first_line(e)}') from None


def feature_spec(features: tfds.features.FeaturesDict) -> dict[str, tuple[tuple, np.dtype]]:
  """{feature: (shape, numpy dtype)} of one decoded example, nested keys joined by '/'."""
  infos = tfds.core.utils.flatten_nest_dict(features.get_tensor_info())
  return {k: (tuple(v.shape), np.dtype(v.np_dtype)) for k, v in infos.items()}


def _first_line(e: Exception) -> str:
  return (str(e).strip().splitlines() or [type(e).__name__])[0]


def _did_you_mean(name: str) -> str:
  known = list(builders.OFFLINE_DATASETS) + tfds.list_builders(
      with_community_datasets=False)
  close = difflib.get_close_matches(name, known, n=3)
  return f' (did you mean {" or ".join(close)}?)' if close else ''
