"""Top-k routing of tokens to experts, and the router's auxiliary losses, all in float32.

  softmax_topk (Switch, GShard): probs = softmax(logits); weights = the top-k probs (not renormalised)
  topk_softmax (Mixtral):        weights = softmax of the top-k logits (they sum to 1; with k=1
                                 every weight is 1 and only the auxiliary loss trains the router)

Auxiliary losses, as Switch Transformer (Fedus et al. 2021, eq. 4) and ST-MoE (Zoph et al. 2022):
  load balance = num_experts * sum_e fraction_e * mean_prob_e, where fraction_e is the share of
                 the k * tokens assignments that went to expert e and mean_prob_e the mean router
                 probability of e; 1 for a uniform router, larger the more the two concentrate
  z-loss       = mean over tokens of logsumexp(logits)^2
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp

ORDERS = ('softmax_topk', 'topk_softmax')


class Routing(NamedTuple):
  experts: jax.Array  # [..., k] int32: each token's chosen experts, best first
  weights: jax.Array  # [..., k] float32: what each chosen expert's output is scaled by
  probs: jax.Array  # [..., num_experts] float32: softmax over every expert (the load-balance loss reads it)


def route(logits: jax.Array, top_k: int, order: str) -> Routing:
  """Routes tokens with router `logits` [..., num_experts] to `top_k` experts each."""
  logits = logits.astype(jnp.float32)
  probs = jax.nn.softmax(logits, axis=-1)
  if order == 'softmax_topk':
    weights, experts = jax.lax.top_k(probs, top_k)
  elif order == 'topk_softmax':
    top_logits, experts = jax.lax.top_k(logits, top_k)
    weights = jax.nn.softmax(top_logits, axis=-1)
  else:
    raise ValueError(f'router order={order!r} is not one of {list(ORDERS)}')
  return Routing(experts.astype(jnp.int32), weights, probs)


def load_fractions(experts: jax.Array, num_experts: int) -> jax.Array:
  """[num_experts]: the share of all token->expert assignments in `experts` [..., k] that each expert got."""
  counts = jnp.bincount(experts.reshape(-1), length=num_experts)
  return counts.astype(jnp.float32) / experts.size


def load_balance_loss(routing: Routing) -> jax.Array:
  """Switch's auxiliary loss: num_experts * sum(fraction routed * mean probability); 1 when uniform."""
  num_experts = routing.probs.shape[-1]
  mean_probs = routing.probs.reshape(-1, num_experts).mean(0)
  return num_experts * jnp.sum(load_fractions(routing.experts, num_experts) * mean_probs)


def z_loss(logits: jax.Array) -> jax.Array:
  """ST-MoE's router z-loss: mean(logsumexp(logits)^2), which keeps the logits small."""
  return jnp.mean(jax.nn.logsumexp(logits.astype(jnp.float32), axis=-1) ** 2)
