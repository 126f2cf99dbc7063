"""The decoder of a masked autoencoder (He et al. 2022): encoded visible patches -> every patch's pixels.

  encoded [B, P + K, E] (P leading tokens such as a class token, then the K visible patches)
    -> dense to width -> visible tokens at their places, a learned mask token at the others
    -> + learned positions -> [leading tokens] -> TransformerStack.blocks (bidirectional)
    -> drop the leading tokens -> dense to the pixels of each patch [B, N, patch_dim] (float32)

Its own narrow, shallow Transformer ("lightweight", as the paper's): it runs on all N
patches while the encoder sees only the visible K, and only the encoder is kept afterwards.
Blocks, init and logical axes are the language model's and the ViT's (models/transformer.py).
"""

import jax
import jax.numpy as jnp
from flax import linen as nn

from models import layers
from models.transformer import INIT_STD, TransformerStack


class MAEDecoder(TransformerStack):
  """Reconstructs every patch from the encoder's tokens; fields are the decoder's own sizes."""

  width: int = 64
  num_layers: int = 2
  num_heads: int = 4
  use_bias: bool = True  # as the ViT encoder

  @nn.compact
  def __call__(self, encoded: jax.Array, keep: jax.Array, *, num_patches: int, patch_dim: int,
               train: bool) -> jax.Array:
    """`keep` [B, K]: the patch indices the encoder saw, in the order of its last K tokens."""
    precision = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    # The encoder's width in, the decoder's out: named like an MLP's hidden layer.
    x = layers.dense(self.width, ('embed', 'mlp'), name='embedding', **precision)(encoded)
    num_leading = x.shape[1] - keep.shape[1]
    leading, visible = x[:, :num_leading], x[:, num_leading:]
    mask_token = self.param('mask_token', nn.with_logical_partitioning(nn.initializers.normal(INIT_STD), ('embed',)),
                            (self.width,), self.param_dtype)
    grid = jnp.broadcast_to(jnp.asarray(mask_token, self.dtype), (x.shape[0], num_patches, self.width))
    grid = grid.at[jnp.arange(x.shape[0])[:, None], keep].set(visible)
    table = self.param('position_embedding',
                       nn.with_logical_partitioning(nn.initializers.normal(INIT_STD), ('length', 'embed')),
                       (num_patches, self.width), self.param_dtype)
    x = jnp.concatenate([leading, grid + jnp.asarray(table, self.dtype)], axis=1)
    x = nn.with_logical_constraint(x, ('batch', 'length', 'embed'))
    x = self.blocks(x, None, train=train, causal=False, use_rotary=False)[:, num_leading:]
    # The inverse of the encoder's patch embedding ('conv_in', 'embed').
    pixels = layers.dense(patch_dim, ('embed', 'conv_in'), name='pixel_projection', **precision)(x)
    return nn.with_logical_constraint(pixels, ('batch', 'length', None)).astype(jnp.float32)
