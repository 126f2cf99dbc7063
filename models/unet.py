"""The diffusion U-Net (Ho et al. 2020; the layout of diffusers' UNet2DModel).

  noisy images [B, H, W, C], timesteps [B] (, labels [B]) -> [B, H, W, C]

conv_in -> per level: `num_res_blocks` residual blocks (self-attention after each on the
`attention_levels`), then a stride-2 conv down -> middle: block, attention, block ->
per level back up: `num_res_blocks + 1` blocks, each on the concatenation with the
matching down-path activation (the skip connections), then a nearest-neighbour upsample
to that level's size and a conv -> GroupNorm, SiLU, conv_out.

Every residual block adds a projection of the time embedding (sinusoidal features of t
through a two-layer MLP) between its two convolutions. With `num_classes`, a label
embedding joins the time embedding; its extra row `num_classes` is "no label", the input
of unconditional calls for classifier-free guidance. The blocks' last convs and conv_out
start at zero, so each block starts as the identity and the network's first outputs are 0.
GroupNorm uses gcd(groups, width) groups; each must hold two channels or more (see __post_init__).
"""

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn
from flax.typing import Dtype

from models import layers
from models.attention import MultiHeadAttention

_ZERO = nn.initializers.zeros_init()


def timestep_features(t: jax.Array, dim: int, max_period: float = 10_000.0) -> jax.Array:
  """[B] timesteps -> [B, dim] sinusoids (cos then sin), as the Transformer's positions."""
  half = dim // 2
  freqs = jnp.exp(-math.log(max_period) * jnp.arange(half, dtype=jnp.float32) / half)
  angles = t.astype(jnp.float32)[:, None] * freqs
  return jnp.concatenate([jnp.cos(angles), jnp.sin(angles)], axis=-1)


class ResBlock(nn.Module):
  """GN, SiLU, conv, + time embedding, GN, SiLU, dropout, conv; a 1x1 conv on the shortcut when
  the width changes."""

  features: int
  dropout: float
  groups: int
  dtype: Dtype
  param_dtype: Dtype

  @nn.compact
  def __call__(self, x: jax.Array, embedding: jax.Array, *, train: bool) -> jax.Array:
    kw = {'dtype': self.dtype, 'param_dtype': self.param_dtype}
    h = nn.silu(layers.group_norm(x.shape[-1], groups=self.groups, name='norm_0', **kw)(x))
    h = layers.conv(self.features, (3, 3), name='conv_0', **kw)(h)
    h = h + layers.dense(self.features, ('embed', 'conv_out'), name='time', **kw)(nn.silu(embedding))[:, None, None]
    h = nn.silu(layers.group_norm(self.features, groups=self.groups, name='norm_1', **kw)(h))
    h = nn.Dropout(self.dropout, deterministic=not train)(h)
    h = layers.conv(self.features, (3, 3), kernel_init=_ZERO, name='conv_1', **kw)(h)
    if x.shape[-1] != self.features:
      x = layers.conv(self.features, (1, 1), name='shortcut', **kw)(x)
    return layers.constrain(x + h, 'conv_out')


class AttentionBlock(nn.Module):
  """GN, then self-attention among the H x W positions, added back (the output projection starts at 0)."""

  num_heads: int
  groups: int
  dtype: Dtype
  param_dtype: Dtype

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    b, h, w, c = x.shape
    if c % self.num_heads:
      raise ValueError(f'attention width {c} must be a multiple of num_heads={self.num_heads}')
    y = layers.group_norm(c, groups=self.groups, dtype=self.dtype, param_dtype=self.param_dtype, name='norm')(x)
    y = MultiHeadAttention(num_heads=self.num_heads, head_dim=c // self.num_heads, causal=False, use_bias=True,
                           kernel_init=nn.initializers.lecun_normal(), out_init=_ZERO, dtype=self.dtype,
                           param_dtype=self.param_dtype, name='attention')(y.reshape(b, h * w, c))
    return x + y.reshape(b, h, w, c).astype(x.dtype)


