"""Multi-head attention with grouped-query heads, rotary positions and a KV cache.

The attention itself, softmax(q k^T / sqrt(H)) v, is `kernels.attention`: plain
`jax.nn.dot_product_attention`, or a fast path the run's `config.kernels` allows.

Positions drive masking: a key is visible to a query when its position is >= 0
and, for causal attention, <= the query's. Left-padded prompts use negative
positions for their padding, and the cache marks empty slots with -1, so one
rule covers training, batched prompts and incremental decoding.

Cross-attention (`cross=True`) reads its queries from x and its keys and values from an
encoder's memory [B, S, E'] (a captioner's image tokens): every memory token is visible to
every query, and there are no rotary positions. With `decode=True` the memory's keys and
values are computed by the call that passes the memory and cached; later calls pass none.

Logical axes: the fused q/k/v kernel ('embed', 'heads', None, 'kv'), output kernel
('heads', 'kv', 'embed'); cross-attention's query and key/value kernels are laid out like the
fused one, ('embed', 'heads', None, 'kv').
"""

import jax
import jax.numpy as jnp
from flax import linen as nn
from flax.typing import Dtype, Initializer

import kernels


def rotary(x: jax.Array, positions: jax.Array, base: float = 10_000.0) -> jax.Array:
  """Rotates feature pairs (i, i + H/2) of x [B, T, N, H] by angle position * base^(-2i/H)."""
  half = x.shape[-1] // 2
  inv_freq = base ** (-jnp.arange(half, dtype=jnp.float32) / half)
  angles = positions[..., None].astype(jnp.float32) * inv_freq  # [B, T, H/2]
  sin, cos = jnp.sin(angles)[:, :, None, :], jnp.cos(angles)[:, :, None, :]
  first, second = jnp.split(x.astype(jnp.float32), 2, axis=-1)
  return jnp.concatenate([first * cos - second * sin, second * cos + first * sin], -1).astype(x.dtype)


def visibility(query_positions: jax.Array, key_positions: jax.Array, causal: bool) -> jax.Array:
  """[B, 1, T, S] bool: which keys each query may attend to."""
  keys = jnp.asarray(key_positions)[:, None, None, :]
  visible = keys >= 0
  if causal:
    visible = visible & (keys <= jnp.asarray(query_positions)[:, None, :, None])
  return visible


