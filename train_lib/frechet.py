"""The Fréchet distance between two sets of features, each summarised by a Gaussian
(Heusel et al. 2017, as FID computes it in Inception's space):

  d^2 = |mu_a - mu_b|^2 + tr(S_a) + tr(S_b) - 2 tr((S_a S_b)^(1/2))

tr((S_a S_b)^(1/2)) is the sum of the square roots of the eigenvalues of the symmetric
S_a^(1/2) S_b S_a^(1/2), which has the same spectrum: a symmetric eigensolver in float64,
so a set against itself gives 0 to rounding (scipy's sqrtm route leaves complex residue).
"""

import numpy as np


def statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(mean [D], covariance [D, D]) of [N, D] features, in float64 (covariance over N - 1)."""
  features = np.asarray(features, np.float64)
  if features.ndim != 2 or features.shape[0] < 2:
    raise ValueError(f'need [N >= 2, D] features, got shape {features.shape}')
  return features.mean(axis=0), np.cov(features, rowvar=False)


def _sqrt_psd(matrix: np.ndarray) -> np.ndarray:
  values, vectors = np.linalg.eigh(matrix)
  return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def distance(stats_a: tuple[np.ndarray, np.ndarray], stats_b: tuple[np.ndarray, np.ndarray]) -> float:
  """The Fréchet distance (the squared form above, as FID reports it) between two `statistics`."""
  (mu_a, cov_a), (mu_b, cov_b) = stats_a, stats_b
  root_a = _sqrt_psd(cov_a)
  cross = np.sqrt(np.clip(np.linalg.eigvalsh(root_a @ cov_b @ root_a), 0, None)).sum()
  return float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2 * cross)


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
  """The Fréchet distance between feature sets a [N, D] and b [M, D]."""
  return distance(statistics(a), statistics(b))
