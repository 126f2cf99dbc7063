"""kernels/matmul.py through the dispatch: compute-dtype matmuls equal plain ones forward and backward."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

import kernels
from models import layers
from tests.ffi_kernels import ffi_targets

pytestmark = [pytest.mark.usefixtures('auto_kernels'), pytest.mark.needs_gxx]  # the transpose kernel


@pytest.mark.parametrize('dimension_numbers,lhs_shape,rhs_shape', [
    ((((1,), (0,)), ((), ())), (5, 3), (3, 4)),  # x @ w
    ((((2,), (0,)), ((), ())), (2, 5, 3), (3, 4)),  # a Dense over [B, T, E]
    ((((1,), (1,)), ((), ())), (5, 3), (4, 3)),  # x @ w.T
    ((((2,), (1,)), ((0,), (0,))), (2, 5, 3), (2, 3, 4)),  # batched
])
def test_dot_general_stand_in_equals_lax(dimension_numbers, lhs_shape, rhs_shape):
  keys = jax.random.split(jax.random.PRNGKey(0))
  lhs, rhs = jax.random.normal(keys[0], lhs_shape), jax.random.normal(keys[1], rhs_shape)
  want = jax.lax.dot_general(lhs, rhs, dimension_numbers)
  np.testing.assert_allclose(kernels.dot_general(jnp.float32)(lhs, rhs, dimension_numbers), want, rtol=1e-6)
  low = kernels.dot_general(jnp.bfloat16)(lhs, rhs, dimension_numbers)
  assert low.dtype == jnp.float32  # accumulated and returned in f32
  rounded = [x.astype(jnp.bfloat16).astype(jnp.float32) for x in (lhs, rhs)]
  np.testing.assert_allclose(low, jax.lax.dot_general(*rounded, dimension_numbers), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('spec,x_shape,w_shape', [
    ('bte,ekgh->btkgh', (2, 6, 8), (8, 2, 3, 4)),  # attention's fused q/k/v projection
    ('btnh,nhe->bte', (2, 6, 3, 4), (3, 4, 8)),  # its output projection
    ('ab,bd->ad', (12, 8), (8, 16)),  # a Dense on token rows
])
def test_bfloat16_gradients_are_the_float32_gradients_of_rounded_operands(spec, x_shape, w_shape):
  keys = jax.random.split(jax.random.PRNGKey(1))
  x, w = jax.random.normal(keys[0], x_shape), jax.random.normal(keys[1], w_shape)

  def loss(fn, x, w):
    return jnp.sum(jnp.tanh(fn(x, w)))

  got = jax.grad(lambda x, w: loss(lambda a, b: kernels.einsum(spec, a, b, jnp.bfloat16), x, w), (0, 1))(x, w)
  rounded = [a.astype(jnp.bfloat16).astype(jnp.float32) for a in (x, w)]
  want = jax.grad(lambda x, w: loss(lambda a, b: jnp.einsum(spec, a, b), x, w), (0, 1))(*rounded)
  for g, r in zip(got, want):
    assert g.dtype == jnp.float32
    # The cotangent is rounded to bf16 too: agreement to bf16 precision.
    np.testing.assert_allclose(g, r, rtol=2e-2, atol=2e-2 * float(jnp.abs(r).max()))


@pytest.mark.parametrize('spec,x_shape,w_shape', [
    ('bte,ekgh->btkgh', (2, 6, 8), (8, 2, 3, 4)),
    ('btnh,nhe->bte', (2, 6, 3, 4), (3, 4, 8)),
])
def test_float32_gradients_on_cpu_lay_the_activation_out_and_equal_jaxs(spec, x_shape, w_shape):
  keys = jax.random.split(jax.random.PRNGKey(2))
  x, w = jax.random.normal(keys[0], x_shape), jax.random.normal(keys[1], w_shape)
  ours = lambda x, w: jnp.sum(jnp.tanh(kernels.einsum(spec, x, w, jnp.float32)))
  got = jax.grad(ours, (0, 1))(x, w)
  want = jax.grad(lambda x, w: jnp.sum(jnp.tanh(jnp.einsum(spec, x, w))), (0, 1))(x, w)
  for g, r in zip(got, want):
    np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-5 * float(jnp.abs(r).max()))
  assert 'lamina_transpose_2d' in ffi_targets(jax.grad(ours, 1), x, w)


def test_bfloat16_dense_trains_like_float32():
  x = jax.random.normal(jax.random.PRNGKey(2), (32, 16))
  target = x @ jax.random.normal(jax.random.PRNGKey(3), (16, 4))
  losses = {}
  for dtype in (jnp.float32, jnp.bfloat16):
    dense = layers.dense(4, ('embed', 'mlp'), dtype=dtype, param_dtype=jnp.float32)
    params = nn.meta.unbox(dense.init(jax.random.PRNGKey(4), x))
    loss = lambda p: jnp.mean((dense.apply(p, x) - target) ** 2)
    descend = lambda _, p: jax.tree.map(lambda p, g: p - 0.1 * g, p, jax.grad(loss)(p))
    params = jax.jit(lambda p: jax.lax.fori_loop(0, 300, descend, p))(params)
    losses[dtype] = float(loss(params))
  assert losses[jnp.float32] < 1e-3 * float(jnp.mean(target**2))  # it fits
  assert losses[jnp.bfloat16] < 1e-3 * float(jnp.mean(target**2))  # so does the bf16 compute


def test_exact_gelu_equals_jax_erfc_form_and_its_gradient():
  x = jnp.linspace(-12.0, 12.0, 10_001)
  np.testing.assert_allclose(layers.exact_gelu(x), jax.nn.gelu(x, approximate=False), atol=2e-6)
  grad = jax.vmap(jax.grad(layers.exact_gelu))(x)
  np.testing.assert_allclose(grad, jax.vmap(jax.grad(lambda v: jax.nn.gelu(v, approximate=False)))(x), atol=2e-6)