class UNet(nn.Module):
  """See the module docstring. `channel_mult[i]` x `channels` is level i's width; level i works at
  the input size / 2^i; `num_classes` None is unconditional."""

  channels: int = 64
  channel_mult: Sequence[int] = (1, 2, 2)
  num_res_blocks: int = 2
  attention_levels: Sequence[int] = (1,)
  num_heads: int = 4
  groups: int = 32
  dropout: float = 0.1
  num_classes: int | None = None
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  def __post_init__(self) -> None:
    bad = [level for level in self.attention_levels if not 0 <= level < len(self.channel_mult)]
    if bad:
      raise ValueError(f'attention_levels {bad} are not levels of channel_mult {tuple(self.channel_mult)} '
                       f'(0..{len(self.channel_mult) - 1})')
    # A block adds the time embedding per channel, then GroupNorm subtracts each group's mean: with
    # one channel a group (instance norm) that erases the embedding, and the network never sees t.
    widths = [m * self.channels for m in self.channel_mult]
    lone = [w for w in widths if math.gcd(self.groups, w) == w]
    if lone:
      raise ValueError(f'groups={self.groups} leaves one channel per GroupNorm group at width {lone[0]}, which '
                       f'would normalise the time embedding away; use groups <= {lone[0] // 2}')
    super().__post_init__()

  @nn.compact
  def __call__(self, x: jax.Array, t: jax.Array, labels: jax.Array | None = None, *, train: bool) -> jax.Array:
    kw = {'dtype': self.dtype, 'param_dtype': self.param_dtype}
    width = 4 * self.channels
    embedding = timestep_features(t, self.channels)
    embedding = layers.dense(width, ('embed', 'mlp'), name='time_0', **kw)(embedding)
    embedding = layers.dense(width, ('mlp', 'embed'), name='time_1', **kw)(nn.silu(embedding))
    if self.num_classes is not None:
      if labels is None:
        raise ValueError('a class-conditional UNet needs labels (num_classes for "no label")')
      embedding = embedding + layers.embed(self.num_classes + 1, width, name='label', **kw)(labels)

    block = lambda features, name: ResBlock(features, self.dropout, self.groups, name=name, **kw)
    attention = lambda name: AttentionBlock(self.num_heads, self.groups, name=name, **kw)
    last = len(self.channel_mult) - 1

    h = layers.conv(self.channels, (3, 3), name='conv_in', **kw)(x.astype(self.dtype))
    skips = [h]
    for level, mult in enumerate(self.channel_mult):
      for i in range(self.num_res_blocks):
        h = block(mult * self.channels, f'down{level}_block{i}')(h, embedding, train=train)
        if level in self.attention_levels:
          h = attention(f'down{level}_attention{i}')(h)
        skips.append(h)
      if level != last:
        h = layers.conv(h.shape[-1], (3, 3), strides=2, name=f'down{level}_downsample', **kw)(h)
        skips.append(h)

    h = block(h.shape[-1], 'middle_block0')(h, embedding, train=train)
    h = attention('middle_attention')(h)
    h = block(h.shape[-1], 'middle_block1')(h, embedding, train=train)

    for level in reversed(range(len(self.channel_mult))):
      for i in range(self.num_res_blocks + 1):
        h = jnp.concatenate([h, skips.pop()], axis=-1)
        h = block(self.channel_mult[level] * self.channels, f'up{level}_block{i}')(h, embedding, train=train)
        if level in self.attention_levels:
          h = attention(f'up{level}_attention{i}')(h)
      if level != 0:
        # To the size of the skip it meets next, which an odd size (7 -> 4) rounds up.
        size = skips[-1].shape
        h = jax.image.resize(h, (*h.shape[:1], *size[1:3], h.shape[-1]), 'nearest')
        h = layers.conv(h.shape[-1], (3, 3), name=f'up{level}_upsample', **kw)(h)

    h = nn.silu(layers.group_norm(h.shape[-1], groups=self.groups, name='norm_out', **kw)(h))
    out = layers.conv(x.shape[-1], (3, 3), kernel_init=_ZERO, name='conv_out', **kw)(h)
    return out.astype(jnp.float32)
