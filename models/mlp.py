"""Multi-layer perceptron over flattened inputs."""

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn
from flax.typing import Dtype

from models import layers


class MLP(nn.Module):
  """Flatten -> [dense -> activation -> dropout] per hidden size -> classifier head.

  `residual` adds a skip connection around every hidden layer whose input and output
  widths match (the MNIST-1D paper's MLP is hidden=(100, 100), relu, residual=True).
  """

  num_classes: int
  hidden: Sequence[int] = (256, 256)
  activation: str = 'relu'
  dropout: float = 0.0
  residual: bool = False
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  def __post_init__(self) -> None:
    layers.activation(self.activation)  # Fail at construction on a bad name.
    super().__post_init__()

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    act = layers.activation(self.activation)
    x = layers.constrain(layers.flatten(x), 'embed')
    for i, width in enumerate(self.hidden):
      h = layers.dense(width, ('embed', 'mlp'), dtype=self.dtype, param_dtype=self.param_dtype,
                       name=f'hidden_{i}')(x)
      h = act(h)
      x = x + h if self.residual and x.shape[-1] == width else h
      x = nn.Dropout(self.dropout, deterministic=not train)(x)
      x = layers.constrain(x, 'mlp')
    return layers.classifier_head(x, self.num_classes, dtype=self.dtype,
                                  param_dtype=self.param_dtype)
