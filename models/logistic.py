"""Multinomial logistic regression: the linear baseline every dataset should beat."""

import jax
import jax.numpy as jnp
from flax import linen as nn
from flax.typing import Dtype

from models import layers


class LogisticRegression(nn.Module):
  """Flattens the input and applies one dense layer to `num_classes` logits."""

  num_classes: int
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    del train  # Nothing here behaves differently in training.
    return layers.classifier_head(
        layers.flatten(x), self.num_classes, dtype=self.dtype, param_dtype=self.param_dtype)
