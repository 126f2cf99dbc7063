"""JAX's persistent compilation cache, on by default: a rerun loads its programs instead of compiling them.

The cache lives in ~/.cache/lamina/jax, bounded at MAX_BYTES with the least recently
used programs evicted first (the eviction's file lock also keeps concurrent runs'
reads and writes whole). JAX's own settings win: JAX_COMPILATION_CACHE_DIR moves it,
JAX_ENABLE_COMPILATION_CACHE=false turns it off. Only programs that took over a second
to compile are kept (jax_persistent_cache_min_compile_time_secs).

It must be set before the process's first compilation: JAX decides once whether a
process uses the cache.
"""

import os

import jax

DEFAULT_DIR = os.path.join(os.path.expanduser('~'), '.cache', 'lamina', 'jax')
MAX_BYTES = 4 << 30


def enable() -> str | None:
  """Points JAX at lamina's cache unless JAX was configured otherwise; returns the directory in use."""
  if not jax.config.jax_enable_compilation_cache:
    return None
  if jax.config.jax_compilation_cache_dir is None:
    jax.config.update('jax_compilation_cache_dir', DEFAULT_DIR)
    jax.config.update('jax_compilation_cache_max_size', MAX_BYTES)
  return jax.config.jax_compilation_cache_dir