class MultiHeadAttention(nn.Module):
  """Self-attention over x [B, T, E], or with `cross=True` attention from x to a memory;
  `num_kv_heads` < `num_heads` gives grouped-query attention.

  With `decode=True` the keys and values of every call are appended to a cache in
  the 'cache' collection (created at init with the init input's length as its
  capacity), and queries attend to everything cached so far.
  """

  num_heads: int
  head_dim: int
  num_kv_heads: int | None = None
  causal: bool = True
  use_rotary: bool = False
  use_bias: bool = False
  decode: bool = False
  cross: bool = False
  kernel_init: Initializer = nn.initializers.normal(0.02)
  out_init: Initializer = nn.initializers.normal(0.02)
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  def __post_init__(self) -> None:
    kv_heads = self.num_kv_heads or self.num_heads
    if self.num_heads % kv_heads:
      raise ValueError(f'num_heads={self.num_heads} must be a multiple of num_kv_heads={kv_heads}')
    super().__post_init__()

  def _weights(self, name: str, shape: tuple[int, ...], axes: tuple[str | None, ...], bias_axes: int,
               init: Initializer) -> tuple[jax.Array, jax.Array]:
    """(kernel, bias or 0) in the compute dtype; the bias covers the last `bias_axes` axes.

    Own params, not nn.DenseGeneral: its kernel init runs on a flattened shape, which
    clashes with multi-axis logical names."""
    kernel = self.param(f'{name}_kernel', nn.with_logical_partitioning(init, axes), shape, self.param_dtype)
    bias = (self.param(f'{name}_bias', nn.with_logical_partitioning(nn.initializers.zeros_init(), axes[-bias_axes:]),
                       shape[-bias_axes:], self.param_dtype)
            if self.use_bias else jnp.zeros((), self.param_dtype))
    return jnp.asarray(kernel, self.dtype), jnp.asarray(bias, self.dtype)

  def _project(self, name: str, x: jax.Array, parts: int) -> jax.Array:
    """[B, T, K, parts, H]: for each of the K key/value heads, `parts` projections of x side by side."""
    kv_heads = self.num_kv_heads or self.num_heads
    kernel, bias = self._weights(name, (x.shape[-1], kv_heads, parts, self.head_dim),
                                 ('embed', 'heads', None, 'kv'), 3, self.kernel_init)
    y = kernels.einsum('bte,ekgh->btkgh', x, kernel, self.dtype) + bias
    return nn.with_logical_constraint(y, ('batch', 'length', 'heads', None, 'kv')).astype(self.dtype)

  def _queries(self, y: jax.Array) -> jax.Array:
    """[B, T, K, G, H] -> [B, T, N, H]: query head k * G + g is group k's g-th."""
    b, t = y.shape[:2]
    return y.reshape(b, t, self.num_heads, self.head_dim)

  def _project_qkv(self, x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """q [B, T, N, H] and k, v [B, T, K, H] from one matmul.

    The kernel [E, K, G + 2, H] holds, for each of the K key/value heads, its G = N / K
    query heads, its key and its value side by side: one large matmul instead of three
    small ones, and sharding 'heads' keeps each group's q, k and v on the same device.
    """
    groups = self.num_heads // (self.num_kv_heads or self.num_heads)
    y = self._project('qkv', x, groups + 2)
    return self._queries(y[:, :, :, :groups]), y[:, :, :, groups], y[:, :, :, groups + 1]

  @nn.compact
  def __call__(self, x: jax.Array, positions: jax.Array | None = None, memory: jax.Array | None = None) -> jax.Array:
    """`positions` [B, T] (default 0..T-1); negative marks padding that no query may see.
    `memory` [B, S, E']: what cross-attention reads (in decode mode, only on the call that fills its cache)."""
    if self.cross:
      out = self._cross_attention(x, memory)
    else:
      out = self._self_attention(x, positions)
    kernel, bias = self._weights('out', (self.num_heads, self.head_dim, x.shape[-1]), ('heads', 'kv', 'embed'), 1,
                                 self.out_init)
    out = kernels.einsum('btnh,nhe->bte', out, kernel, self.dtype) + bias
    return nn.with_logical_constraint(out, ('batch', 'length', 'embed'))

  def _cross_attention(self, x: jax.Array, memory: jax.Array | None) -> jax.Array:
    """[B, T, N, H]: every query attends to every memory token."""
    q = self._queries(self._project('query', x, self.num_heads // (self.num_kv_heads or self.num_heads)))
    if memory is None:
      if not (self.decode and self.has_variable('cache', 'memory_key')):
        raise ValueError('cross-attention needs a memory (decode mode: on the first call, which caches it)')
      k, v = self.get_variable('cache', 'memory_key'), self.get_variable('cache', 'memory_value')
    else:
      y = self._project('key_value', memory, 2)
      k, v = y[:, :, :, 0], y[:, :, :, 1]
      if self.decode:
        self.put_variable('cache', 'memory_key', k)
        self.put_variable('cache', 'memory_value', v)
    return kernels.attention(q, k, v, None, False)

  def _self_attention(self, x: jax.Array, positions: jax.Array | None) -> jax.Array:
    """[B, T, N, H]: causal or bidirectional, through the KV cache in decode mode."""
    b, t, _ = x.shape
    q, k, v = self._project_qkv(x)
    default_positions = positions is None
    if default_positions:
      positions = jnp.broadcast_to(jnp.arange(t), (b, t))
    if self.use_rotary:
      q, k = rotary(q, positions), rotary(k, positions)
    key_positions = positions
    if self.decode:
      k, v, key_positions = self._cached(k, v, positions)
    # Plain causal training needs no mask array: the kernels build it themselves.
    mask = None if default_positions and not self.decode else visibility(positions, key_positions, self.causal)
    return kernels.attention(q, k, v, mask, self.causal)

  def _cached(self, k: jax.Array, v: jax.Array, positions: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Writes this call's keys/values at the cache's fill index; returns the whole cache."""
    is_initialized = self.has_variable('cache', 'key')
    cached_k = self.variable('cache', 'key', jnp.zeros, k.shape, k.dtype)
    cached_v = self.variable('cache', 'value', jnp.zeros, v.shape, v.dtype)
    cached_pos = self.variable('cache', 'positions', lambda s: jnp.full(s, -1, jnp.int32), positions.shape)
    index = self.variable('cache', 'index', lambda: jnp.zeros((), jnp.int32))
    if not is_initialized:
      return k, v, positions  # init: the call only sizes the cache
    start = index.value
    cached_k.value = jax.lax.dynamic_update_slice(cached_k.value, k, (0, start, 0, 0))
    cached_v.value = jax.lax.dynamic_update_slice(cached_v.value, v, (0, start, 0, 0))
    cached_pos.value = jax.lax.dynamic_update_slice(cached_pos.value, positions.astype(jnp.int32), (0, start))
    index.value = start + k.shape[1]
    return cached_k.value, cached_v.value, cached_pos.value
