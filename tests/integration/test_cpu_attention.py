"""The fused CPU attention kernel: the reference's numbers, used only where it can run."""

import platform

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from kernels import cpu_attention
from tests import attention_reference
from tests.ffi_kernels import ffi_targets, python_on_devices
from train_lib import accounting

pytestmark = [pytest.mark.skipif(platform.system() != 'Linux', reason='the kernel is built for Linux only'),
              pytest.mark.needs_gxx]


def _operands(seed, b, t, s, n, k, h, dtype=jnp.float32):
  keys = jax.random.split(jax.random.PRNGKey(seed), 4)
  q = jax.random.normal(keys[0], (b, t, n, h))
  kv = [jax.random.normal(key, (b, s, k, h)) for key in keys[1:3]]
  weights = jax.random.normal(keys[3], (b, t, n, h))  # a loss that weighs every output differently
  return [x.astype(dtype) for x in (q, *kv)], weights


def _loss(implementation, causal, weights):
  def loss(q, k, v):
    out = attention_reference.attend(q, k, v, None, causal, implementation)
    return jnp.sum(out.astype(jnp.float32) * weights)
  return loss


def _targets(fn, *args) -> set[str]:
  return set(ffi_targets(fn, *args))


def test_builds_here():
  assert cpu_attention.unavailable_reason() is None


@pytest.mark.parametrize('b, t, s, n, k, h, causal', [
    (3, 64, 64, 4, 4, 32, True),  # nanoGPT's heads
    (2, 7, 7, 4, 2, 8, True),  # grouped-query heads; sizes off every vector and block width
    (2, 5, 9, 6, 3, 20, False),  # more keys than queries
    (2, 5, 21, 2, 2, 16, True),  # causal with more keys than queries: query t sees keys 0..t
    (2, 21, 5, 2, 2, 16, True),  # and with fewer
    (1, 33, 33, 2, 1, 70, True),  # one key/value head for all; a head wider than 64
    (2, 1, 1, 1, 1, 1, False),
])
def test_values_and_gradients_equal_the_reference(b, t, s, n, k, h, causal):
  (q, key, value), weights = _operands(0, b, t, s, n, k, h)
  fused = jax.jit(jax.value_and_grad(_loss('fused', causal, weights), (0, 1, 2)))
  reference = jax.jit(jax.value_and_grad(_loss('reference', causal, weights), (0, 1, 2)))
  got, want = fused(q, key, value), reference(q, key, value)
  for a, r in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
    np.testing.assert_allclose(a, r, rtol=2e-5, atol=2e-5 * float(jnp.abs(r).max()))
  assert _targets(jax.grad(_loss('fused', causal, weights), (0, 1, 2)), q, key, value) == {
      'lamina_attention_forward', 'lamina_attention_backward'}


def test_bfloat16_operands_give_bfloat16_results_close_to_float32():
  (q, key, value), weights = _operands(1, 2, 16, 16, 4, 2, 32, jnp.bfloat16)
  out = attention_reference.attend(q, key, value, None, True, 'fused')
  assert out.dtype == jnp.bfloat16
  grads = jax.grad(_loss('fused', True, weights), (0, 1, 2))(q, key, value)
  assert [g.dtype for g in grads] == [jnp.bfloat16] * 3
  # The reference on the same (rounded) operands in float32: only the results' rounding differs.
  rounded = [x.astype(jnp.float32) for x in (q, key, value)]
  want_out = attention_reference.reference_attention(*rounded, None, True)
  np.testing.assert_allclose(out.astype(jnp.float32), want_out, atol=1e-2)
  want = jax.grad(_loss('reference', True, weights), (0, 1, 2))(*rounded)
  for g, w in zip(grads, want):
    np.testing.assert_allclose(g.astype(jnp.float32), w, atol=1e-2 * float(jnp.abs(w).max()))


def test_auto_runs_the_kernel_only_without_an_explicit_mask():
  (q, key, value), _ = _operands(2, 2, 6, 6, 2, 2, 8)
  causal = lambda q, k, v: attention_reference.attend(q, k, v, None, True)
  assert _targets(causal, q, key, value) == {'lamina_attention_forward'}
  mask = jnp.tril(jnp.ones((6, 6), bool))[None, None]
  masked = lambda q, k, v: attention_reference.attend(q, k, v, mask, True)
  assert _targets(masked, q, key, value) == set()  # the einsum form
  np.testing.assert_allclose(masked(q, key, value), causal(q, key, value), atol=1e-5)


def test_fused_with_a_mask_is_one_clear_error():
  (q, key, value), _ = _operands(3, 1, 4, 4, 1, 1, 8)
  with pytest.raises(ValueError, match='the fused CPU attention kernel cannot run: it takes no explicit mask'):
    attention_reference.attend(q, key, value, jnp.ones((1, 1, 4, 4), bool), True, 'fused')


def test_under_vmap_each_example_is_its_own_call():
  (q, key, value), _ = _operands(4, 3, 5, 5, 2, 2, 8)
  attend = lambda q, k, v: attention_reference.attend(q[None], k[None], v[None], None, True, 'fused')[0]
  np.testing.assert_allclose(jax.vmap(attend)(q, key, value),
                             attention_reference.reference_attention(q, key, value, None, True), atol=1e-5)


def test_flops_are_the_einsum_implementations_matmuls():
  b, t, n, h = 2, 8, 4, 16
  (q, key, value), weights = _operands(5, b, t, t, n, n, h)
  product = 2.0 * b * n * t * t * h
  assert accounting.matmul_flops(lambda q, k, v: attention_reference.attend(q, k, v, None, True, 'fused'),
                                 q, key, value) == 2 * product
  assert accounting.matmul_flops(jax.grad(_loss('fused', True, weights), (0, 1, 2)), q, key, value) == 6 * product


def test_several_devices_fall_back_to_einsum():
  code = ('import jax, jax.numpy as jnp\n'
          'from tests.integration import test_cpu_attention as t\n'
          'from tests import attention_reference\n'
          'q = jnp.ones((1, 4, 2, 8))\n'
          'print(jax.device_count(), t._targets(lambda q: attention_reference.attend(q, q, q, None, True), q))\n')
  stdout = python_on_devices(code, 2)
  assert stdout.strip() == '2 set()'
