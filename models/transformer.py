"""Pre-norm Transformer blocks, shared by the language model, the ViT and the captioner.

  block(x) = x + drop(attention(norm(x))) ; [x + drop(cross_attention(norm(x), memory))] ; x + drop(mlp(norm(x)))

The cross-attention sublayer, to an encoder's memory, exists only in blocks built with
`cross_attention=True` (the captioner's decoder); every other model's blocks, parameters and
outputs are those of the plain block.

`TransformerStack` holds the hyperparameters both families share; `TransformerLM`
and `models.vit.ViT` subclass it and add their own embedding and head, so the
blocks are one piece of code. Weights start like GPT-2: normal(0.02), with the
projections back into the residual stream scaled by 1/sqrt(2 * num_layers).

`moe` (a mapping, see MOE_DEFAULTS) makes every `every`-th block's MLP a sparse
Mixture-of-Experts layer (models/moe.py); the other blocks keep the dense MLP.
"""

import math
from collections.abc import Mapping
from typing import Any, ClassVar

import jax
import jax.numpy as jnp
from flax import linen as nn
from flax.core import FrozenDict
from flax.typing import Dtype

import kernels
from models import attention, layers, moe as moe_lib

MLPS = ('gelu', 'swiglu')
POSITIONS = ('learned', 'rotary')
INIT_STD = 0.02
# The keys of TransformerStack.moe and their defaults. num_experts and top_k have none.
MOE_DEFAULTS = {
    'every': 1,  # block i is MoE when (i + 1) % every == 0: 1 = all, 2 = blocks 1, 3, ...
    'mlp_dim': None,  # each expert's hidden width; None: the stack's mlp_dim
    'capacity_factor': 1.25,
    'dispatch': 'capacity',  # or 'dropless' (models/moe.py)
    'router': 'softmax_topk',  # or 'topk_softmax'
    'router_noise': 0.0,
    'load_balance_weight': 1e-2,
    'z_loss_weight': 1e-3,
}


class MlpBlock(nn.Module):
  """embed -> mlp_dim -> embed, with GELU or a SwiGLU gate."""

  mlp_dim: int
  kind: str
  use_bias: bool
  out_init: nn.initializers.Initializer
  dtype: Dtype
  param_dtype: Dtype

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    dense = dict(dtype=self.dtype, param_dtype=self.param_dtype, use_bias=self.use_bias,
                 kernel_init=nn.initializers.normal(INIT_STD))
    # Tokens as rows of one matrix: on [B, T, E] XLA:CPU fuses the GELU derivative into a
    # batched-dims matmul, and runs this block's backward pass several times slower.
    shape = x.shape
    x = x.reshape(-1, shape[-1])
    h = layers.dense(self.mlp_dim, ('embed', 'mlp'), name='up', **dense)(x)
    if self.kind == 'swiglu':
      h = nn.silu(layers.dense(self.mlp_dim, ('embed', 'mlp'), name='gate', **dense)(x)) * h
    else:
      h = layers.exact_gelu(h)  # as nanoGPT and torch.nn.GELU
    h = nn.with_logical_constraint(h, ('batch', 'mlp'))
    out = layers.dense(shape[-1], ('mlp', 'embed'), name='down', **{**dense, 'kernel_init': self.out_init})(h)
    return out.reshape(shape)


