"""Building blocks shared by every model family.

Each helper returns a flax.linen layer whose parameters carry logical axis names, so
the trainer can shard any model by mapping those names onto mesh axes with rules.
Families never call `nn.Dense` / `nn.Conv` / `nn.BatchNorm` directly: they call these.

Logical axis names used for parameters:
  embed    input features of a dense layer (and a model's feature width)
  vocab    rows of an embedding table, outputs of a language-model head
  mlp      hidden features of a dense layer (an LSTM/GRU's gates and hidden state too)
  classes  classifier outputs
  conv_in, conv_out  input / output channels of a convolution (and its norms)
  heads, kv  attention heads and the features of one head
  length   sequence positions (learned position tables)
Activations are constrained with `batch` on their leading axis.
"""

import functools
import itertools
import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn
from flax.typing import Dtype, Initializer, PaddingLike

import kernels

Axes = tuple[str | None, ...]

_ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    'relu': nn.relu,
    'gelu': nn.gelu,
    'silu': nn.silu,
    'tanh': jnp.tanh,
    'sigmoid': nn.sigmoid,
    'identity': lambda x: x,
}

POOLS = ('max', 'avg')


def activation(name: str) -> Callable[[jax.Array], jax.Array]:
  """Returns the activation function called `name`."""
  check_choice('activation', name, tuple(_ACTIVATIONS))
  return _ACTIVATIONS[name]


def exact_gelu(x: jax.Array) -> jax.Array:
  """x * Phi(x), as torch.nn.GELU(): written with erf, which XLA:CPU evaluates faster than the
  erfc that `jax.nn.gelu(approximate=False)` uses (same values to f32 rounding)."""
  return 0.5 * x * (1.0 + jax.lax.erf(x * (1.0 / math.sqrt(2.0))))


def check_choice(field: str, value: object, choices: Sequence[object]) -> None:
  """Raises a one-line ValueError when `value` is not one of `choices`.

  Models call this from `__post_init__` so a bad name fails at construction,
  before anything is traced or compiled.
  """
  if value not in choices:
    raise ValueError(f'{field}={value!r} is not one of {list(choices)}')


def ntuple(value: int | Sequence[int], n: int, field: str) -> tuple[int, ...]:
  """Broadcasts an int to an n-tuple; checks a sequence already has length n."""
  if isinstance(value, int):
    return (value,) * n
  value = tuple(value)
  if len(value) != n:
    raise ValueError(f'{field} has {len(value)} entries, expected 1 or {n}')
  return value


def dense(
    features: int,
    axes: tuple[str, str],
    *,
    dtype: Dtype,
    param_dtype: Dtype,
    use_bias: bool = True,
    kernel_init: Initializer = nn.initializers.lecun_normal(),
    name: str | None = None,
) -> nn.Dense:
  """Dense layer with kernel named `axes` = (in, out) and bias named (out,)."""
  return nn.Dense(
      features,
      use_bias=use_bias,
      dtype=dtype,
      param_dtype=param_dtype,
      kernel_init=nn.with_logical_partitioning(kernel_init, axes),
      bias_init=nn.with_logical_partitioning(nn.initializers.zeros_init(), axes[-1:]),
      dot_general=kernels.dot_general(dtype),
      name=name,
  )


def embed(
    num_embeddings: int,
    features: int,
    *,
    dtype: Dtype,
    param_dtype: Dtype,
    embedding_init: Initializer = nn.linear.default_embed_init,
    name: str | None = None,
) -> nn.Embed:
  """Embedding table [num_embeddings, features] named ('vocab', 'embed')."""
  return nn.Embed(
      num_embeddings,
      features,
      dtype=dtype,
      param_dtype=param_dtype,
      embedding_init=nn.with_logical_partitioning(embedding_init, ('vocab', 'embed')),
      name=name,
  )


NORMS = ('layernorm', 'rmsnorm')


