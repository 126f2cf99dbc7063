"""The jitted pure functions of the loop: K train steps per call, and eval sums.

Both are built from a task and never touch the host: metrics are reduced on the
device and fetched only when the loop logs.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from train_lib.tasks.base import Metrics, Task
from train_lib.train_state import TrainState

# "No bad step in this call": larger than any step number a run will reach.
ALL_FINITE = jnp.iinfo(jnp.int32).max


def _micro_batches(batch: dict, count: int) -> dict:
  """[B, ...] -> [count, B / count, ...], micro-batch i taking examples i, i+count, ...

  Interleaving keeps each device's examples on that device: the sharded dim stays whole.
  """
  def split(x):
    return x.reshape(x.shape[0] // count, count, *x.shape[1:]).swapaxes(0, 1)
  return jax.tree.map(split, batch)


def _accumulated_grads(task: Task, accum_steps: int, params, model_state, batch: dict, rng: jax.Array):
  """Mean gradient over `accum_steps` micro-batches, threading mutable state through them."""
  if accum_steps == 1:
    return task.compute_grads(params, model_state, batch, rng)

  def body(carry, xs):
    grad_sum, model_state = carry
    micro_batch, index = xs
    grads, model_state, metrics = task.compute_grads(params, model_state, micro_batch, jax.random.fold_in(rng, index))
    return (jax.tree.map(jnp.add, grad_sum, grads), model_state), metrics

  zeros = jax.tree.map(jnp.zeros_like, params)
  (grad_sum, model_state), metrics = jax.lax.scan(
      body, (zeros, model_state), (_micro_batches(batch, accum_steps), jnp.arange(accum_steps)))
  grads = jax.tree.map(lambda g: g / accum_steps, grad_sum)
  return grads, model_state, jax.tree.map(jnp.mean, metrics)


def make_train_call(task: Task, tx: optax.GradientTransformation, *, accum_steps: int,
                    ema_decay: float) -> Callable[[TrainState, dict], tuple[TrainState, Metrics]]:
  """(state, K stacked batches) -> (state after K steps, metrics averaged over them)."""

  def one_step(state: TrainState, batch: dict) -> tuple[TrainState, Metrics]:
    rng = jax.random.fold_in(state.rng, state.step)
    grads, model_state, metrics = _accumulated_grads(task, accum_steps, state.params, state.model_state, batch, rng)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    ema_params = state.ema_params
    if ema_decay:
      ema_params = optax.incremental_update(params, ema_params, 1.0 - ema_decay)
    metrics = {**metrics, 'grad_norm': optax.tree.norm(grads)}
    new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state,
                              model_state=model_state, ema_params=ema_params)
    return new_state, metrics

  def train_call(state: TrainState, batches: dict) -> tuple[TrainState, Metrics]:
    num_steps = jax.tree.leaves(batches)[0].shape[0]
    if num_steps == 1:
      # No loop for K=1: XLA:CPU runs convolutions inside a while loop ~8x slower
      # (measured on the digits CNN), so a scan only pays for matmul-bound models.
      state, metrics = one_step(state, jax.tree.map(lambda x: x[0], batches))
      metrics = jax.tree.map(lambda m: m[None], metrics)
    else:
      state, metrics = jax.lax.scan(one_step, state, batches)
    step_numbers = state.step - num_steps + 1 + jnp.arange(num_steps)
    finite = jnp.isfinite(metrics['loss'])
    summary = jax.tree.map(jnp.mean, metrics)
    summary['first_nonfinite_step'] = jnp.where(finite, ALL_FINITE, step_numbers).min()
    return state, summary

  return train_call


def make_eval_step(task: Task, *, use_ema: bool) -> Callable[[TrainState, dict], Metrics]:
  """Masked sums of the task's per-example metrics, plus the count of real examples."""

  def eval_step(state: TrainState, batch: dict) -> Metrics:
    params = state.ema_params if use_ema else state.params
    per_example = task.eval_metrics(params, state.model_state, batch)
    mask = batch['mask']
    sums = {name: jnp.sum(values * mask) for name, values in per_example.items()}
    sums['count'] = jnp.sum(mask)
    return sums

  return eval_step