class TransformerBlock(nn.Module):
  """One pre-norm attention [+ cross-attention] + MLP block."""

  num_heads: int
  num_kv_heads: int | None
  head_dim: int
  mlp_dim: int
  mlp: str
  norm: str
  causal: bool
  use_rotary: bool
  use_bias: bool
  dropout: float
  num_layers: int  # of the whole stack: scales the residual projections' init
  decode: bool
  dtype: Dtype
  param_dtype: Dtype
  cross_attention: bool = False
  moe: Mapping[str, Any] | None = None  # this block's MoeMlp fields; None: the dense MlpBlock

  @nn.compact
  def __call__(self, x: jax.Array, positions: jax.Array | None, *, train: bool,
               memory: jax.Array | None = None) -> jax.Array:
    """`memory` [B, S, E']: what the cross-attention reads (None in decode steps after the first)."""
    out_init = nn.initializers.normal(INIT_STD / math.sqrt(2 * self.num_layers))
    precision = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    heads = dict(num_heads=self.num_heads, num_kv_heads=self.num_kv_heads, head_dim=self.head_dim,
                 use_bias=self.use_bias, decode=self.decode, out_init=out_init, **precision)
    h = layers.norm(self.norm, use_bias=self.use_bias, name='attention_norm', **precision)(x)
    h = attention.MultiHeadAttention(causal=self.causal, use_rotary=self.use_rotary, name='attention',
                                     **heads)(h, positions)
    x = x + nn.Dropout(self.dropout, deterministic=not train)(h)
    if self.cross_attention:
      h = layers.norm(self.norm, use_bias=self.use_bias, name='cross_attention_norm', **precision)(x)
      h = attention.MultiHeadAttention(cross=True, causal=False, name='cross_attention', **heads)(h, memory=memory)
      x = x + nn.Dropout(self.dropout, deterministic=not train)(h)
    h = layers.norm(self.norm, use_bias=self.use_bias, name='mlp_norm', **precision)(x)
    if self.moe:
      h = moe_lib.MoeMlp(kind=self.mlp, use_bias=self.use_bias, out_init=out_init, name='mlp', **self.moe,
                         **precision)(h, train=train)
    else:
      h = MlpBlock(self.mlp_dim, self.mlp, self.use_bias, out_init, name='mlp', **precision)(h)
    x = x + nn.Dropout(self.dropout, deterministic=not train)(h)
    return nn.with_logical_constraint(x, ('batch', 'length', 'embed'))


class TransformerStack(nn.Module):
  """Shared fields of the Transformer families, and the blocks + final norm they run."""

  width: int = 128
  num_layers: int = 4
  num_heads: int = 4
  num_kv_heads: int | None = None  # None: as many as num_heads; fewer: grouped-query attention
  mlp_dim: int | None = None  # None: 4 * width
  mlp: str = 'gelu'
  norm: str = 'layernorm'
  use_bias: bool = False
  dropout: float = 0.0
  moe: Mapping[str, Any] | None = None  # num_experts, top_k and MOE_DEFAULTS' keys; None: dense
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  def __post_init__(self) -> None:
    layers.check_choice('mlp', self.mlp, MLPS)
    layers.check_choice('norm', self.norm, layers.NORMS)
    if self.width % self.num_heads:
      raise ValueError(f'width={self.width} must be a multiple of num_heads={self.num_heads}')
    if self.moe is not None:
      unknown = sorted(set(self.moe) - {'num_experts', 'top_k', *MOE_DEFAULTS})
      missing = sorted({'num_experts', 'top_k'} - set(self.moe))
      if unknown or missing:
        raise ValueError(f'moe: unknown keys {unknown}, missing keys {missing}; valid keys: num_experts, top_k, '
                         f'{", ".join(MOE_DEFAULTS)}')
      moe_lib.MoeMlp(kind=self.mlp, use_bias=self.use_bias, out_init=nn.initializers.zeros_init(),
                     dtype=self.dtype, param_dtype=self.param_dtype, parent=None,
                     **self._moe_fields())  # checks the values before anything is traced
    super().__post_init__()

  def _moe_fields(self) -> FrozenDict:
    fields = {**MOE_DEFAULTS, **self.moe}
    every = fields.pop('every')
    if not isinstance(every, int) or every < 1:
      raise ValueError(f'moe.every must be an integer >= 1, got {every!r}')
    fields['mlp_dim'] = fields['mlp_dim'] or self.mlp_dim or 4 * self.width
    return FrozenDict(fields)

  def moe_fields(self, block: int) -> FrozenDict | None:
    """Block `block`'s MoeMlp fields, or None where that block is dense."""
    if not self.moe or (block + 1) % self.moe.get('every', MOE_DEFAULTS['every']):
      return None
    return self._moe_fields()

  def blocks(self, x: jax.Array, positions: jax.Array | None, *, train: bool, causal: bool, use_rotary: bool,
             decode: bool = False, cross_attention: bool = False, memory: jax.Array | None = None) -> jax.Array:
    """Runs the blocks and the final norm; call from a subclass's compact method. With
    `cross_attention` every block also attends to `memory` (see TransformerBlock)."""
    for i in range(self.num_layers):
      x = TransformerBlock(
          num_heads=self.num_heads, num_kv_heads=self.num_kv_heads, head_dim=self.width // self.num_heads,
          mlp_dim=self.mlp_dim or 4 * self.width, mlp=self.mlp, norm=self.norm, causal=causal,
          use_rotary=use_rotary, use_bias=self.use_bias, dropout=self.dropout, num_layers=self.num_layers,
          decode=decode, dtype=self.dtype, param_dtype=self.param_dtype, cross_attention=cross_attention,
          moe=self.moe_fields(i), name=f'block_{i}')(x, positions, train=train, memory=memory)
    return layers.norm(self.norm, use_bias=self.use_bias, dtype=self.dtype, param_dtype=self.param_dtype,
                       name='final_norm')(x)


