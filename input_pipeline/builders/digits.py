"""scikit-learn's 8x8 digits as an offline tfds dataset."""

import numpy as np
import tensorflow_datasets as tfds

from input_pipeline.builders import split

NUM_TEST = 360


class LaminaDigits(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """The 1,797 8x8 handwritten digits of `sklearn.datasets.load_digits`.

  `image` is uint8 (8, 8, 1) with values 0..16 (counts of set pixels in 4x4
  blocks of the original 32x32 bitmaps); `label` is the digit 0..9.

  Split (fixed): 1,437 train / 360 test, stratified by class with
  `split.stratified_split(labels, 360, seed=0)` over load_digits' order, which
  puts 36 37 35 37 36 36 36 36 35 36 examples of digits 0..9 in test.
  """

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Stratified 1437/360 split, RandomState(0).'}

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        features=tfds.features.FeaturesDict({
            'image': tfds.features.Tensor(
                shape=(8, 8, 1), dtype=np.uint8,
                encoding=tfds.features.Encoding.BYTES),
            'label': tfds.features.ClassLabel(num_classes=10),
        }),
        supervised_keys=('image', 'label'),
        homepage='https://scikit-learn.org/stable/modules/generated/sklearn.datasets.load_digits.html',
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Data ships with scikit-learn.
    from sklearn import datasets  # pylint: disable=g-import-not-at-top
    digits = datasets.load_digits()
    images = digits.images.astype(np.uint8)[..., None]
    labels = digits.target.astype(np.int64)
    train, test = split.stratified_split(labels, NUM_TEST, seed=0)
    return {
        'train': self._generate_examples(images, labels, train),
        'test': self._generate_examples(images, labels, test),
    }

  def _generate_examples(self, images, labels, indices):
    for i in indices:
      yield int(i), {'image': images[i], 'label': labels[i]}
