"""Recurrent networks: LSTM and GRU layers scanned over time, and the models built on them.

A layer projects the inputs of every time step in one matmul, outside the loop, and
`nn.scan`s only the recurrent matmul and the gate arithmetic: on a CPU the loop body is
then one small [B, H] x [H, G*H] product per step. Gate arithmetic and the carried state
stay float32 whatever `dtype` the matmuls use.

Equations (x_t already projected as W x_t + b; sigma the logistic function):
  LSTM  i, f, g, o = split(x_t + U h)        c' = sigma(f) c + sigma(i) tanh(g)
                                             h' = sigma(o) tanh(c')
  GRU   r, z, n = split(x_t), split(U h + b_h)   (torch.nn.GRU's form and parameter count)
        r = sigma(x_r + u_r)  z = sigma(x_z + u_z)  n = tanh(x_n + r * u_n)
        h' = (1 - z) n + z h
The GRU keeps a recurrent bias because its candidate reads r * (U_n h + b_hn); for the
LSTM that bias would only duplicate b. States start at zero.
"""

import dataclasses

import jax
import jax.numpy as jnp
from flax import linen as nn
from flax.typing import Dtype

from models import layers

CELLS = ('lstm', 'gru')
READOUTS = ('final', 'flatten')
_NUM_GATES = {'lstm': 4, 'gru': 3}

Carry = tuple[jax.Array, ...]  # (c, h) for an LSTM, (h,) for a GRU


class _Step(nn.Module):
  """One time step: (carry, projected input) -> (carry, h)."""

  cell: str
  hidden: int
  dtype: Dtype
  param_dtype: Dtype

  @nn.compact
  def __call__(self, carry: Carry, projected: jax.Array) -> tuple[Carry, jax.Array]:
    h = carry[-1]
    recurrent = layers.dense(
        _NUM_GATES[self.cell] * self.hidden, ('embed', 'mlp'), use_bias=self.cell == 'gru',
        kernel_init=nn.initializers.orthogonal(), dtype=self.dtype, param_dtype=self.param_dtype,
        name='recurrent')(h)
    x, u = projected.astype(jnp.float32), recurrent.astype(jnp.float32)
    if self.cell == 'lstm':
      i, f, g, o = jnp.split(x + u, 4, axis=-1)
      c = nn.sigmoid(f) * carry[0] + nn.sigmoid(i) * jnp.tanh(g)
      h = nn.sigmoid(o) * jnp.tanh(c)
      return (c, h), h
    x_r, x_z, x_n = jnp.split(x, 3, axis=-1)
    u_r, u_z, u_n = jnp.split(u, 3, axis=-1)
    r, z = nn.sigmoid(x_r + u_r), nn.sigmoid(x_z + u_z)
    h = (1.0 - z) * jnp.tanh(x_n + r * u_n) + z * h
    return (h,), h


class RecurrentLayer(nn.Module):
  """One LSTM/GRU layer in one direction: [B, T, F] -> hidden states [B, T, hidden].

  `reverse` reads the sequence from its last step to its first; outputs stay in input
  order, so a reverse layer's state for the whole sequence is its output at t = 0.
  """

  cell: str
  hidden: int
  reverse: bool = False
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  def __post_init__(self) -> None:
    layers.check_choice('cell', self.cell, CELLS)
    super().__post_init__()

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    # Every step's input projection in one matmul; only U h stays inside the loop.
    projected = layers.dense(_NUM_GATES[self.cell] * self.hidden, ('embed', 'mlp'), dtype=self.dtype,
                             param_dtype=self.param_dtype, name='input')(x)
    scan = nn.scan(_Step, variable_broadcast='params', split_rngs={'params': False},
                   in_axes=1, out_axes=1, reverse=self.reverse)
    state = jnp.zeros((x.shape[0], self.hidden), jnp.float32)
    carry = (state,) * (2 if self.cell == 'lstm' else 1)
    _, outputs = scan(self.cell, self.hidden, self.dtype, self.param_dtype, name='step')(carry, projected)
    return outputs


