"""A Transformer text encoder, the text tower of contrastive models (CLIP, SigLIP).

  token ids -> token + learned position embeddings -> TransformerStack.blocks (bidirectional,
  padding invisible) -> mean over the real tokens -> head

Id 0 is padding, wherever it stands: padded tokens are keys no query may see and are left out
of the mean, so padding changes nothing (a row of padding alone reads its first token). The head is a linear map, CLIP's projection into the
shared embedding space when `num_classes` is its size; `num_classes=None` returns the pooled
features [B, width].
"""

import jax
import jax.numpy as jnp
from flax import linen as nn

from models import layers
from models.transformer import INIT_STD, TransformerStack

PAD_ID = 0


class TextEncoder(TransformerStack):
  """Token ids [B, L] -> [B, num_classes] float32 (or [B, width] with num_classes=None)."""

  vocab_size: int = 0
  max_len: int = 64
  num_classes: int | None = 0

  def __post_init__(self) -> None:
    if self.vocab_size <= 0:
      raise ValueError(f'vocab_size must be > 0, got {self.vocab_size}')
    if self.num_classes is not None and self.num_classes <= 0:
      raise ValueError(f'num_classes must be > 0 (or None: the pooled features, no head), got {self.num_classes}')
    super().__post_init__()

  @nn.compact
  def __call__(self, tokens: jax.Array, *, train: bool) -> jax.Array:
    if tokens.shape[1] > self.max_len:
      raise ValueError(f'{tokens.shape[1]} tokens exceed max_len={self.max_len}')
    precision = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    x = layers.embed(self.vocab_size, self.width, embedding_init=nn.initializers.normal(INIT_STD),
                     name='token_embedding', **precision)(tokens)
    table = self.param('position_embedding',
                       nn.with_logical_partitioning(nn.initializers.normal(INIT_STD), ('length', 'embed')),
                       (self.max_len, self.width), self.param_dtype)
    x = x + jnp.asarray(table, self.dtype)[:tokens.shape[1]]
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    x = nn.with_logical_constraint(x, ('batch', 'length', 'embed'))
    real = jnp.asarray(tokens) != PAD_ID
    # A row of padding alone (an eval batch's filler) reads its first token, not an empty softmax.
    real = real.at[:, 0].set(real[:, 0] | ~real.any(axis=1))
    positions = jnp.where(real, jnp.arange(tokens.shape[1]), -1)
    x = self.blocks(x, positions, train=train, causal=False, use_rotary=False)
    weights = real.astype(x.dtype)[..., None]
    x = jnp.sum(x * weights, axis=1) / jnp.maximum(jnp.sum(weights, axis=1), 1)
    if self.num_classes is None:
      return x.astype(jnp.float32)
    return layers.classifier_head(layers.constrain(x, 'embed'), self.num_classes, **precision)
