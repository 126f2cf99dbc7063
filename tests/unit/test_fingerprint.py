"""The checkpoint fingerprint: any one changed bit, or two swapped elements, changes it."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from train_lib import fingerprint


def test_checksum_is_the_weighted_sum_of_bit_patterns():
  x = np.linspace(-3, 3, 24, dtype=np.float32).reshape(2, 3, 4)
  bits = x.view(np.uint32).ravel().astype(np.uint64)
  expected = int((bits * (2 * np.arange(bits.size, dtype=np.uint64) + 1)).sum() % 2**32)
  assert fingerprint.of({'x': jnp.asarray(x)}) == {"['x']": expected}


@pytest.mark.parametrize('dtype', [jnp.float32, jnp.bfloat16, jnp.int32, jnp.uint8, jnp.bool_])
def test_one_changed_bit_or_a_swap_is_caught(dtype):
  x = (jnp.arange(60).reshape(6, 10) % 7).astype(dtype)
  saved = fingerprint.of({'params': {'w': x}, 'step': jnp.int32(3)})
  if dtype == jnp.bool_:
    changed = x.at[4, 5].set(~x[4, 5])
  else:
    unsigned = {1: jnp.uint8, 2: jnp.uint16, 4: jnp.uint32}[x.dtype.itemsize]
    bits = jax.lax.bitcast_convert_type(x, unsigned)
    changed = jax.lax.bitcast_convert_type(bits.at[4, 5].set(bits[4, 5] ^ 1), dtype)
  swapped = x.at[0, 0].set(x[0, 1]).at[0, 1].set(x[0, 0])
  assert x[0, 0] != x[0, 1]
  for other in (changed, swapped):
    restored = fingerprint.of({'params': {'w': other}, 'step': jnp.int32(3)})
    assert fingerprint.first_mismatch(saved, restored) == "['params']['w']"
  assert fingerprint.first_mismatch(saved, fingerprint.of({'params': {'w': x}, 'step': jnp.int32(3)})) is None


def test_a_missing_leaf_is_a_mismatch():
  saved = fingerprint.of({'a': jnp.ones(3), 'b': jnp.zeros(2)})
  assert fingerprint.first_mismatch(saved, fingerprint.of({'a': jnp.ones(3)})) == "['b']"
