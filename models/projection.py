"""The projection head of contrastive pretraining (SimCLR, Chen et al. 2020): a 2-layer MLP.

The contrastive loss is computed on its output, not on the backbone's embedding; the paper
finds the embedding before the projection the better representation (its section 4.2), so
fine-tuning and linear probes drop this head and keep the backbone.
"""

import jax
import jax.numpy as jnp
from flax import linen as nn
from flax.typing import Dtype

from models import layers


class ProjectionMLP(nn.Module):
  """[B, embed] -> dense(hidden) -> [BatchNorm] -> relu -> dense(features) -> [B, features] float32.

  With `batch_norm` the hidden layer is bias-free (the norm's shift replaces it), as in the
  paper's reference implementation.
  """

  hidden: int
  features: int
  batch_norm: bool = True
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  def __post_init__(self) -> None:
    for field in ('hidden', 'features'):
      value = getattr(self, field)
      if not isinstance(value, int) or value < 1:
        raise ValueError(f'{field} must be an int >= 1, got {value!r}')
    super().__post_init__()

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    precision = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    x = layers.dense(self.hidden, ('embed', 'mlp'), use_bias=not self.batch_norm, name='hidden', **precision)(x)
    if self.batch_norm:
      x = layers.batch_norm(train, axis='mlp', name='hidden_bn', **precision)(x)
    x = layers.constrain(nn.relu(x), 'mlp')
    x = layers.dense(self.features, ('mlp', 'embed'), name='out', **precision)(x)
    return layers.constrain(x, 'embed').astype(jnp.float32)
