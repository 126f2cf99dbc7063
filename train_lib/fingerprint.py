"""A checksum of every array in a pytree, computed where the arrays live.

orbax/tensorstore check a checkpoint's index and compression frames, but a changed byte
inside stored array data restores without an error, as a different number. A checkpoint
therefore carries this fingerprint of the state it saved, and a restore is compared with it.

Each array's checksum is sum_i bits_i * (2 i + 1) mod 2^32 over its elements' bit patterns:
any one changed bit changes it (the weight is odd), and so does a swap of two elements. It
is one fused reduction per array that keeps the array's sharding, so no array moves.
"""

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

# By bit width: int4 (a quantized model's weights) has 4, though numpy stores it in a byte.
_UNSIGNED = {4: jnp.uint4, 8: jnp.uint8, 16: jnp.uint16, 32: jnp.uint32}


def _checksum(x: jax.Array) -> jax.Array:
  if x.dtype == jnp.bool_:
    bits = x.astype(jnp.uint32)
  else:
    bits = jax.lax.bitcast_convert_type(x, _UNSIGNED[jax.dtypes.itemsize_bits(x.dtype)]).astype(jnp.uint32)
  index = jnp.zeros(x.shape, jnp.uint32)  # each element's row-major position, mod 2^32
  for axis in range(x.ndim):
    stride = int(np.prod(x.shape[axis + 1:])) % 2**32
    index = index + jax.lax.broadcasted_iota(jnp.uint32, x.shape, axis) * jnp.uint32(stride)
  return jnp.sum(bits * (2 * index + 1), dtype=jnp.uint32)


@jax.jit
def _checksums(tree: Any) -> Any:
  return jax.tree.map(_checksum, tree)


def of(tree: Any) -> dict[str, int]:
  """{key path: checksum} of every array leaf of `tree` (a JSON-able dict)."""
  sums = jax.device_get(_checksums(tree))
  return {jax.tree_util.keystr(path): int(value) for path, value in jax.tree_util.tree_leaves_with_path(sums)}


def first_mismatch(saved: dict[str, int], restored: dict[str, int]) -> str | None:
  """The first key path whose checksum differs (or that one side lacks), or None."""
  for key in sorted(saved.keys() | restored.keys()):
    if saved.get(key) != restored.get(key):
      return key
  return None
