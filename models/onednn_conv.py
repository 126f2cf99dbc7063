"""2-D convolutions through oneDNN on CPU: a drop-in for `lax.conv_general_dilated`.

XLA:CPU lowers convolutions to Eigen's spatial convolution, and their gradients to
convolutions over transposed copies of the activations; oneDNN's brgemm kernels (what
PyTorch runs on a CPU) read NHWC as it is. On a 2-core EPYC (AVX2), Fashion-MNIST
ResNet shapes at batch 128: forward 2-2.7x and forward + both gradients 1.5-3x faster
per layer; the ResNet's whole train step 1.3x. The rest of the model stays XLA's, fused
as before: only the convolutions become FFI calls (models/onednn_conv.cc).

What runs here: 2-D, NHWC x HWIO, float32, no dilation, one feature group, padding
>= 0. Anything else, and every shape on a run of several devices (XLA cannot partition
an FFI call), goes to XLA (models/xla_conv.py). The library is oneDNN 3
from pip (`onednn-cpu-gomp`, `onednn-devel-cpu-gomp`: the setup.cfg requirements on
x86-64 Linux), compiled on first use with the machine's g++ (models/ffi_build.py).

`impl`, per model: 'xla' (never this), 'onednn' (required: a clear error if it cannot
run), 'auto' (this on a single CPU device when the library builds, else XLA).
"""

import functools
import glob
import logging
import os
import platform
import sys
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from models import ffi_build, xla_conv

__all__ = ['IMPLEMENTATIONS', 'conv_general_dilated', 'ffi_flops', 'resolve', 'unavailable_reason']

IMPLEMENTATIONS = ('xla', 'onednn', 'auto')
_TARGETS = {
    'forward': ('lamina_onednn_conv_forward', 'OneDnnConvForward'),
    'backward_data': ('lamina_onednn_conv_backward_data', 'OneDnnConvBackwardData'),
    'backward_weights': ('lamina_onednn_conv_backward_weights', 'OneDnnConvBackwardWeights'),
}
# Each pass's (first operand, second operand, result): y is the forward output, as dy is.
_OPERANDS = {'forward': ('x', 'w', 'y'), 'backward_data': ('y', 'w', 'x'), 'backward_weights': ('x', 'y', 'w')}
_INSTALL = 'pip install onednn-cpu-gomp onednn-devel-cpu-gomp'
_NHWC = ('NHWC', 'HWIO', 'NHWC')

ConvFn = Callable[..., jax.Array]


def _find_onednn() -> tuple[str, str]:
  """(include dir, library dir) of a oneDNN 3 install: pip's under sys.prefix, else the system's."""
  for prefix in dict.fromkeys([sys.prefix, sys.base_prefix, '/usr/local', '/usr']):
    header = os.path.join(prefix, 'include', 'oneapi', 'dnnl', 'dnnl_version.h')
    if not os.path.exists(header):
      continue
    with open(header) as f:
      if '#define DNNL_VERSION_MAJOR 3' not in f.read():
        continue  # the 2.x API differs
    for libdir in ('lib', 'lib64', 'lib/x86_64-linux-gnu'):
      if glob.glob(os.path.join(prefix, libdir, 'libdnnl.so*')):
        return os.path.join(prefix, 'include'), os.path.join(prefix, libdir)
  raise ffi_build.BuildError(f'oneDNN 3 headers and library not found ({_INSTALL})')


@functools.cache
def unavailable_reason() -> str | None:
  """None once the kernels are built and registered with XLA; else why they cannot be."""
  if platform.system() != 'Linux':
    return f'built for Linux only, not {platform.system()}'
  try:
    include_dir, library_dir = _find_onednn()
    source = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'onednn_conv.cc')
    library = ffi_build.load(source, include_dirs=[include_dir], library_dirs=[library_dir], libraries=['dnnl'])
  except (ffi_build.BuildError, OSError) as e:
    return str(e)
  for target, symbol in _TARGETS.values():
    jax.ffi.register_ffi_target(target, jax.ffi.pycapsule(getattr(library, symbol)), platform='cpu')
  return None


