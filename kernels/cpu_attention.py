"""Fused attention on CPU (kernels/cpu_attention.cc): softmax(q k^T / sqrt(H)) v in one call each way.

XLA:CPU runs attention as a dozen small operations a layer (batched dots, the mask, the
softmax's reductions and its gradient), each a separate pass over [B, K, T, G, S] arrays
and most of them too small to split well over the cores: a third of nanoGPT's CPU train
step. The kernel here takes one (batch, key/value head) at a time on XLA's own thread pool
and computes its scores, softmax and output with small register-blocked matmuls in
per-thread scratch (L1/L2-sized for short contexts); the backward pass recomputes the
probabilities from the saved log-sum-exp (flash attention's scheme).

What runs here: no mask or a causal one, q/k/v in float32 or bfloat16 (float32 maths
throughout), grouped-query heads, on a single CPU device (XLA cannot partition an FFI
call). Anything else takes the einsum form (kernels/einsum_attention.py).
"""

import functools
import os

import jax
import jax.numpy as jnp

from kernels import ffi_build

__all__ = ['attention', 'build_name', 'ffi_flops', 'isa', 'unavailable_reason', 'why_not']

_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'cpu_attention.cc')
_FORWARD, _BACKWARD = 'lamina_attention_forward', 'lamina_attention_backward'


@functools.cache
def unavailable_reason() -> str | None:
  """None once the kernels are built and registered with XLA; else why they cannot be."""
  handlers = {_FORWARD: 'LaminaAttentionForward', _BACKWARD: 'LaminaAttentionBackward'}
  return ffi_build.register(handlers, lambda: ffi_build.load(_SOURCE))


def build_name() -> str:
  """How `describe` names this kernel's build, e.g. 'avx2 build'."""
  return f'{isa()} build'


def isa() -> str:
  """The build of the kernels (one of ffi_build.ISAS) that runs on this CPU."""
  return ffi_build.isa(ffi_build.load(_SOURCE))


def why_not(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array | None) -> str | None:
  """None where `attention` runs these operands; else why not, in a few words."""
  if mask is not None:
    return 'it takes no explicit mask (only none or causal masking)'
  if any(a.dtype not in (jnp.float32, jnp.bfloat16) for a in (q, k, v)):
    return f'dtypes {q.dtype}, {k.dtype}, {v.dtype}'
  return ffi_build.placement_reason() or unavailable_reason()


def attention(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array | None, causal: bool) -> jax.Array:
  """softmax(q k^T / sqrt(H)) v, [B, T, N, H] in q's dtype; q [B, T, N, H], k and v [B, S, K, H],
  keys s <= t visible to query t when `causal`.

  Raises a one-line ValueError where the kernel cannot run these operands (`why_not`).
  """
  if (reason := why_not(q, k, v, mask)) is not None:
    raise ValueError(f'the fused CPU attention kernel cannot run: {reason}')
  return _attention(q, k, v, causal)


def _forward_call(q, k, v, causal):
  b, t, n, _ = q.shape
  result = (jax.ShapeDtypeStruct(q.shape, q.dtype), jax.ShapeDtypeStruct((b, n, t), jnp.float32))
  # 'sequential': under vmap, one call per example, which is always correct.
  return jax.ffi.ffi_call(_FORWARD, result, vmap_method='sequential')(q, k, v, causal=causal)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def _attention(q, k, v, causal):
  return _forward_call(q, k, v, causal)[0]


def _attention_fwd(q, k, v, causal):
  out, lse = _forward_call(q, k, v, causal)
  return out, (q, k, v, out, lse)


def _attention_bwd(causal, residuals, d_out):
  q, k, v, out, lse = residuals
  result = tuple(jax.ShapeDtypeStruct(a.shape, a.dtype) for a in (q, k, v))
  call = jax.ffi.ffi_call(_BACKWARD, result, vmap_method='sequential')
  return call(q, k, v, out, lse, d_out.astype(q.dtype), causal=causal)


_attention.defvjp(_attention_fwd, _attention_bwd)


def ffi_flops(eqn) -> float | None:
  """Matmul FLOPs of one of these kernels' `ffi_call` jaxpr equations (None for any other
  equation): what the einsum implementation's dots count, q k^T and P v forward (4 BNTSH),
  four more backward (8 BNTSH); the backward pass's recomputed scores are not model FLOPs."""
  if eqn.primitive.name != 'ffi_call' or eqn.params['target_name'] not in (_FORWARD, _BACKWARD):
    return None
  (b, t, n, h), s = eqn.invars[0].aval.shape, eqn.invars[1].aval.shape[1]
  per_product = 2.0 * b * n * t * s * h
  return per_product * (2 if eqn.params['target_name'] == _FORWARD else 4)
