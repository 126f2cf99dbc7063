"""A fixed, stratified train/test split that does not depend on library RNGs."""

import numpy as np


def stratified_split(labels: np.ndarray, num_test: int,
                     seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """Returns sorted (train, test) index arrays into `labels`.

  Each class gives the test set its proportional share of `num_test`, rounded
  by largest remainder (ties go to the lower class id), so the test set has
  exactly `num_test` examples. Within a class the test members are the first
  of `np.random.RandomState(seed).permutation(<indices of that class>)`, one
  RandomState consumed class by class in increasing class order — the legacy
  RandomState stream is frozen by numpy, so the split never changes.
  """
  classes, counts = np.unique(labels, return_counts=True)
  quota = counts * num_test / len(labels)
  take = np.floor(quota).astype(int)
  by_remainder = sorted(range(len(classes)), key=lambda c: (take[c] - quota[c], c))
  take[by_remainder[:num_test - take.sum()]] += 1
  rng = np.random.RandomState(seed)
  test = np.concatenate([
      rng.permutation(np.flatnonzero(labels == c))[:k]
      for c, k in zip(classes, take)
  ])
  test.sort()
  return np.setdiff1d(np.arange(len(labels)), test), test
