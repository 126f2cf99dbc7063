"""The MNIST-1D benchmark (Greydanus 2020) as an offline tfds dataset."""

import random

import numpy as np

from input_pipeline.builders import in_memory


class LaminaMnist1d(in_memory.InMemoryBuilder, skip_registration=True):
  """MNIST-1D: 4,000 train / 1,000 test 1-D signals of length 40, 10 classes.

  Exactly the paper's set: `mnist1d.data.make_dataset(get_dataset_args())`
  (seed 42) regenerates it locally and deterministically, so nothing is
  downloaded (`mnist1d.data.get_dataset()` would download a pickle).
  `signal` is float32 (40, 1) — standardised by mnist1d over the whole set —
  and `label` is 0..9; the train/test split is mnist1d's own 80/20 split.
  """

  RELEASE_NOTES = {'1.0.0': 'make_dataset(get_dataset_args()), 4000/1000.'}
  INPUT_KEY = 'signal'
  INPUT_SHAPE = (40, 1)
  INPUT_DTYPE = np.float32
  HOMEPAGE = 'https://github.com/greydanus/mnist1d'

  def _split_arrays(self):
    data = _make_dataset()
    return {'train': (data['x'][..., None], data['y']), 'test': (data['x_test'][..., None], data['y_test'])}


def _make_dataset() -> dict:
  """Runs mnist1d's generator without leaking its global reseeding."""
  from mnist1d import data  # pylint: disable=g-import-not-at-top
  np_state, py_state = np.random.get_state(), random.getstate()
  try:
    return data.make_dataset(data.get_dataset_args())
  finally:
    np.random.set_state(np_state)
    random.setstate(py_state)
