"""ResNet v1.5 (He et al. 2016; stride on the 3x3 conv) with BatchNorm.

Registered presets: resnet18/34 (basic blocks), resnet50/101/152 (bottlenecks).
With 1000 classes at 224x224 and the ImageNet stem, resnet18 has 11,689,512 params
and resnet50 25,557,032 (BatchNorm scales/biases included), as torchvision does.

num_classes=None builds no head and returns the pooled embedding: the backbone that
self-supervised pretraining trains (train_lib/tasks/simclr.py), whose parameters are the
classifier's without 'head', so a classifier can start from it.
"""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn
from flax.typing import Dtype

from models import layers

BLOCKS = ('basic', 'bottleneck')
STEMS = ('imagenet', 'cifar', 'small')


class ResidualBlock(nn.Module):
  """One residual block: 'basic' (3x3, 3x3) or 'bottleneck' (1x1, 3x3, 1x1 x4).

  A 1x1 projection (conv + BN) replaces the identity shortcut when the block changes
  the channel count or the resolution.
  """

  filters: int
  block: str
  strides: int
  zero_init_residual: bool
  dtype: Dtype
  param_dtype: Dtype

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    spatial = x.ndim - 2

    def conv(features: int, k: int, strides: int, name: str) -> nn.Conv:
      # Bias-free: the BatchNorm that follows every conv has its own shift.
      return layers.conv(features, (k,) * spatial, strides=strides, padding=k // 2, use_bias=False,
                         dtype=self.dtype, param_dtype=self.param_dtype, name=name)

    def norm(name: str, zero_scale: bool = False) -> nn.BatchNorm:
      return layers.batch_norm(train, zero_scale=zero_scale, dtype=self.dtype,
                               param_dtype=self.param_dtype, name=name)

    if self.block == 'basic':
      branch = [(self.filters, 3, self.strides), (self.filters, 3, 1)]
    else:
      branch = [(self.filters, 1, 1), (self.filters, 3, self.strides), (4 * self.filters, 1, 1)]

    y = x
    for i, (features, k, strides) in enumerate(branch):
      last = i == len(branch) - 1
      y = conv(features, k, strides, f'conv_{i}')(y)
      y = norm(f'bn_{i}', zero_scale=last and self.zero_init_residual)(y)
      if not last:
        y = nn.relu(y)

    shortcut = x
    if x.shape[-1] != y.shape[-1] or self.strides != 1:
      shortcut = conv(y.shape[-1], 1, self.strides, 'proj_conv')(x)
      shortcut = norm('proj_bn')(shortcut)
    return layers.constrain(nn.relu(y + shortcut), 'conv_out')


class ResNet(nn.Module):
  """Stem -> stages of residual blocks -> global average pool -> classifier head (none when
  num_classes is None: the pooled embedding [B, width * 2**(len(stage_sizes) - 1)], or 4x
  that with bottlenecks).

  Stage i has `stage_sizes[i]` blocks of `width * 2**i` filters; every stage but the
  first halves the resolution in its first block. `stem='imagenet'` is a 7x7/2 conv
  and a 3x3/2 max pool (for 224x224 images); `stem='cifar'` a 3x3/1 conv with no pool
  (for 32x32 and smaller); `stem='small'` the cifar conv then a 2x2/2 max pool, so
  28x28 images run their stages at 14x14 and below. Convolutions are N-d by the input's rank, like CNN's.
  """

  num_classes: int | None
  stage_sizes: Sequence[int] = (2, 2, 2, 2)
  block: str = 'basic'
  width: int = 64
  stem: str = 'imagenet'
  zero_init_residual: bool = True
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  def __post_init__(self) -> None:
    layers.check_choice('block', self.block, BLOCKS)
    layers.check_choice('stem', self.stem, STEMS)
    super().__post_init__()

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    spatial = x.ndim - 2
    k, strides = (7, 2) if self.stem == 'imagenet' else (3, 1)
    x = layers.conv(self.width, (k,) * spatial, strides=strides, padding=k // 2, use_bias=False,
                    dtype=self.dtype, param_dtype=self.param_dtype, name='stem_conv')(x)
    x = layers.batch_norm(train, dtype=self.dtype, param_dtype=self.param_dtype,
                          name='stem_bn')(x)
    if self.stem == 'imagenet':
      x = layers.pool(x, 'max', window=(3,) * spatial, strides=(2,) * spatial,
                      padding=((1, 1),) * spatial)
    elif self.stem == 'small':
      x = layers.pool(x, 'max', window=(2,) * spatial, strides=(2,) * spatial)
    # ReLU commutes with max pooling; after it, it touches a quarter of the values.
    x = nn.relu(x)
    x = layers.constrain(x, 'conv_out')

    for i, num_blocks in enumerate(self.stage_sizes):
      for j in range(num_blocks):
        x = ResidualBlock(
            filters=self.width * 2**i,
            block=self.block,
            strides=2 if i > 0 and j == 0 else 1,
            zero_init_residual=self.zero_init_residual,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
            name=f'stage{i + 1}_block{j + 1}',
        )(x, train=train)

    x = layers.constrain(jnp.mean(x, axis=tuple(range(1, 1 + spatial))), 'embed')
    if self.num_classes is None:
      return x
    return layers.classifier_head(x, self.num_classes, dtype=self.dtype,
                                  param_dtype=self.param_dtype)
