"""Plain convolutional classifier, 1-D or 2-D (or 3-D) by the rank of its input."""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn
from flax.typing import Dtype

from models import layers


class CNN(nn.Module):
  """[conv -> relu -> pool?] per entry of `features` -> flatten -> [dense -> relu] -> head.

  The conv's dimensionality follows the input: [B, L, C] gives 1-D convolutions,
  [B, H, W, C] 2-D ones; a [B, L] input is read as one channel, [B, L, 1].
  `kernel_size` and `strides` are one int for every layer or one int per layer
  (square kernels); `padding` is 'SAME', 'VALID' or an int of zeros on each side.
  `pool` ('max' | 'avg' | None) halves every spatial axis after each conv.
  Dropout (rate `dropout`) follows the flatten and every hidden dense layer.

  Defaults are the small MNIST/digits CNN; the MNIST-1D paper's is registered as
  'mnist1d_cnn'.
  """

  num_classes: int
  features: Sequence[int] = (32, 64)
  kernel_size: int | Sequence[int] = 3
  strides: int | Sequence[int] = 1
  padding: str | int = 'SAME'
  pool: str | None = 'max'
  hidden: Sequence[int] = (128,)
  dropout: float = 0.0
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  def __post_init__(self) -> None:
    # Fail at construction, before any tracing, on a bad name or length.
    if self.pool is not None:
      layers.check_choice('pool', self.pool, layers.POOLS)
    layers.ntuple(self.kernel_size, len(self.features), 'kernel_size')
    layers.ntuple(self.strides, len(self.features), 'strides')
    super().__post_init__()

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    if x.ndim == 2:
      x = x[..., None]
    spatial = x.ndim - 2
    kernels = layers.ntuple(self.kernel_size, len(self.features), 'kernel_size')
    strides = layers.ntuple(self.strides, len(self.features), 'strides')
    for i, (width, k, s) in enumerate(zip(self.features, kernels, strides)):
      x = layers.conv(width, (k,) * spatial, strides=s, padding=self.padding, dtype=self.dtype,
                      param_dtype=self.param_dtype, name=f'conv_{i}')(x)
      x = nn.relu(x)
      if self.pool is not None:
        x = layers.pool(x, self.pool, window=(2,) * spatial, strides=(2,) * spatial)
      x = layers.constrain(x, 'conv_out')

    x = nn.Dropout(self.dropout, deterministic=not train)(layers.flatten(x))
    for i, width in enumerate(self.hidden):
      x = layers.dense(width, ('embed', 'mlp'), dtype=self.dtype, param_dtype=self.param_dtype,
                       name=f'hidden_{i}')(x)
      x = nn.Dropout(self.dropout, deterministic=not train)(nn.relu(x))
      x = layers.constrain(x, 'mlp')
    return layers.classifier_head(x, self.num_classes, dtype=self.dtype,
                                  param_dtype=self.param_dtype)
