"""The CPU transpose kernel: exact copies, and the weight gradients that use it unchanged."""

import platform

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import kernels
from kernels import cpu_transpose
from tests.ffi_kernels import ffi_targets, python_on_devices

pytestmark = [pytest.mark.skipif(platform.system() != 'Linux', reason='the kernel is built for Linux only'),
              pytest.mark.usefixtures('auto_kernels'), pytest.mark.needs_gxx]


@pytest.mark.parametrize('shape', [(768, 128), (64, 48), (37, 19), (1, 5), (33, 70), (0, 4)])
@pytest.mark.parametrize('dtype', [jnp.bfloat16, jnp.float32, jnp.int16, jnp.uint32])
def test_equals_numpy_transpose_bit_for_bit(shape, dtype):
  x = jnp.asarray(np.random.default_rng(0).integers(0, 1000, shape), dtype)
  got = jax.jit(cpu_transpose.transpose)(x)
  assert got.dtype == x.dtype and got.shape == shape[::-1]
  np.testing.assert_array_equal(np.asarray(got), np.asarray(x).T)


def test_its_gradient_is_the_transposed_cotangent():
  x = jnp.arange(12.0).reshape(3, 4)
  weights = jnp.arange(12.0).reshape(4, 3) ** 2
  grad = jax.grad(lambda x: jnp.sum(cpu_transpose.transpose(x) * weights))(x)
  np.testing.assert_array_equal(grad, weights.T)


@pytest.mark.parametrize('x', [jnp.zeros((2, 3, 4)), jnp.zeros((3, 4), jnp.int8)])
def test_what_it_cannot_take_is_one_clear_error(x):
  with pytest.raises(ValueError, match='cpu_transpose cannot run: a .* array .2-D, 2- or 4-byte elements only.'):
    cpu_transpose.transpose(x)


def test_a_weight_gradient_uses_it_and_keeps_its_value():
  keys = jax.random.split(jax.random.PRNGKey(0))
  x, w = jax.random.normal(keys[0], (2, 48, 32)), jax.random.normal(keys[1], (32, 80))
  loss = lambda x, w: jnp.sum(jnp.tanh(kernels.einsum('btd,de->bte', x, w, jnp.bfloat16)))
  assert 'lamina_transpose_2d' in ffi_targets(jax.grad(loss, 1), x, w)
  rounded = [a.astype(jnp.bfloat16).astype(jnp.float32) for a in (x, w)]
  want = jax.grad(lambda x, w: jnp.sum(jnp.tanh(jnp.einsum('btd,de->bte', x, w))), 1)(*rounded)
  np.testing.assert_allclose(jax.grad(loss, 1)(x, w), want, rtol=2e-2, atol=2e-2 * float(jnp.abs(want).max()))


def test_several_devices_keep_xlas_transpose():
  code = ('import jax, jax.numpy as jnp\n'
          'from kernels import cpu_transpose\n'
          'print(cpu_transpose.why_not(jnp.zeros((4, 4))))\n')
  stdout = python_on_devices(code, 2)
  assert 'cannot partition an FFI call over the 2 devices' in stdout