def norm(kind: str, *, dtype: Dtype, param_dtype: Dtype, use_bias: bool = True, name: str | None = None) -> nn.Module:
  """LayerNorm (optionally without bias) or RMSNorm over the last axis, scale named ('embed',).

  Statistics are computed in float32 whatever `dtype` is.
  """
  check_choice('norm', kind, NORMS)
  scale_init = nn.with_logical_partitioning(nn.initializers.ones_init(), ('embed',))
  if kind == 'rmsnorm':
    return nn.RMSNorm(epsilon=1e-6, dtype=dtype, param_dtype=param_dtype, scale_init=scale_init, name=name)
  return nn.LayerNorm(epsilon=1e-5, dtype=dtype, param_dtype=param_dtype, use_bias=use_bias, scale_init=scale_init,
                      bias_init=nn.with_logical_partitioning(nn.initializers.zeros_init(), ('embed',)), name=name)


def conv(
    features: int,
    kernel_size: Sequence[int],
    *,
    dtype: Dtype,
    param_dtype: Dtype,
    strides: int | Sequence[int] = 1,
    padding: PaddingLike = 'SAME',
    use_bias: bool = True,
    kernel_init: Initializer = nn.initializers.lecun_normal(),
    name: str | None = None,
) -> nn.Conv:
  """N-d convolution (N = len(kernel_size)); spatial kernel axes are unnamed."""
  spatial: Axes = (None,) * len(kernel_size)
  return nn.Conv(
      features,
      kernel_size=tuple(kernel_size),
      strides=strides,
      padding=padding,
      use_bias=use_bias,
      dtype=dtype,
      param_dtype=param_dtype,
      kernel_init=nn.with_logical_partitioning(kernel_init, spatial + ('conv_in', 'conv_out')),
      bias_init=nn.with_logical_partitioning(nn.initializers.zeros_init(), ('conv_out',)),
      conv_general_dilated=kernels.conv_general_dilated(),
      name=name,
  )


def batch_norm(
    train: bool,
    *,
    dtype: Dtype,
    param_dtype: Dtype,
    axis: str = 'conv_out',
    zero_scale: bool = False,
    name: str | None = None,
) -> nn.BatchNorm:
  """BatchNorm with PyTorch's defaults (momentum 0.9, eps 1e-5).

  Statistics are reduced and stored in float32 whatever `dtype` is (flax's
  `force_float32_reductions`); the output dtype is `kernels.batch_norm_dtype(dtype)`.
  `zero_scale` starts the layer at zero output, used on the last norm of a residual branch
  so each block begins as the identity.
  """
  scale_init = nn.initializers.zeros_init() if zero_scale else nn.initializers.ones_init()
  return nn.BatchNorm(
      use_running_average=not train,
      momentum=0.9,
      epsilon=1e-5,
      dtype=kernels.batch_norm_dtype(dtype),
      param_dtype=param_dtype,
      scale_init=nn.with_logical_partitioning(scale_init, (axis,)),
      bias_init=nn.with_logical_partitioning(nn.initializers.zeros_init(), (axis,)),
      name=name,
  )


def group_norm(
    channels: int,
    *,
    dtype: Dtype,
    param_dtype: Dtype,
    groups: int = 32,
    name: str | None = None,
) -> nn.GroupNorm:
  """GroupNorm over `channels` (eps 1e-5, as torch) in gcd(groups, channels) groups, so any width
  works; statistics in float32. A norm independent of the batch, as a diffusion U-Net wants."""
  groups = math.gcd(channels, groups)
  return nn.GroupNorm(
      num_groups=groups,
      epsilon=1e-5,
      dtype=dtype,
      param_dtype=param_dtype,
      scale_init=nn.with_logical_partitioning(nn.initializers.ones_init(), ('conv_out',)),
      bias_init=nn.with_logical_partitioning(nn.initializers.zeros_init(), ('conv_out',)),
      name=name,
  )


