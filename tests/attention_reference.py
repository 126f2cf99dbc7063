"""Attention computed plainly in float32, the oracle every attention path is tested against,
and each path by name."""

import jax
import jax.numpy as jnp

import kernels
from kernels import cpu_attention, einsum_attention

_NEG_INF = float(jnp.finfo(jnp.float32).min)


def reference_attention(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array | None,
                        causal: bool) -> jax.Array:
  """softmax(q k^T / sqrt(H)) v in float32 by plain einsums, differentiated by JAX; v's dtype."""
  b, t, n, h = q.shape
  groups = n // k.shape[2]
  q = q.reshape(b, t, k.shape[2], groups, h).astype(jnp.float32)
  scores = jnp.einsum('btkgh,bskh->bktgs', q, k.astype(jnp.float32)) / jnp.sqrt(h)
  if mask is None and causal:
    mask = jnp.tril(jnp.ones((t, k.shape[1]), bool))[None, None]
  if mask is not None:
    scores = jnp.where(mask.reshape(mask.shape[0], 1, t, 1, -1), scores, _NEG_INF)
  probs = jax.nn.softmax(scores, axis=-1)
  out = jnp.einsum('bktgs,bskh->btkgh', probs, v.astype(jnp.float32))
  return out.reshape(b, t, n, h).astype(v.dtype)


def attend(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array | None, causal: bool,
           implementation: str = 'auto') -> jax.Array:
  """Attention by one path: 'fused' (the CPU kernel), 'einsum' (the custom-VJP form), 'reference',
  or the dispatch in mode 'auto' or 'xla'."""
  if implementation == 'fused':
    return cpu_attention.attention(q, k, v, mask, causal)
  if implementation == 'einsum':
    return einsum_attention.attention(q, k, v, mask, causal)
  if implementation == 'reference':
    return reference_attention(q, k, v, mask, causal)
  with kernels.use(implementation):
    return kernels.attention(q, k, v, mask, causal)
