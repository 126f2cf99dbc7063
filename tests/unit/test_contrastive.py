"""CLIP's and SigLIP's losses against plain numpy written from the papers' definitions."""

import jax.numpy as jnp
import numpy as np
import pytest

from train_lib import contrastive
from train_lib.evaluators import retrieval

pytestmark = pytest.mark.unit


def _pairs(n: int = 6, dim: int = 5, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  rng = np.random.default_rng(seed)
  a = rng.normal(size=(n, dim)).astype(np.float32)
  # Partners correlated, so the losses are far from their values at random.
  return a, (a + 0.7 * rng.normal(size=(n, dim))).astype(np.float32)


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  a = a / np.linalg.norm(a, axis=1, keepdims=True)
  b = b / np.linalg.norm(b, axis=1, keepdims=True)
  return a @ b.T


def _log_softmax_pick(row: np.ndarray, index: int) -> float:
  return float(row[index] - np.log(np.sum(np.exp(row))))


def test_clip_loss_is_the_symmetric_cross_entropy_of_the_scaled_cosines():
  a, b = _pairs()
  log_scale = np.log(7.0)
  logits = 7.0 * _cosines(a, b)
  expected = [-(_log_softmax_pick(logits[i], i) + _log_softmax_pick(logits[:, i], i)) / 2 for i in range(len(a))]
  loss, top1 = contrastive.clip_loss(jnp.asarray(a), jnp.asarray(b), jnp.float32(log_scale))
  np.testing.assert_allclose(loss, expected, rtol=1e-5)
  np.testing.assert_array_equal(top1['a_to_b_top1'], (logits.argmax(1) == np.arange(len(a))).astype(np.float32))
  np.testing.assert_array_equal(top1['b_to_a_top1'], (logits.argmax(0) == np.arange(len(a))).astype(np.float32))


def test_siglip_loss_sums_each_rows_sigmoid_terms():
  a, b = _pairs()
  scale, bias = 10.0, -10.0
  cosines = _cosines(a, b)
  expected = np.zeros(len(a))
  for i in range(len(a)):
    for j in range(len(b)):
      z = 1.0 if i == j else -1.0
      expected[i] += np.log1p(np.exp(-z * (scale * cosines[i, j] + bias)))
  loss, _ = contrastive.siglip_loss(jnp.asarray(a), jnp.asarray(b), jnp.float32(np.log(scale)), jnp.float32(bias))
  np.testing.assert_allclose(loss, expected, rtol=1e-5)


@pytest.mark.parametrize('name', ['clip', 'siglip'])
def test_padding_rows_change_no_real_pairs_loss(name):
  a, b = _pairs(n=8)
  real = 5
  # Padding rows copy a real row: if they leaked into the negatives, real losses would move.
  a[real:], b[real:] = a[0], b[0]
  valid = (np.arange(len(a)) < real).astype(np.float32)

  def loss(x, y, mask=None):
    args = (jnp.asarray(x), jnp.asarray(y), jnp.float32(2.0))
    if name == 'siglip':
      args += (jnp.float32(-3.0),)
    values, top1 = getattr(contrastive, f'{name}_loss')(*args, valid=mask)
    return np.asarray(values), {k: np.asarray(v) for k, v in top1.items()}

  padded, padded_top1 = loss(a, b, jnp.asarray(valid))
  alone, alone_top1 = loss(a[:real], b[:real])
  np.testing.assert_allclose(padded[:real], alone, rtol=1e-6)
  for key in alone_top1:
    np.testing.assert_array_equal(padded_top1[key][:real], alone_top1[key])


def test_embeddings_are_compared_by_direction_only():
  a, b = _pairs()
  loss, _ = contrastive.clip_loss(jnp.asarray(a), jnp.asarray(b), jnp.float32(1.0))
  scaled, _ = contrastive.clip_loss(jnp.asarray(3 * a), jnp.asarray(0.5 * b), jnp.float32(1.0))
  np.testing.assert_allclose(loss, scaled, rtol=1e-5)


def _brute_force_recall(queries, gallery, k, labels=None):
  hits = 0
  for i, q in enumerate(queries):
    cosines = [q @ g / np.linalg.norm(q) / np.linalg.norm(g) for g in gallery]
    top = sorted(range(len(gallery)), key=lambda j: -cosines[j])[:k]
    hits += any(np.array_equal(labels[j], labels[i]) for j in top) if labels is not None else i in top
  return hits / len(queries)


@pytest.mark.parametrize('labels', [None, 'classes', 'captions'])
def test_recall_at_k_matches_brute_force_ranking(labels, monkeypatch):
  monkeypatch.setattr(retrieval, '_QUERY_CHUNK', 7)  # several chunks, the last one short
  a, b = _pairs(n=30, dim=4, seed=3)
  # Captions: rows of ids, equal for items 0, 4, 8, ... as the classes are.
  labels = {None: None, 'classes': np.arange(30) % 4,
            'captions': np.stack([np.arange(30) % 4, np.full(30, 7)], axis=1)}[labels]
  got = retrieval.recall_at_k(a, b, (1, 3, 5), labels)
  for k in (1, 3, 5):
    assert got[k] == pytest.approx(_brute_force_recall(a, b, k, labels)), k
  assert 0 < got[1] < got[5] <= 1