def resolve(impl: str) -> ConvFn | None:
  """The convolution function `impl` selects (None: lax's own); raises a one-line ValueError
  for an unknown name, or for impl='onednn' where it cannot run."""
  if impl not in IMPLEMENTATIONS:
    raise ValueError(f'conv_impl={impl!r} is not one of {list(IMPLEMENTATIONS)}')
  # XLA's own, on CPU with the weight gradient it runs fast inside loops (models/xla_conv.py).
  xla = xla_conv.conv_general_dilated if jax.default_backend() == 'cpu' else None
  if impl == 'xla':
    return xla
  why_not = _why_not_here()
  if why_not is None:
    return conv_general_dilated
  if impl == 'onednn':
    raise ValueError(f"conv_impl='onednn' cannot run: {why_not}; use conv_impl='auto' (XLA where oneDNN "
                     "cannot run) or 'xla'")
  _log_fallback(why_not)
  return xla


@functools.cache
def _log_fallback(why_not: str) -> None:
  logging.info('conv_impl=auto: XLA convolutions (%s)', why_not)


def _why_not_here() -> str | None:
  if jax.default_backend() != 'cpu':
    return f'the backend is {jax.default_backend()}, not cpu'
  if jax.device_count() != 1:
    return f'XLA cannot partition its FFI calls over the {jax.device_count()} devices of this run'
  return unavailable_reason()


def conv_general_dilated(*args, **kwargs) -> jax.Array:
  """`lax.conv_general_dilated` (the same arguments), through oneDNN where it can run (see the module docstring)."""
  plain = xla_conv.plain_problem(*args, **kwargs)
  problem = _onednn_problem(*plain) if plain else None
  if problem is None:
    return xla_conv.conv_general_dilated(*args, **kwargs)
  return _conv(*problem)


def _onednn_problem(lhs, rhs, strides, padding, precision):
  """(input, kernel, strides, padding) for the oneDNN kernels, or None where they do not run."""
  del precision  # float32 operands: oneDNN computes in float32 whatever lax's precision asks
  if (lhs.ndim != 4 or lhs.dtype != jnp.float32 or rhs.dtype != jnp.float32 or jax.default_backend() != 'cpu'
      or unavailable_reason() is not None):
    return None
  if any(p < 0 for pair in padding for p in pair):
    return None
  if rhs.shape[:2] == (1, 1) and strides != (1, 1):
    if any(p for pair in padding for p in pair):
      return None
    # A strided 1x1 convolution reads every s-th pixel: take them first. oneDNN 3.2's own
    # strided 1x1 weight gradient is wrong when the stride skips the last row (tests/test_onednn_conv.py).
    lhs, strides = lhs[:, ::strides[0], ::strides[1]], (1, 1)
  return lhs, rhs, strides, padding


def _call(name: str, a: jax.Array, b: jax.Array, shape: tuple[int, ...], strides, padding) -> jax.Array:
  target, _ = _TARGETS[name]
  # 'sequential': under vmap, one call per example, which is always correct.
  call = jax.ffi.ffi_call(target, jax.ShapeDtypeStruct(shape, jnp.float32), vmap_method='sequential')
  return call(a, b, strides=np.asarray(strides, np.int64), padding=np.asarray([*padding[0], *padding[1]], np.int64))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv(x, w, strides, padding):
  shape = tuple(int(d) for d in jax.lax.conv_general_shape_tuple(x.shape, w.shape, strides, padding, _NHWC))
  return _call('forward', x, w, shape, strides, padding)


def _conv_fwd(x, w, strides, padding):
  return _conv(x, w, strides, padding), (x, w)


def _conv_bwd(strides, padding, residuals, dy):
  x, w = residuals
  dx = _call('backward_data', dy, w, x.shape, strides, padding)
  dw = _call('backward_weights', x, dy, w.shape, strides, padding)
  return dx, dw


_conv.defvjp(_conv_fwd, _conv_bwd)


def ffi_flops(eqn) -> float | None:
  """Multiply-add FLOPs of one of these kernels' `ffi_call` jaxpr equations (None for any
  other equation): each pass costs what the forward convolution does."""
  if eqn.primitive.name != 'ffi_call' or not eqn.params['target_name'].startswith('lamina_onednn_conv_'):
    return None
  shapes = [v.aval.shape for v in eqn.invars] + [a.shape for a in eqn.params['result_avals']]
  role = dict(zip(_OPERANDS[eqn.params['target_name'].removeprefix('lamina_onednn_conv_')], shapes))
  kh, kw, ci, _ = role['w']
  return 2.0 * float(np.prod(role['y'])) * kh * kw * ci