class SpectralNorm(nn.Module):
  """`layer` with its kernel divided by its largest singular value (Miyato et al. 2018).

  The singular value comes from one power iteration a call, started from the vector `u` kept
  in the 'batch_stats' collection (updated when `update_stats`), as the paper does. The
  layer's parameters keep their own names and logical axes (flax's SpectralNorm cannot read
  logically partitioned ones).
  """

  layer: nn.Module

  @nn.compact
  def __call__(self, x: jax.Array, *, update_stats: bool) -> jax.Array:
    def normalize(variables: dict) -> dict:
      params = dict(variables['params'])
      kernel = nn.meta.unbox(params['kernel'])
      matrix = kernel.reshape(-1, kernel.shape[-1]).astype(jnp.float32)
      u = self.variable('batch_stats', 'u',
                        lambda: _unit(jax.random.normal(self.make_rng('params'), matrix.shape[-1:])))
      v = jax.lax.stop_gradient(_unit(matrix @ u.value))
      new_u = jax.lax.stop_gradient(_unit(matrix.T @ v))
      sigma = v @ matrix @ new_u
      if update_stats and not self.is_initializing():
        u.value = new_u
      params['kernel'] = (kernel / sigma).astype(kernel.dtype)
      return {**variables, 'params': params}

    return nn.map_variables(lambda layer: layer(x), 'params', trans_in_fn=normalize,
                            init=self.is_initializing())(self.layer)


def _unit(x: jax.Array) -> jax.Array:
  return x * jax.lax.rsqrt(jnp.maximum(jnp.sum(x * x), 1e-12))


def pool(
    x: jax.Array,
    kind: str,
    window: Sequence[int],
    strides: Sequence[int],
    padding: str | Sequence[tuple[int, int]] = 'VALID',
) -> jax.Array:
  """Max or average pooling over the spatial axes of a [B, *spatial, C] array.

  Written with `lax.reduce_window` rather than `nn.max_pool` / `nn.avg_pool` because
  jax2onnx patches `nn.avg_pool` in a way that breaks linen. Average pooling divides
  by the full window size (padding counts as zeros, like PyTorch's default).
  """
  check_choice('pool', kind, POOLS)
  if tuple(window) == tuple(strides) and padding == 'VALID' and _divides(window, x.shape[1:-1]):
    return _tiled_pool(x, kind, tuple(window))
  dims = (1, *window, 1)
  steps = (1, *strides, 1)
  if not isinstance(padding, str):
    padding = ((0, 0), *padding, (0, 0))
  if kind == 'max':
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, dims, steps, padding)
  total = jax.lax.reduce_window(x, 0.0, jax.lax.add, dims, steps, padding)
  return total / math.prod(window)


def _divides(window: Sequence[int], spatial: Sequence[int]) -> bool:
  return all(size % w == 0 for w, size in zip(window, spatial))


def _tiled_pool(x: jax.Array, kind: str, window: tuple[int, ...]) -> jax.Array:
  """Non-overlapping windows as a reshape, then a mean, or an elementwise maximum over the
  window's positions. XLA:CPU differentiates reduce_window max with a select-and-scatter several
  times slower than a reshaped max, and a reshaped max as reductions it cannot fuse; the chain
  of maximums and its gradient are one loop fusion each. Tied maxima share the gradient (each
  jnp.maximum splits a tie in half) instead of the first taking it."""
  tiles = [d for size, w in zip(x.shape[1:-1], window) for d in (size // w, w)]
  x = x.reshape(x.shape[0], *tiles, x.shape[-1])
  axes = tuple(range(2, 2 * len(window) + 1, 2))
  if kind == 'avg':
    return x.mean(axes)
  positions = itertools.product(*(range(w) for w in window))
  slices = [x[(slice(None),) + tuple(i for offset in p for i in (slice(None), offset))] for p in positions]
  return functools.reduce(jnp.maximum, slices)


def flatten(x: jax.Array) -> jax.Array:
  """[B, ...] -> [B, prod(...)]."""
  return x.reshape(x.shape[0], -1)


def constrain(x: jax.Array, feature_axis: str | None) -> jax.Array:
  """Shards activations on batch (and the named feature axis); a no-op without a mesh."""
  return nn.with_logical_constraint(x, ('batch',) + (None,) * (x.ndim - 2) + (feature_axis,))


def classifier_head(
    x: jax.Array, num_classes: int, *, dtype: Dtype, param_dtype: Dtype
) -> jax.Array:
  """Final [B, embed] -> [B, classes] projection; logits always come back float32.

  Casting here keeps softmax / cross-entropy in float32 under bfloat16 compute.
  """
  logits = dense(num_classes, ('embed', 'classes'), dtype=dtype, param_dtype=param_dtype,
                 name='head')(x)
  return constrain(logits, 'classes').astype(jnp.float32)
