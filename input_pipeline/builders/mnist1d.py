"""The MNIST-1D benchmark (Greydanus 2020) as an offline tfds dataset."""

import random

import numpy as np
import tensorflow_datasets as tfds


class LaminaMnist1d(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """MNIST-1D: 4,000 train / 1,000 test 1-D signals of length 40, 10 classes.

  Exactly the paper's set: `mnist1d.data.make_dataset(get_dataset_args())`
  (seed 42) regenerates it locally and deterministically, so nothing is
  downloaded (`mnist1d.data.get_dataset()` would download a pickle).
  `signal` is float32 (40, 1) — standardised by mnist1d over the whole set —
  and `label` is 0..9; the train/test split is mnist1d's own 80/20 split.
  """

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'make_dataset(get_dataset_args()), 4000/1000.'}

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        features=tfds.features.FeaturesDict({
            'signal': tfds.features.Tensor(
                shape=(40, 1), dtype=np.float32,
                encoding=tfds.features.Encoding.BYTES),
            'label': tfds.features.ClassLabel(num_classes=10),
        }),
        supervised_keys=('signal', 'label'),
        homepage='https://github.com/greydanus/mnist1d',
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Generated locally.
    data = _make_dataset()
    return {
        'train': self._generate_examples(data['x'], data['y']),
        'test': self._generate_examples(data['x_test'], data['y_test']),
    }

  def _generate_examples(self, xs, ys):
    for i, (x, y) in enumerate(zip(xs, ys)):
      yield i, {'signal': x.astype(np.float32)[:, None], 'label': int(y)}


def _make_dataset() -> dict:
  """Runs mnist1d's generator without leaking its global reseeding."""
  from mnist1d import data  # pylint: disable=g-import-not-at-top
  np_state, py_state = np.random.get_state(), random.getstate()
  try:
    return data.make_dataset(data.get_dataset_args())
  finally:
    np.random.set_state(np_state)
    random.setstate(py_state)
