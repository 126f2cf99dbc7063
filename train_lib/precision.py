"""Names of the floating-point types a config may ask for."""

import jax.numpy as jnp

from train_lib.errors import ConfigError

DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16, 'float16': jnp.float16}


def dtype(name: str) -> jnp.dtype:
  if name not in DTYPES:
    raise ConfigError(f"unknown dtype '{name}'; valid dtypes are {sorted(DTYPES)}")
  return DTYPES[name]
