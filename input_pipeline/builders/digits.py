"""scikit-learn's 8x8 digits as an offline tfds dataset."""

import numpy as np

from input_pipeline.builders import in_memory, split

NUM_TEST = 360


class LaminaDigits(in_memory.InMemoryBuilder, skip_registration=True):
  """The 1,797 8x8 handwritten digits of `sklearn.datasets.load_digits`.

  `image` is uint8 (8, 8, 1) with values 0..16 (counts of set pixels in 4x4
  blocks of the original 32x32 bitmaps); `label` is the digit 0..9.

  Split (fixed): 1,437 train / 360 test, stratified by class with
  `split.stratified_split(labels, 360, seed=0)` over load_digits' order, which
  puts 36 37 35 37 36 36 36 36 35 36 examples of digits 0..9 in test.
  """

  RELEASE_NOTES = {'1.0.0': 'Stratified 1437/360 split, RandomState(0).'}
  INPUT_SHAPE = (8, 8, 1)
  HOMEPAGE = 'https://scikit-learn.org/stable/modules/generated/sklearn.datasets.load_digits.html'

  def _split_arrays(self):
    from sklearn import datasets  # pylint: disable=g-import-not-at-top
    digits = datasets.load_digits()
    images = digits.images.astype(np.uint8)[..., None]
    train, test = split.stratified_split(digits.target, NUM_TEST, seed=0)
    return {'train': (images[train], digits.target[train]), 'test': (images[test], digits.target[test])}