class RecurrentStack(nn.Module):
  """`num_layers` recurrent layers: [B, T, F] -> [B, T, directions * hidden].

  With `bidirectional`, each layer runs forward and backward over its input and
  concatenates the two outputs (forward first). Dropout (rate `dropout`, train only)
  acts between layers, not after the last.
  """

  cell: str = 'lstm'
  hidden: int = 64
  num_layers: int = 1
  bidirectional: bool = False
  dropout: float = 0.0
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  def __post_init__(self) -> None:
    layers.check_choice('cell', self.cell, CELLS)
    if self.num_layers < 1:
      raise ValueError(f'num_layers={self.num_layers} must be >= 1')
    super().__post_init__()

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    directions = {'forward': False, 'backward': True} if self.bidirectional else {'forward': False}
    for i in range(self.num_layers):
      if i:
        x = nn.Dropout(self.dropout, deterministic=not train)(x)
      x = jnp.concatenate([
          RecurrentLayer(self.cell, self.hidden, reverse, self.dtype, self.param_dtype,
                         name=f'layer_{i}_{direction}')(x)
          for direction, reverse in directions.items()], axis=-1)
      x = layers.constrain(x, 'mlp')
    return x


class _SequenceReader(RecurrentStack):
  """A recurrent stack (with the stack's fields) read out as one vector per sequence, then a linear head.

  Input [B, T] (T scalars) or [B, T, ...] (features flattened per step).
  `readout`: 'final' reads each direction's state after the whole sequence (the forward
  output at t = T-1, the backward one at t = 0; torch's h_n of the last layer);
  'flatten' concatenates every step's output, [B, T * directions * hidden] (the
  MNIST-1D paper's GRU). Subclasses name the head's width.
  """

  readout: str = 'final'

  def __post_init__(self) -> None:
    layers.check_choice('readout', self.readout, READOUTS)
    super().__post_init__()

  def _head_width(self) -> int:
    """The head's output width; each subclass names its own (num_classes, horizon)."""
    raise NotImplementedError(f'{type(self).__name__} must define _head_width')

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    x = x[..., None] if x.ndim == 2 else x.reshape(*x.shape[:2], -1)
    outputs = RecurrentStack(self.cell, self.hidden, self.num_layers, self.bidirectional, self.dropout,
                             self.dtype, self.param_dtype, name='rnn')(x, train=train)
    if self.readout == 'flatten':
      features = layers.flatten(outputs)
    else:
      last = outputs[:, -1, :self.hidden]
      features = jnp.concatenate([last, outputs[:, 0, self.hidden:]], -1) if self.bidirectional else last
    # Float32 outputs from a [features, width] head: a classifier's, used for any width.
    return layers.classifier_head(features, self._head_width(), dtype=self.dtype,
                                  param_dtype=self.param_dtype)


class RecurrentClassifier(_SequenceReader):
  """Sequence classifier: [B, T] or [B, T, F] -> logits [B, num_classes]."""

  num_classes: int = dataclasses.field(kw_only=True)

  def _head_width(self) -> int:
    return self.num_classes


class RecurrentForecaster(_SequenceReader):
  """Multi-step forecaster: `context` past values [B, T] (or [B, T, F]) -> [B, horizon].

  Predicts all `horizon` future values at once from the read-out state (the direct,
  multi-output strategy), so errors do not compound through fed-back predictions.
  """

  horizon: int = dataclasses.field(kw_only=True)

  def _head_width(self) -> int:
    return self.horizon


class RecurrentLM(nn.Module):
  """Character (or token) language model: ids int32 [B, T] -> logits float32 [B, T, vocab_size].

  embed -> dropout -> unidirectional RecurrentStack -> dropout -> dense head. Causal by
  construction: the output at t reads only tokens 0..t. Dropout acts on the
  non-recurrent connections only (embedding, between layers, before the head), as in
  Zaremba et al. 2014.
  """

  vocab_size: int
  embed_dim: int = 128
  hidden: int = 256
  num_layers: int = 1
  cell: str = 'lstm'
  dropout: float = 0.0
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  def __post_init__(self) -> None:
    layers.check_choice('cell', self.cell, CELLS)
    super().__post_init__()

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
    drop = nn.Dropout(self.dropout, deterministic=not train)
    h = layers.embed(self.vocab_size, self.embed_dim, dtype=self.dtype, param_dtype=self.param_dtype,
                     name='embed')(x)
    h = drop(layers.constrain(h, 'embed'))
    h = RecurrentStack(self.cell, self.hidden, self.num_layers, dropout=self.dropout, dtype=self.dtype,
                       param_dtype=self.param_dtype, name='rnn')(h, train=train)
    logits = layers.dense(self.vocab_size, ('embed', 'vocab'), dtype=self.dtype, param_dtype=self.param_dtype,
                          name='head')(drop(h))
    return layers.constrain(logits, 'vocab').astype(jnp.float32)
