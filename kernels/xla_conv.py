"""XLA convolutions whose gradients XLA:CPU runs fast inside loops too.

JAX writes a convolution's weight gradient as a convolution over the activations with
batch and features swapped (dim_labels f01b_i01o->01bf), and its input gradient with the
kernel's in and out swapped (01oi). XLA:CPU turns both into its fast channels-last form
with explicit transposes, but not inside a while loop: under `lax.scan` (`steps_per_call`
> 1) they run in its slow generic loop instead, many times slower; written out as here
they stay fast there too.

`conv_general_dilated` is `lax.conv_general_dilated` with both gradients written so, for
channels-last convolutions without dilation or groups; anything else is lax's own.
"""

import functools
import inspect

import jax
import jax.numpy as jnp
from jax import lax

__all__ = ['conv_general_dilated', 'plain_problem']

_LAX_SIGNATURE = inspect.signature(lax.conv_general_dilated)


def _channels_last(ndim: int) -> lax.ConvDimensionNumbers:
  """N...C activations, ...IO kernels: what flax's nn.Conv passes."""
  spatial = tuple(range(1, ndim - 1))
  return lax.ConvDimensionNumbers(lhs_spec=(0, ndim - 1, *spatial), rhs_spec=(ndim - 1, ndim - 2, *range(ndim - 2)),
                                  out_spec=(0, ndim - 1, *spatial))


def plain_problem(*args, **kwargs) -> tuple | None:
  """(lhs, rhs, strides, padding pairs, precision) of a `lax.conv_general_dilated` call that is
  channels-last, undilated and ungrouped, with no preferred_element_type; None for any other."""
  bound = _LAX_SIGNATURE.bind(*args, **kwargs)
  bound.apply_defaults()
  a = bound.arguments
  lhs, rhs = a['lhs'], a['rhs']
  if (a['batch_group_count'] != 1 or a['feature_group_count'] != 1 or a['preferred_element_type'] is not None
      or any(d != 1 for d in (*(a['lhs_dilation'] or ()), *(a['rhs_dilation'] or ())))
      or lax.conv_dimension_numbers(lhs.shape, rhs.shape, a['dimension_numbers']) != _channels_last(lhs.ndim)):
    return None
  strides = tuple(int(s) for s in a['window_strides'])
  padding = a['padding']
  if isinstance(padding, str):
    padding = lax.padtype_to_pads(lhs.shape[1:-1], rhs.shape[:-2], strides, padding)
  return lhs, rhs, strides, tuple((int(lo), int(hi)) for lo, hi in padding), a['precision']


def conv_general_dilated(*args, **kwargs) -> jax.Array:
  """`lax.conv_general_dilated` (the same arguments), with the loop-friendly gradients where they apply."""
  plain = plain_problem(*args, **kwargs)
  if plain is None:
    return lax.conv_general_dilated(*args, **kwargs)
  return _conv(*plain)


def _plain(x, w, strides, padding, precision):
  return lax.conv_general_dilated(x, w, strides, padding, dimension_numbers=_channels_last(x.ndim),
                                  precision=precision)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def _conv(x, w, strides, padding, precision):
  return _plain(x, w, strides, padding, precision)


def _conv_fwd(x, w, strides, padding, precision):
  return _plain(x, w, strides, padding, precision), (x, w)


def _conv_bwd(strides, padding, precision, residuals, dy):
  x, w = residuals
  spatial = tuple(range(len(strides)))
  ones = (1,) * len(strides)
  # Per spatial axis: (low padding, kernel size, stride, output size, input size).
  axes = [(lo, k, s, o, size)
          for (lo, _), k, s, o, size in zip(padding, w.shape[:-2], strides, dy.shape[1:-1], x.shape[1:-1])]
  # dx: dy dilated by the stride, convolved with the kernel flipped and its in/out swapped
  # (explicitly, as for dW); the padding makes the output the input's size.
  kernel = jnp.swapaxes(jnp.flip(w, spatial), -1, -2)
  dx = lax.conv_general_dilated(dy, kernel, ones,
                                [(k - 1 - lo, size - 1 - s * (o - 1) + lo) for lo, k, s, o, size in axes],
                                lhs_dilation=strides, dimension_numbers=_channels_last(x.ndim), precision=precision)
  # dW[k, ci, co] = sum over n and output positions o of x[n, s*o + k - lo, ci] * dy[n, o, co]:
  # a convolution of x (batch Ci, features N) with dy as the kernel (in N, out Co), dilated by
  # the stride, its output the kernel's size. The hi padding drops rows the stride never reached.
  dw = lax.conv_general_dilated(jnp.swapaxes(x, 0, -1), jnp.moveaxis(dy, 0, -2), ones,
                                [(lo, k + s * (o - 1) - size - lo) for lo, k, s, o, size in axes],
                                rhs_dilation=strides, dimension_numbers=_channels_last(x.ndim), precision=precision)
  return dx, jnp.moveaxis(dw, 0, -2).astype(w.dtype)


_conv.defvjp(_conv_fwd, _conv_bwd)
