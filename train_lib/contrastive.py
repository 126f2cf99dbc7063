"""Contrastive losses between paired embeddings: CLIP's InfoNCE and SigLIP's pairwise sigmoid.

Rows i of `a` [B, D] and `b` [B, D] are the two sides of one pair (an image and its caption).
Both losses score every row of `a` against every row of `b`, so the i-th pair's negatives are
the batch's other B - 1 rows. Under the trainer's jit the arrays are global: on a sharded mesh
`a @ b.T` spans every device's examples, and XLA gathers the embeddings across the batch axes
(what CLIP's and big_vision's all-gathers do by hand), so a sharded step computes the same loss
as one device.

`valid` [B] (0 for the eval loader's padding rows) removes padding from every real row's
negatives, so padding changes no real example's loss; the padding rows' own values are garbage
for the evaluator to mask.
"""

import jax
import jax.numpy as jnp


def normalize(x: jax.Array) -> jax.Array:
  """Rows scaled to unit L2 norm, in float32 (a zero row stays zero)."""
  x = x.astype(jnp.float32)
  return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x, axis=-1, keepdims=True), 1e-12))


def similarities(a: jax.Array, b: jax.Array, log_scale: jax.Array) -> jax.Array:
  """[B, B] logits exp(log_scale) * cos(a_i, b_j): the learned temperature as CLIP parametrises it."""
  return jnp.exp(log_scale) * normalize(a) @ normalize(b).T


def clip_loss(a: jax.Array, b: jax.Array, log_scale: jax.Array,
              valid: jax.Array | None = None) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Per-pair InfoNCE (Radford et al. 2021): the mean of row i's cross-entropy picking b_i among
  all b and column i's picking a_i among all a. Returns (loss [B], {'a_to_b_top1', 'b_to_a_top1'})."""
  logits = _without_padding(similarities(a, b, log_scale), valid)
  diagonal = jnp.diagonal(logits)
  a_to_b = jax.nn.logsumexp(logits, axis=1) - diagonal
  b_to_a = jax.nn.logsumexp(logits, axis=0) - diagonal
  return (a_to_b + b_to_a) / 2, _top1(logits)


def siglip_loss(a: jax.Array, b: jax.Array, log_scale: jax.Array, bias: jax.Array,
                valid: jax.Array | None = None) -> tuple[jax.Array, dict[str, jax.Array]]:
  """Per-row pairwise sigmoid loss (Zhai et al. 2023): row i's sum over every b_j of
  -log sigmoid(z_ij * (t * cos(a_i, b_j) + bias)), z_ij = 1 for the pair (j = i), else -1.
  Its batch mean is the paper's loss. Returns (loss [B], {'a_to_b_top1', 'b_to_a_top1'})."""
  logits = similarities(a, b, log_scale) + bias
  signs = 2 * jnp.eye(logits.shape[0], dtype=logits.dtype) - 1
  terms = -jax.nn.log_sigmoid(signs * logits)
  if valid is not None:
    terms = jnp.where((valid > 0)[None, :], terms, 0.0)
  return jnp.sum(terms, axis=1), _top1(_without_padding(logits, valid))


def _without_padding(logits: jax.Array, valid: jax.Array | None) -> jax.Array:
  """`logits` with -inf where a real row meets a padding column or a padding row a real column
  (each row keeps its own pair, so no row is all -inf)."""
  if valid is None:
    return logits
  real = valid > 0
  return jnp.where(real[None, :] & real[:, None] | jnp.eye(len(valid), dtype=bool), logits, -jnp.inf)


def _top1(logits: jax.Array) -> dict[str, jax.Array]:
  """Per pair: whether its partner is the most similar row, from each side."""
  index = jnp.arange(logits.shape[0])
  return {'a_to_b_top1': (jnp.argmax(logits, axis=1) == index).astype(jnp.float32),
          'b_to_a_top1': (jnp.argmax(logits, axis=0) == index).astype(jnp.float32)}
