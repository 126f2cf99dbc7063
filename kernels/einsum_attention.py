"""Attention as einsums with a hand-written backward pass: the CPU form where the fused
kernel (kernels/cpu_attention.py) cannot run (a mask, several devices).

The backward pass is softmax's own, dS = P * (dP - rowsum(P * dP)). Matmul operands stay in
the compute dtype and accumulate in float32. Scores and probabilities are laid out
[B, K, T, G, S], the order a batched dot emits (batch dims, then the lhs's free dims, then the
rhs's), so no transpose sits between the dots and the softmax; the row sum runs over the
keys, because XLA:CPU fuses flash attention's rowsum(dO * O) over the head dimension with the dP
matmul into one slow library call.

Shapes: q [B, T, N, H], k and v [B, S, K, H] with N a multiple of K (grouped-query attention:
query head k * G + g reads key/value head k); mask [B, 1, T, S] bool or None.
"""

import jax
import jax.numpy as jnp

__all__ = ['attention']

_NEG_INF = float(jnp.finfo(jnp.float32).min)


def attention(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array | None, causal: bool) -> jax.Array:
  """softmax(q k^T / sqrt(H)) v, [B, T, N, H] in q's dtype; `causal` applies when `mask` is None."""
  return _attention(q, k, v, _visible(mask, causal, q.shape[1], k.shape[1]))


def _visible(mask: jax.Array | None, causal: bool, t: int, s: int) -> jax.Array | None:
  """The mask as [B or 1, 1, T, 1, S] over (kv head, query, group, key), or None."""
  if mask is None:
    return jnp.tril(jnp.ones((t, s), bool))[None, None, :, None] if causal else None
  return mask.reshape(mask.shape[0], 1, mask.shape[-2], 1, mask.shape[-1])


def _grouped(q: jax.Array, kv_heads: int) -> jax.Array:
  b, t, n, h = q.shape
  return q.reshape(b, t, kv_heads, n // kv_heads, h)


def _probabilities(q, k, visible) -> jax.Array:
  """Softmax over keys of the scaled scores, float32 [B, K, T, G, S]."""
  scale = q.shape[-1] ** -0.5
  scores = jnp.einsum('btkgh,bskh->bktgs', _grouped(q, k.shape[2]), k, preferred_element_type=jnp.float32)
  scores = scores * scale
  if visible is not None:
    scores = jnp.where(visible, scores, _NEG_INF)
  return jax.nn.softmax(scores, axis=-1)


def _combine(probs, v, shape) -> jax.Array:
  out = jnp.einsum('bktgs,bskh->btkgh', probs.astype(v.dtype), v, preferred_element_type=jnp.float32)
  return out.reshape(shape)


@jax.custom_vjp
def _attention(q, k, v, visible):
  return _combine(_probabilities(q, k, visible), v, q.shape).astype(q.dtype)


def _attention_fwd(q, k, v, visible):
  probs = _probabilities(q, k, visible)
  return _combine(probs, v, q.shape).astype(q.dtype), (q, k, v, visible, probs)


def _attention_bwd(residuals, d_out):
  q, k, v, visible, probs = residuals
  dtype, f32 = q.dtype, jnp.float32
  d_out = _grouped(d_out.astype(dtype), k.shape[2])
  dv = jnp.einsum('bktgs,btkgh->bskh', probs.astype(dtype), d_out, preferred_element_type=f32)
  weighted = probs * jnp.einsum('btkgh,bskh->bktgs', d_out, v, preferred_element_type=f32)
  # The row sum as a dot with ones: written as a reduce, XLA:CPU joins it and the dP
  # matmul into one library call, slower than the two apart.
  row = jnp.einsum('bktgs,s->bktg', weighted, jnp.ones(weighted.shape[-1], f32))[..., None]
  d_scores = ((weighted - probs * row) * q.shape[-1] ** -0.5).astype(dtype)
  dq = jnp.einsum('bktgs,bskh->btkgh', d_scores, k, preferred_element_type=f32).reshape(q.shape)
  dk = jnp.einsum('bktgs,btkgh->bskh', d_scores, _grouped(q, k.shape[2]), preferred_element_type=f32)
  return dq.astype(dtype), dk.astype(k.dtype), dv.astype(v.dtype), None


_attention.defvjp(_attention_fwd, _attention_bwd)