class TransformerLM(TransformerStack):
  """Decoder-only language model: token ids [B, T] -> next-token logits [B, T, vocab_size] (float32).

  `decode=True` turns on the attention KV cache (see models/attention.py);
  `train_lib/sampling.py` uses it. A subclass that sets `cross_attention` (the captioner)
  reads an encoder's memory in every block through `next_token_logits`.
  """

  cross_attention: ClassVar[bool] = False  # a class's structure, not a field: LMs never have it

  vocab_size: int = 0  # the task passes the tokenizer's
  max_len: int = 256  # positions the learned table covers (rotary has no limit)
  positions: str = 'learned'
  tie_embeddings: bool = True
  decode: bool = False

  def __post_init__(self) -> None:
    layers.check_choice('positions', self.positions, POSITIONS)
    if self.vocab_size <= 0:
      raise ValueError(f'vocab_size must be > 0, got {self.vocab_size}')
    super().__post_init__()

  def __call__(self, tokens: jax.Array, positions: jax.Array | None = None, *, train: bool) -> jax.Array:
    """`positions` [B, T]: default 0..T-1; negative for left padding (sampling)."""
    return self.next_token_logits(tokens, positions, train=train)

  @nn.compact
  def next_token_logits(self, tokens: jax.Array, positions: jax.Array | None = None, *, train: bool,
                        memory: jax.Array | None = None) -> jax.Array:
    """[B, T, vocab_size] float32; `memory` [B, S, width]: what cross-attention reads, if the class has it."""
    precision = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    embedding = layers.embed(self.vocab_size, self.width, embedding_init=nn.initializers.normal(INIT_STD),
                             name='token_embedding', **precision)
    x = embedding(tokens)
    if self.positions == 'learned':
      table = self.param('position_embedding',
                         nn.with_logical_partitioning(nn.initializers.normal(INIT_STD), ('length', 'embed')),
                         (self.max_len, self.width), self.param_dtype)
      index = jnp.arange(tokens.shape[1]) if positions is None else jnp.maximum(positions, 0)
      x = x + jnp.asarray(table, self.dtype)[index]
    x = nn.Dropout(self.dropout, deterministic=not train)(x)
    x = nn.with_logical_constraint(x, ('batch', 'length', 'embed'))
    x = self.blocks(x, positions, train=train, causal=True, use_rotary=self.positions == 'rotary',
                    decode=self.decode, cross_attention=self.cross_attention, memory=memory)
    if self.tie_embeddings:
      # Not `embedding.attend`, which under bf16 compute rounds the logits to bf16 and runs
      # the slow bf16 -> bf16 dot; this accumulates and returns them in f32.
      logits = kernels.einsum('bte,ve->btv', x, embedding.embedding, self.dtype)
    else:
      logits = layers.dense(self.vocab_size, ('embed', 'vocab'), use_bias=False,
                            kernel_init=nn.initializers.normal(INIT_STD), name='head', **precision)(x)
    return nn.with_logical_constraint(logits, ('batch', 'length', 'vocab')).astype(jnp.float32)
