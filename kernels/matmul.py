"""Matmuls in a compute dtype: low-precision operands, float32 accumulation, both ways.

bf16 x bf16 -> f32 is the fast matmul of every current chip: TPU MXUs, tensor cores,
and x86 with AVX512-BF16/AMX (where XLA:CPU runs plain bf16 -> bf16 slower than f32).
Asking for f32 output forward is not enough: the
gradient of such a dot receives an f32 cotangent, and JAX's transpose then multiplies
f32 by bf16, which XLA:CPU runs as a slow f32 dot. `einsum` here gives the backward
pass the same treatment as the forward one: the cotangent is rounded to the operands'
dtype and both gradient matmuls accumulate in f32.

On CPU, float32 matmuls take the same backward pass, for its weight gradient: a plain
matmul over an activation laid out token axes last, where JAX's own gradient contracts
the leading (token) axes, which XLA:CPU's dots run slower. Such matmuls have no
forward-mode derivative (jax.jvp); kernels/dispatch.py decides where each form runs.
"""

import functools
import math
import string

import jax
import jax.numpy as jnp
from flax.typing import Dtype

from kernels import cpu_transpose


def accumulation_dtype(dtype: Dtype) -> jnp.dtype | None:
  """float32 for operands under 32 bits; None (the operands' own type) otherwise."""
  return jnp.float32 if jnp.dtype(dtype).itemsize < 4 else None


@functools.partial(jax.custom_vjp, nondiff_argnums=(0,))
def einsum(spec: str, x: jax.Array, w: jax.Array) -> jax.Array:
  """einsum(spec, x, w) of operands of one dtype, accumulated and returned in f32 when that
  dtype is under 32 bits, with the backward pass above.

  `spec` is 'X,W->O' with no index summed inside a single operand, so the gradients are
  the einsums 'O,W->X' and 'X,O->W'.
  """
  return jnp.einsum(spec, x, w, preferred_element_type=accumulation_dtype(x.dtype))


def _einsum_fwd(spec, x, w):
  return einsum(spec, x, w), (x, w)


def _einsum_bwd(spec, residuals, cotangent):
  x, w = residuals
  inputs, out = spec.split('->')
  x_spec, w_spec = inputs.split(',')
  cotangent = cotangent.astype(x.dtype)
  dx = jnp.einsum(f'{out},{w_spec}->{x_spec}', cotangent, w, preferred_element_type=accumulation_dtype(x.dtype))
  dw = _weight_gradient(x, x_spec, cotangent, out, w_spec)
  return dx.astype(x.dtype), dw.astype(w.dtype)


def _weight_gradient(x, x_spec: str, cotangent, out_spec: str, w_spec: str) -> jax.Array:
  """einsum(x, cotangent -> w), which sums over the leading (token) axes of both.

  XLA:CPU runs a bf16 dot that contracts leading axes as a slower f32 one, and an f32 one
  slower than an ordinary matmul; so on CPU x is first laid out with those axes last, making
  it one.
  """
  summed = [i for i in x_spec if i not in w_spec]
  if summed and jax.default_backend() == 'cpu':
    kept = [i for i in x_spec if i in w_spec]
    x = _laid_out(x, [x_spec.index(i) for i in kept + summed])
    x_spec = ''.join(kept + summed)
  accumulate = accumulation_dtype(x.dtype)
  return jnp.einsum(f'{x_spec},{out_spec}->{w_spec}', x, cotangent, preferred_element_type=accumulate)


def _laid_out(x: jax.Array, order: list[int]) -> jax.Array:
  """jnp.transpose(x, order) written out in memory. A token-major activation whose leading
  axes move last is a 2-D transpose, which kernels/cpu_transpose.py runs faster than XLA."""
  lead = len(order) - order.index(0)  # how many leading axes move to the end, if that is the move
  if order == [*range(lead, x.ndim), *range(lead)]:
    flat = x.reshape(math.prod(x.shape[:lead]), math.prod(x.shape[lead:]))
    if cpu_transpose.why_not(flat) is None:
      return cpu_transpose.transpose(flat).reshape([x.shape[i] for i in order])
  return _materialized(jnp.transpose(x, order))


def _materialized(x: jax.Array) -> jax.Array:
  """x with its logical layout in memory: XLA folds a bare transpose into the consuming
  dot (or just relabels the layout), while a flat array has only one layout."""
  return jax.lax.optimization_barrier(x.reshape(-1)).reshape(x.shape)


einsum.defvjp(_einsum_fwd, _einsum_bwd)


def einsum_spec(lhs_rank: int, rhs_rank: int, dimension_numbers) -> str:
  """The einsum spec of a dot_general: output = batch dims, lhs free dims, rhs free dims."""
  (lhs_contract, rhs_contract), (lhs_batch, rhs_batch) = dimension_numbers
  letters = iter(string.ascii_letters)
  lhs = [next(letters) for _ in range(lhs_rank)]
  rhs = [next(letters) for _ in range(rhs_rank)]
  for l, r in (*zip(lhs_contract, rhs_contract), *zip(lhs_batch, rhs_batch)):
    rhs[r] = lhs[l]
  out = [lhs[d] for d in lhs_batch]
  out += [lhs[d] for d in range(lhs_rank) if d not in (*lhs_contract, *lhs_batch)]
  out += [rhs[d] for d in range(rhs_rank) if d not in (*rhs_contract, *rhs_batch)]
  return f'{"".join(lhs)},{"".join(rhs)}->{"".join(out)}'
