"""Sparse Mixture-of-Experts feed-forward layer: a drop-in for models/transformer.py's MlpBlock.

A float32 router (models/routing.py) sends each token to `top_k` of `num_experts` expert
MLPs (GELU or SwiGLU, weights [expert, embed, mlp] and [expert, mlp, embed]); the token's
output is the routing-weighted sum of its experts' outputs. Two dispatches compute it:

  capacity  Each sequence is a routing group. Its token->expert assignments are sorted by
            expert (stable: earlier tokens first, so whether a token is dropped depends only on
            the tokens before it, which keeps a causal LM causal) into per-expert buffers of
            capacity = ceil(capacity_factor * tokens * top_k / num_experts) slots; assignments
            past an expert's capacity are dropped (they add 0, so the residual carries the
            token). The experts run as one batched matmul over [groups, expert, capacity] and the
            moves are gathers, so a step's cost does not grow with the number of experts.
  dropless  Every assignment is computed: tokens sorted by expert feed `jax.lax.ragged_dot`
            (a grouped matmul). Exact, but on CPU XLA lowers ragged_dot to a masked dense
            product whose cost grows with the number of experts; on GPU/TPU it is grouped.

Expert parallelism: the capacity buffers [expert, group, slot, embed] are constrained to
logical axes ('expert', 'expert_groups', ...). With `expert` mapped to a mesh axis and the batch split over it as well (the
default rules), moving tokens from their batch shard to their expert's device is an
all-to-all that XLA's partitioner inserts, and back again after the experts.

Sown (for train_lib/sown.py): 'losses' holds the weighted load-balance and z-losses, which a
task adds to its loss; 'metrics' holds per-expert load fractions, the dropped fraction and the
unweighted auxiliary losses. Nothing is sown where those collections are not mutable (eval, decoding).
"""

import math

import jax
import jax.numpy as jnp
from flax import linen as nn
from flax.typing import Dtype

import kernels
from models import layers, routing

DISPATCHES = ('capacity', 'dropless')
INIT_STD = 0.02


def capacity(tokens: int, top_k: int, num_experts: int, capacity_factor: float) -> int:
  """Slots per expert for a group of `tokens` tokens."""
  return max(1, math.ceil(capacity_factor * tokens * top_k / num_experts))


def buffer_slots(experts: jax.Array, num_experts: int, slots: int) -> jax.Array:
  """[S, k] -> [S, k] int32: where each assignment of a group lands in the flattened
  [num_experts * slots] buffer, or num_experts * slots where it is dropped.

  Assignments are ranked within their expert in token order (a token's first choice before
  its second), by one stable sort: the cost grows with S * k, not with the number of experts.
  """
  flat = experts.reshape(-1)
  order = jnp.argsort(flat, stable=True)
  counts = jnp.bincount(flat, length=num_experts)
  starts = jnp.cumsum(counts) - counts
  sorted_position = jnp.arange(flat.size, dtype=jnp.int32) - starts[flat[order]]
  position = jnp.zeros_like(flat).at[order].set(sorted_position.astype(flat.dtype))
  slot = jnp.where(position < slots, flat * slots + position, num_experts * slots)
  return slot.reshape(experts.shape).astype(jnp.int32)


def dispatch(x: jax.Array, slot: jax.Array, num_experts: int, slots: int) -> jax.Array:
  """Tokens x [S, D] -> buffers [num_experts, slots, D] (empty slots hold zeros)."""
  tokens, top_k = slot.shape
  source = jnp.full((num_experts * slots + 1,), tokens, jnp.int32)
  source = source.at[slot.reshape(-1)].set(jnp.repeat(jnp.arange(tokens, dtype=jnp.int32), top_k))
  padded = jnp.concatenate([x, jnp.zeros_like(x[:1])])
  return padded[source[:-1]].reshape(num_experts, slots, x.shape[-1])


