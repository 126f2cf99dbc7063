"""Vision Transformer (Dosovitskiy et al. 2021) on the blocks the language model uses.

  image -> patches -> dense to width -> + learned positions -> [keep] -> [class token]
        -> TransformerStack.blocks (bidirectional) -> class token or mean -> head

Patches are embedded by a dense layer over each flattened patch: the same map as a
convolution with kernel = stride = patch, run as one matmul. Positions cover the
patches only and the class token is prepended after adding them, as in big_vision.
Images may have any number of spatial axes, like CNN's and ResNet's.

Two options serve masked-autoencoder pretraining (train_lib/tasks/mae.py): `keep`
encodes only some patches, and num_classes=None builds no head and returns the encoded
tokens. Neither adds or renames a parameter, so the encoder's parameters are the
classifier's without its head, and a classifier can start from a pretrained encoder.

Presets vit_ti16 / vit_s16 / vit_b16 have the paper's sizes (with biases); vit_ti16
at 224x224 with 1000 classes has 5,717,224 parameters (timm's 5,717,416 adds a
position row for the class token).
"""

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn

from models import layers
from models.transformer import INIT_STD, TransformerStack

POOLS = ('cls', 'mean')


def patchify(x: jax.Array, patch: Sequence[int]) -> jax.Array:
  """[B, *spatial, C] -> [B, num_patches, prod(patch) * C], patches in row-major order.

  Each patch flattens in (*patch, C) order, a convolution kernel's layout.
  """
  b, *spatial, c = x.shape
  if any(size % p for size, p in zip(spatial, patch)):
    raise ValueError(f'image size {tuple(spatial)} is not a multiple of patch_size {tuple(patch)}')
  n = len(spatial)
  split = [d for size, p in zip(spatial, patch) for d in (size // p, p)]
  x = x.reshape(b, *split, c)
  # (B, g1, p1, g2, p2, ..., C) -> (B, g1, g2, ..., p1, p2, ..., C)
  x = x.transpose(0, *range(1, 2 * n, 2), *range(2, 2 * n + 1, 2), 2 * n + 1)
  return x.reshape(b, -1, math.prod(patch) * c)


class ViT(TransformerStack):
  """Images [B, *spatial, C] -> class logits [B, num_classes] (float32), or with num_classes=None
  the tokens after the final norm [B, T, width] (T: the patches encoded, plus the class token
  first when pool='cls'), with no pooling and no head."""

  num_classes: int | None = 0
  patch_size: int | Sequence[int] = 16
  pool: str = 'cls'
  use_bias: bool = True  # the paper's ViTs have biases (TransformerStack's default is GPT-style, none)

  def __post_init__(self) -> None:
    layers.check_choice('pool', self.pool, POOLS)
    if self.num_classes is not None and self.num_classes <= 0:
      raise ValueError(f'num_classes must be > 0 (or None: the encoded tokens, no head), got {self.num_classes}')
    super().__post_init__()

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool, keep: jax.Array | None = None) -> jax.Array:
    """`keep` [B, K] int: the patches (row-major indices) each image encodes; default all. They are
    picked after the position embedding is added, so every token still knows its place."""
    precision = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    patches = patchify(x, layers.ntuple(self.patch_size, x.ndim - 2, 'patch_size'))
    # A patch's pixels are the input channels of the equivalent convolution.
    x = layers.dense(self.width, ('conv_in', 'embed'), name='patch_embedding', **precision)(patches)
    table = self.param('position_embedding',
                       nn.with_logical_partitioning(nn.initializers.normal(INIT_STD), ('length', 'embed')),
                       x.shape[1:], self.param_dtype)
    x = x + jnp.asarray(table, self.dtype)
    if keep is not None:
      x = jnp.take_along_axis(x, keep[..., None], axis=1)
    if self.pool == 'cls':
      token = self.param('cls_token', nn.with_logical_partitioning(nn.initializers.zeros_init(), ('embed',)),
                         (self.width,), self.param_dtype)
      token = jnp.broadcast_to(jnp.asarray(token, self.dtype), (x.shape[0], 1, self.width))
      x = jnp.concatenate([token, x], axis=1)
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    x = nn.with_logical_constraint(x, ('batch', 'length', 'embed'))
    x = self.blocks(x, None, train=train, causal=False, use_rotary=False)
    if self.num_classes is None:
      return x
    x = x[:, 0] if self.pool == 'cls' else x.mean(axis=1)
    return layers.classifier_head(layers.constrain(x, 'embed'), self.num_classes, **precision)
