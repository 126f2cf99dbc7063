"""A 2-D transpose as one FFI call on CPU (kernels/cpu_transpose.cc), for the weight gradients.

kernels/matmul.py lays an activation out with its token axes last before a weight-gradient
matmul; XLA:CPU's copies for it were a large part of a small GPT's CPU step. Here square blocks
are transposed in vector registers on XLA's own thread pool (docs/kernels.md has the figures).
Runs on a single CPU device (XLA cannot partition an FFI call); elsewhere XLA's transpose stays.
"""

import functools
import os

import jax

from kernels import ffi_build

__all__ = ['build_name', 'isa', 'transpose', 'unavailable_reason', 'why_not']

_SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'cpu_transpose.cc')
_TARGET = 'lamina_transpose_2d'


@functools.cache
def unavailable_reason() -> str | None:
  """None once the kernel is built and registered with XLA; else why it cannot be."""
  return ffi_build.register({_TARGET: 'LaminaTranspose2D'}, lambda: ffi_build.load(_SOURCE))


def build_name() -> str:
  """How `describe` names this kernel's build, e.g. 'avx2 build'."""
  return f'{isa()} build'


def isa() -> str:
  """The build of the kernel (one of ffi_build.ISAS) that runs on this CPU."""
  return ffi_build.isa(ffi_build.load(_SOURCE))


def why_not(x: jax.Array) -> str | None:
  """None where `transpose` runs x; else why not."""
  if x.ndim != 2 or x.dtype.itemsize not in (2, 4):
    return f'a {x.ndim}-D {x.dtype} array (2-D, 2- or 4-byte elements only)'
  return ffi_build.placement_reason() or unavailable_reason()


def transpose(x: jax.Array) -> jax.Array:
  """x.T, materialized, for a 2-D x where `why_not(x)` is None (else a one-line ValueError)."""
  if (reason := why_not(x)) is not None:
    raise ValueError(f'cpu_transpose cannot run: {reason}')
  return _transpose(x)


@jax.custom_vjp
def _transpose(x):
  result = jax.ShapeDtypeStruct(x.shape[::-1], x.dtype)
  return jax.ffi.ffi_call(_TARGET, result, vmap_method='sequential')(x)


_transpose.defvjp(lambda x: (_transpose(x), None), lambda _, g: (_transpose(g),))  # its own adjoint
