"""The Fréchet distance: zero for a set against itself, and scipy's sqrtm formula on random features."""

import numpy as np
import pytest
from scipy import linalg

from train_lib import frechet


def _reference(a: np.ndarray, b: np.ndarray) -> float:
  """FID's textbook form, with scipy's matrix square root."""
  mu_a, mu_b = a.mean(0), b.mean(0)
  cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
  root = linalg.sqrtm(cov_a @ cov_b).real
  return float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a + cov_b - 2 * root))


def test_a_set_against_itself_is_zero():
  features = np.random.default_rng(0).normal(size=(500, 32))
  assert abs(frechet.frechet_distance(features, features)) < 1e-8


@pytest.mark.parametrize('seed', [1, 2])
def test_matches_scipy_on_random_features(seed):
  rng = np.random.default_rng(seed)
  a = rng.normal(size=(400, 16)) @ rng.normal(size=(16, 16))
  b = rng.normal(loc=0.3, size=(300, 16)) @ rng.normal(size=(16, 16))
  np.testing.assert_allclose(frechet.frechet_distance(a, b), _reference(a, b), rtol=1e-6)


def test_shifted_gaussians_give_the_squared_shift():
  rng = np.random.default_rng(3)
  a = rng.normal(size=(20000, 4))
  assert frechet.frechet_distance(a, a + 2.0) == pytest.approx(16.0, rel=1e-9)


def test_too_few_rows_is_one_line():
  with pytest.raises(ValueError, match=r'need \[N >= 2, D\] features'):
    frechet.frechet_distance(np.zeros((1, 3)), np.zeros((5, 3)))