def combine(out: jax.Array, slot: jax.Array, weights: jax.Array) -> jax.Array:
  """Expert buffers out [num_experts, slots, D] -> tokens [S, D]: each token's weighted sum over its kept slots."""
  flat = out.reshape(-1, out.shape[-1])
  padded = jnp.concatenate([flat, jnp.zeros_like(flat[:1])])
  return jnp.einsum('skd,sk->sd', padded[slot], weights.astype(out.dtype))


class MoeMlp(nn.Module):
  """x [..., T, E] -> [..., T, E]: the tokens' top-k experts' MLPs, weighted by the router."""

  num_experts: int
  top_k: int
  mlp_dim: int
  kind: str  # 'gelu' or 'swiglu'
  use_bias: bool
  out_init: nn.initializers.Initializer
  dtype: Dtype
  param_dtype: Dtype
  capacity_factor: float = 1.25
  dispatch: str = 'capacity'
  router: str = 'softmax_topk'
  router_noise: float = 0.0  # std of Gaussian noise added to the router logits in training
  load_balance_weight: float = 1e-2
  z_loss_weight: float = 1e-3

  def __post_init__(self) -> None:
    layers.check_choice('dispatch', self.dispatch, DISPATCHES)
    layers.check_choice('router', self.router, routing.ORDERS)
    layers.check_choice('kind', self.kind, ('gelu', 'swiglu'))
    if not 1 <= self.top_k <= self.num_experts:
      raise ValueError(f'top_k={self.top_k} must be between 1 and num_experts={self.num_experts}')
    if self.capacity_factor <= 0:
      raise ValueError(f'capacity_factor must be > 0, got {self.capacity_factor}')
    super().__post_init__()

  def _weight(self, name, shape, axes, init=None):
    return self.param(name, nn.with_logical_partitioning(init or nn.initializers.normal(INIT_STD), axes), shape,
                      self.param_dtype)

  @nn.compact
  def __call__(self, x: jax.Array, *, train: bool = False) -> jax.Array:
    shape, width, num_experts = x.shape, x.shape[-1], self.num_experts
    groups = x.reshape(-1, shape[-2] if x.ndim > 1 else 1, width)  # [G, S, E]: one group per sequence
    groups = nn.with_logical_constraint(groups, ('batch', 'length', 'embed'))
    router = self._weight('router', (width, num_experts), ('embed', None))
    logits = jnp.einsum('gsd,de->gse', groups.astype(jnp.float32), jnp.asarray(router, jnp.float32))
    clean_logits = logits
    if train and self.router_noise > 0:
      logits = logits + self.router_noise * jax.random.normal(self.make_rng('dropout'), logits.shape)
    routed = routing.route(logits, self.top_k, self.router)
    experts = {'up': self._weight('up', (num_experts, width, self.mlp_dim), ('expert', 'embed', 'mlp')),
               'down': self._weight('down', (num_experts, self.mlp_dim, width), ('expert', 'mlp', 'embed'),
                                    self.out_init)}
    if self.kind == 'swiglu':
      experts['gate'] = self._weight('gate', (num_experts, width, self.mlp_dim), ('expert', 'embed', 'mlp'))
    if self.use_bias:
      zeros = nn.initializers.zeros_init()
      experts['up_bias'] = self._weight('up_bias', (num_experts, self.mlp_dim), ('expert', 'mlp'), zeros)
      experts['down_bias'] = self._weight('down_bias', (num_experts, width), ('expert', 'embed'), zeros)
      if self.kind == 'swiglu':
        experts['gate_bias'] = self._weight('gate_bias', (num_experts, self.mlp_dim), ('expert', 'mlp'), zeros)
    if self.dispatch == 'capacity':
      out, dropped = self._capacity(groups, routed, experts)
    else:
      out, dropped = self._dropless(groups, routed, experts), jnp.zeros((), jnp.float32)
    self._sow(clean_logits, routed, dropped)
    return out.astype(self.dtype).reshape(shape)

  def _activate(self, up: jax.Array, gate: jax.Array | None) -> jax.Array:
    if self.kind == 'swiglu':
      return nn.silu(gate) * up
    return layers.exact_gelu(up)

  def _capacity(self, groups: jax.Array, routed: routing.Routing, w: dict) -> tuple[jax.Array, jax.Array]:
    num_experts, slots = self.num_experts, capacity(groups.shape[1], self.top_k, self.num_experts,
                                                     self.capacity_factor)
    slot = jax.vmap(lambda e: buffer_slots(e, num_experts, slots))(routed.experts)  # [G, S, k]
    buffers = jax.vmap(lambda x, s: dispatch(x, s, num_experts, slots), out_axes=1)(groups, slot)  # [X, G, C, E]
    # Expert-major, so the expert axis is the matmuls' leading batch axis: XLA:CPU has no
    # bf16 x bf16 -> f32 dot with a free axis ahead of the batch axis.
    buffers = nn.with_logical_constraint(buffers, ('expert', 'expert_groups', None, None))

    def matmul(spec, a, name):
      y = kernels.einsum(spec, a, w[name], self.dtype)
      if f'{name}_bias' in w:
        y = y + jnp.asarray(w[f'{name}_bias'], y.dtype)[:, None, None, :]
      return y

    up = matmul('xgcd,xdf->xgcf', buffers, 'up')
    gate = matmul('xgcd,xdf->xgcf', buffers, 'gate') if self.kind == 'swiglu' else None
    hidden = nn.with_logical_constraint(self._activate(up, gate), ('expert', 'expert_groups', None, 'mlp'))
    out = matmul('xgcf,xfd->xgcd', hidden, 'down')
    out = nn.with_logical_constraint(out, ('expert', 'expert_groups', None, None))
    tokens = jax.vmap(combine, in_axes=(1, 0, 0))(out, slot, routed.weights)
    dropped = jnp.mean((slot == num_experts * slots).astype(jnp.float32))
    return nn.with_logical_constraint(tokens, ('batch', 'length', 'embed')), dropped

  def _dropless(self, groups: jax.Array, routed: routing.Routing, w: dict) -> jax.Array:
    width, top_k = groups.shape[-1], self.top_k
    x = groups.reshape(-1, width)
    flat = routed.experts.reshape(-1)
    order = jnp.argsort(flat, stable=True)
    sorted_experts = flat[order]
    sizes = jnp.bincount(flat, length=self.num_experts).astype(jnp.int32)
    rows = x[order // top_k].astype(self.dtype)
    accumulate = jnp.float32 if jnp.dtype(self.dtype).itemsize < 4 else None

    def matmul(a, name):
      y = jax.lax.ragged_dot(a.astype(self.dtype), jnp.asarray(w[name], self.dtype), sizes,
                             preferred_element_type=accumulate)
      if f'{name}_bias' in w:
        y = y + jnp.asarray(w[f'{name}_bias'], y.dtype)[sorted_experts]
      return y

    up = matmul(rows, 'up')
    gate = matmul(rows, 'gate') if self.kind == 'swiglu' else None
    out = matmul(self._activate(up, gate), 'down')
    inverse = jnp.zeros_like(order).at[order].set(jnp.arange(order.size, dtype=order.dtype))
    per_assignment = out[inverse].reshape(-1, top_k, width)
    tokens = jnp.einsum('skd,sk->sd', per_assignment, routed.weights.reshape(-1, top_k).astype(out.dtype))
    return tokens.reshape(groups.shape)

  def _sow(self, logits: jax.Array, routed: routing.Routing, dropped: jax.Array) -> None:
    balance, z = routing.load_balance_loss(routed), routing.z_loss(logits)
    self.sow('losses', 'load_balance', self.load_balance_weight * balance)
    self.sow('losses', 'z_loss', self.z_loss_weight * z)
    load = routing.load_fractions(routed.experts, self.num_experts)
    self.sow('metrics', 'load', load)
    self.sow('metrics', 'load_max_over_mean', self.num_experts * jnp.max(load))
    self.sow('metrics', 'dropped', dropped)
    self.sow('metrics', 'load_balance', balance)
    self.sow('metrics', 'z_loss', z)
