"""Names of the floating-point types a config may ask for, and what 'auto' means here."""

import functools

import jax
import jax.numpy as jnp

import kernels
from train_lib.errors import ConfigError

DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16, 'float16': jnp.float16}
AUTO = 'auto'


@functools.cache
def fast_bfloat16() -> bool:
  """Whether this machine multiplies bf16 (with f32 accumulation) faster than f32.

  TPUs and GPUs do; so do x86 CPUs with AVX512-BF16 or AMX (2-3x here), while on
  other CPUs XLA emulates bf16 and runs it slower than f32.
  """
  if jax.default_backend() != 'cpu':
    return True
  return bool({'avx512_bf16', 'amx_bf16'} & kernels.cpu_flags())


def resolve(name: str) -> str:
  """The dtype name `name` stands for: 'auto' is bfloat16 where that is fast, else float32."""
  if name == AUTO:
    return 'bfloat16' if fast_bfloat16() else 'float32'
  if name not in DTYPES:
    raise ConfigError(f"unknown dtype '{name}'; valid dtypes are {sorted(DTYPES) + [AUTO]}")
  return name


def dtype(name: str) -> jnp.dtype:
  return DTYPES[resolve(name)]
