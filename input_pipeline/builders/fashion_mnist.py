"""Fashion-MNIST from Debian's `dataset-fashion-mnist` idx files, as a tfds dataset."""

import gzip
import os

import numpy as np

from input_pipeline.builders import in_memory

IDX_DIR = '/usr/share/datasets/fashion-mnist'
_FILES = {
    'train': ('train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz'),
    'test': ('t10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz'),
}
# The same names and order as tfds `fashion_mnist`.
CLASS_NAMES = ('T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat',
               'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot')


def idx_files_present() -> bool:
  return all(os.path.exists(os.path.join(IDX_DIR, f))
             for pair in _FILES.values() for f in pair)


def split_arrays() -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """{'train': (images [60000, 28, 28, 1] uint8, labels [60000]), 'test': (the 10,000)}."""
  return {split: (_read_idx(images)[..., None], _read_idx(labels))
          for split, (images, labels) in _FILES.items()}


class LaminaFashionMnist(in_memory.InMemoryBuilder, skip_registration=True):
  """The full Fashion-MNIST (60,000 train / 10,000 test) from local idx files.

  Read from `IDX_DIR` (`apt-get install dataset-fashion-mnist`); the splits
  and record contents are the original ones. `image` is uint8 (28, 28, 1),
  `label` is 0..9 with tfds `fashion_mnist`'s class names.
  """

  RELEASE_NOTES = {'1.0.0': 'Original 60000/10000 split from idx files.'}
  INPUT_SHAPE = (28, 28, 1)
  CLASS_NAMES = CLASS_NAMES
  HOMEPAGE = 'https://github.com/zalandoresearch/fashion-mnist'

  def _split_arrays(self):
    return split_arrays()


def _read_idx(name: str) -> np.ndarray:
  """Parses a gzipped idx file of unsigned bytes (magic 0x00000800 + ndim)."""
  with gzip.open(os.path.join(IDX_DIR, name), 'rb') as f:
    raw = f.read()
  if raw[:3] != b'\x00\x00\x08':
    raise ValueError(f'{name} is not an idx file of uint8 data')
  ndim = raw[3]
  shape = np.frombuffer(raw, '>u4', count=ndim, offset=4)
  return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(shape)
