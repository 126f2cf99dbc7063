"""kernels/xla_conv.py: lax's convolution with gradients XLA:CPU runs fast inside loops."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from kernels import xla_conv

_SPECS = {1: ('NWC', 'WIO', 'NWC'), 2: ('NHWC', 'HWIO', 'NHWC'), 3: ('NDHWC', 'DHWIO', 'NDHWC')}


@pytest.mark.parametrize('x_shape,w_shape,strides,padding', [
    ((2, 9, 3), (3, 3, 4), (1,), 'SAME'),
    ((2, 9, 3), (5, 3, 4), (2,), 'VALID'),
    ((2, 8, 8, 3), (3, 3, 3, 5), (1, 1), 'SAME'),
    ((2, 9, 7, 3), (3, 3, 3, 5), (2, 2), 'SAME'),  # the stride never reaches the last row
    ((2, 9, 7, 3), (3, 2, 3, 5), (2, 3), ((1, 0), (2, 1))),
    ((2, 8, 8, 3), (1, 1, 3, 5), (2, 2), 'VALID'),
    ((1, 5, 6, 4, 2), (3, 3, 3, 2, 3), (1, 2, 1), 'SAME'),
])
@pytest.mark.parametrize('dtype', [jnp.float32, jnp.bfloat16])
def test_values_and_gradients_are_lax_ones(x_shape, w_shape, strides, padding, dtype):
  spec = _SPECS[len(x_shape) - 2]
  x = jax.random.normal(jax.random.PRNGKey(0), x_shape, dtype)
  w = jax.random.normal(jax.random.PRNGKey(1), w_shape, dtype)
  results = []
  for conv in (lax.conv_general_dilated, xla_conv.conv_general_dilated):
    def loss(x, w):
      y = conv(x, w, strides, padding, dimension_numbers=spec).astype(jnp.float32)
      return jnp.sum(y * jnp.cos(y))
    results.append(jax.jit(jax.value_and_grad(loss, argnums=(0, 1)))(x, w))
  tolerance = 1e-5 if dtype == jnp.float32 else 2e-2
  for ours, theirs in zip(jax.tree.leaves(results[1]), jax.tree.leaves(results[0])):
    assert ours.dtype == theirs.dtype
    np.testing.assert_allclose(np.asarray(ours, np.float32), np.asarray(theirs, np.float32),
                               rtol=tolerance, atol=tolerance * float(np.abs(np.asarray(theirs, np.float32)).max()))


def test_dilated_and_grouped_convolutions_are_lax_unchanged():
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 9, 9, 4))
  w = jax.random.normal(jax.random.PRNGKey(1), (3, 3, 2, 6))
  kwargs = dict(window_strides=(1, 1), padding='SAME', rhs_dilation=(2, 2), dimension_numbers=_SPECS[2],
                feature_group_count=2)
  jaxpr = jax.make_jaxpr(lambda x, w: xla_conv.conv_general_dilated(x, w, **kwargs))(x, w)
  assert [e.primitive.name for e in jaxpr.eqns] == ['conv_general_dilated']
  np.testing.assert_array_equal(xla_conv.conv_general_dilated(x, w, **kwargs), lax.conv_general_dilated(x, w, **kwargs))


def test_gradients_in_a_scan_compile_to_channels_last_convolutions():
  # XLA:CPU's fast convolutions take b01f inputs and 01io kernels; inside a loop lax's own
  # gradients kept their swapped forms (f01b_i01o->01bf for dW, 01oi kernels for dx) and ran
  # in XLA's slow generic loop.
  def conv(x, w, strides):
    return xla_conv.conv_general_dilated(x, w, strides, 'SAME', dimension_numbers=_SPECS[2])

  def step(ws, x):
    loss = lambda ws: jnp.sum(jnp.tanh(conv(jnp.tanh(conv(x, ws[0], (2, 2))), ws[1], (1, 1))))
    return jax.tree.map(lambda w, g: w - 1e-3 * g, ws, jax.grad(loss)(ws)), None

  xs = jnp.ones((3, 16, 8, 8, 4))
  ws = (jnp.ones((3, 3, 4, 8)), jnp.ones((3, 3, 8, 8)))
  hlo = jax.jit(lambda ws, xs: lax.scan(step, ws, xs)[0]).lower(ws, xs).compile().as_text()
  labels = re.findall(r'convolution\(.*?dim_labels=(\S+?)[,\s]', hlo)
  assert len(labels) == 5, hlo  # two forward, two weight gradients, one input gradient
  assert set(labels) == {'b01f_01io->b01f'}, labels
