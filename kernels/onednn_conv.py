"""2-D convolutions through oneDNN on CPU: a drop-in for `lax.conv_general_dilated`.

XLA:CPU lowers convolutions to Eigen's spatial convolution, and their gradients to
convolutions over transposed copies of the activations; oneDNN's brgemm kernels (what
PyTorch runs on a CPU) read NHWC as it is, several times faster per layer at the ResNet's
shapes (docs/kernels.md). The rest of the model stays XLA's, fused as before: only the
convolutions become FFI calls (kernels/onednn_conv.cc).

What runs here: 2-D, NHWC x HWIO, float32 (or bfloat16 where the CPU has bfloat16 kernels:
AVX-512 BF16 or AMX, `bf16_implementation()`), no dilation, one feature group, padding
>= 0. Anything else, and every shape on a run of several devices (XLA cannot partition
an FFI call), goes to XLA (kernels/xla_conv.py). The library is oneDNN 3
from pip (`onednn-cpu-gomp`, `onednn-devel-cpu-gomp`: the setup.cfg requirements on
x86-64 Linux), compiled on first use with the machine's g++ (kernels/ffi_build.py).

kernels.use('auto') sends a run's convolutions here where `why_not()` is None
(kernels/dispatch.py).
"""

import ctypes
import functools
import glob
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np

from kernels import ffi_build, xla_conv

__all__ = ['bf16_implementation', 'build_name', 'conv_general_dilated', 'ffi_flops', 'threads_for',
           'unavailable_reason', 'why_not']

_TARGETS = {
    'forward': ('lamina_onednn_conv_forward', 'OneDnnConvForward'),
    'backward_data': ('lamina_onednn_conv_backward_data', 'OneDnnConvBackwardData'),
    'backward_weights': ('lamina_onednn_conv_backward_weights', 'OneDnnConvBackwardWeights'),
}
# Each pass's (first operand, second operand, result): y is the forward output, as dy is.
_OPERANDS = {'forward': ('x', 'w', 'y'), 'backward_data': ('y', 'w', 'x'), 'backward_weights': ('x', 'y', 'w')}
_INSTALL = 'pip install onednn-cpu-gomp onednn-devel-cpu-gomp'
_NHWC = ('NHWC', 'HWIO', 'NHWC')


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
  return ffi_build.register(dict(_TARGETS.values()), _library)


@functools.cache
def _library() -> ctypes.CDLL:
  """The kernels' shared library, built on first use; raises BuildError or OSError."""
  include_dir, library_dir = _find_onednn()
  source = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'onednn_conv.cc')
  return ffi_build.load(source, include_dirs=[include_dir], library_dirs=[library_dir], libraries=['dnnl'])


def build_name() -> str:
  """How `describe` names what runs here, e.g. 'oneDNN (bf16: brgconv:avx512_core_amx)'."""
  return f'oneDNN (bf16: {bf16_implementation() or "emulated, so f32 only"})'


@functools.cache
def bf16_implementation() -> str | None:
  """oneDNN's kernel for bfloat16 convolutions on this CPU (e.g. 'brgconv:avx512_core_amx'), or
  None where the library cannot run or has only kernels that emulate bfloat16 (slower than XLA)."""
  if unavailable_reason() is not None:
    return None
  query = _library().LaminaOneDnnBf16Implementation
  query.restype = ctypes.c_char_p
  name = query().decode()
  return name if any(isa in name.split(':')[-1] for isa in _NATIVE_BF16_ISAS) else None


# oneDNN's names for the instruction sets that multiply bfloat16 in hardware and that
# train_lib.precision.fast_bfloat16 looks for: AMX and AVX-512 BF16.
_NATIVE_BF16_ISAS = ('amx', 'bf16')


def why_not() -> str | None:
  """None where this run's convolutions can go to oneDNN; else why not, in a few words."""
  return ffi_build.placement_reason() or unavailable_reason()


def conv_general_dilated(*args, **kwargs) -> jax.Array:
  """`lax.conv_general_dilated` (the same arguments), through oneDNN where it can run (see the module docstring).

  bfloat16 operands accumulate in float32 and come back in float32, as kernels/matmul.py's
  matmuls do, where lax would round the result to bf16: the BatchNorm after a convolution
  computes in float32, and XLA would otherwise write a float32 copy of every output.
  """
  plain = xla_conv.plain_problem(*args, **kwargs)
  problem = _onednn_problem(*plain) if plain else None
  if problem is None:
    return xla_conv.conv_general_dilated(*args, **kwargs)
  return _conv(*problem)


def _onednn_problem(lhs, rhs, strides, padding, precision):
  """(input, kernel, strides, padding) for the oneDNN kernels, or None where they do not run."""
  del precision  # oneDNN accumulates in float32 whatever lax's precision asks
  if lhs.ndim != 4 or lhs.dtype != rhs.dtype or jax.default_backend() != 'cpu' or unavailable_reason() is not None:
    return None
  if lhs.dtype != jnp.float32 and not (lhs.dtype == jnp.bfloat16 and bf16_implementation()):
    return None
  if any(p < 0 for pair in padding for p in pair):
    return None
  if rhs.shape[:2] == (1, 1) and strides != (1, 1):
    if any(p for pair in padding for p in pair):
      return None
    # A strided 1x1 convolution reads every s-th pixel: take them first. oneDNN 3.2's own
    # strided 1x1 weight gradient is wrong when the stride skips the last row (tests/integration/test_onednn_conv.py).
    lhs, strides = lhs[:, ::strides[0], ::strides[1]], (1, 1)
  return lhs, rhs, strides, padding


def threads_for(dtype: jnp.dtype) -> int:
  """oneDNN's threads for one convolution in `dtype` (0: all of this process's cores).

  XLA runs a step's independent operations side by side (a convolution's two gradients,
  the fusions around them). A bfloat16 convolution on AMX is short enough that giving it
  half the cores and letting XLA fill the rest wins; convolutions several times longer
  (float32 ones, bfloat16 ones on AVX-512 BF16 without AMX) lose that way and take every core.
  """
  if dtype != jnp.bfloat16 or 'amx' not in (bf16_implementation() or ''):
    return 0
  return max(1, len(os.sched_getaffinity(0)) // 2)


def _call(name: str, a: jax.Array, b: jax.Array, result: jax.ShapeDtypeStruct, strides, padding) -> jax.Array:
  target, _ = _TARGETS[name]
  # 'sequential': under vmap, one call per example, which is always correct.
  call = jax.ffi.ffi_call(target, result, vmap_method='sequential')
  return call(a, b, strides=np.asarray(strides, np.int64), padding=np.asarray([*padding[0], *padding[1]], np.int64),
              threads=np.int64(threads_for(b.dtype)))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv(x, w, strides, padding):
  shape = tuple(int(d) for d in jax.lax.conv_general_shape_tuple(x.shape, w.shape, strides, padding, _NHWC))
  return _call('forward', x, w, jax.ShapeDtypeStruct(shape, jnp.float32), strides, padding)


def _conv_fwd(x, w, strides, padding):
  return _conv(x, w, strides, padding), (x, w)


def _conv_bwd(strides, padding, residuals, dy):
  x, w = residuals
  dy = dy.astype(x.dtype)  # bf16 operands: both gradients multiply bf16, as the forward pass did
  dx = _call('backward_data', dy, w, jax.ShapeDtypeStruct(x.shape, x.dtype), strides, padding)
  dw = _call('backward_weights', x, dy, jax.ShapeDtypeStruct(w.shape, w.dtype), strides, padding)
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
