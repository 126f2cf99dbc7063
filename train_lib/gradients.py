"""Gradient accumulation: the mean gradient over micro-batches of one step's batch."""

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from train_lib.train_state import TrainState

GradFn = Callable[[Any, TrainState, dict, jax.Array], tuple[Any, Any, dict]]


def micro_batches(batch: dict, count: int) -> dict:
  """[B, ...] -> [count, B / count, ...], micro-batch i taking examples i, i+count, ...

  Interleaving keeps each device's examples on that device: the sharded dim stays whole.
  """
  def split(x):
    return x.reshape(x.shape[0] // count, count, *x.shape[1:]).swapaxes(0, 1)
  return jax.tree.map(split, batch)


def accumulate(grad_fn: GradFn, accum_steps: int, state: TrainState, batch: dict, rng: jax.Array):
  """`grad_fn(state.params, state, ...)` over `accum_steps` micro-batches: (mean grads, final
  model_state, mean metrics). Mutable state (BatchNorm statistics) threads through them in order."""
  if accum_steps == 1:
    return grad_fn(state.params, state, batch, rng)

  def body(carry, xs):
    grad_sum, model_state = carry
    micro_batch, index = xs
    grads, model_state, metrics = grad_fn(state.params, state.replace(model_state=model_state), micro_batch,
                                          jax.random.fold_in(rng, index))
    return (jax.tree.map(jnp.add, grad_sum, grads), model_state), metrics

  zeros = jax.tree.map(jnp.zeros_like, state.params)
  (grad_sum, model_state), metrics = jax.lax.scan(
      body, (zeros, state.model_state), (micro_batches(batch, accum_steps), jnp.arange(accum_steps)))
  grads = jax.tree.map(lambda g: g / accum_steps, grad_sum)
  return grads, model_state, jax.tree.map(jnp.mean, metrics)
