"""The jitted pure function of the loop: K train steps per call.

Built from a task, it never touches the host: metrics are reduced on the device and
fetched only when the loop logs.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from train_lib.optimizers import Optimizer
from train_lib.tasks.base import Metrics, Task
from train_lib.train_state import TrainState

# "No bad step in this call": larger than any step number a run will reach.
ALL_FINITE = jnp.iinfo(jnp.int32).max


def make_train_call(task: Task, tx: Optimizer, *, accum_steps: int,
                    ema_decay: float) -> Callable[[TrainState, dict], tuple[TrainState, Metrics]]:
  """(state, K stacked batches) -> (state after K steps, metrics averaged over them)."""

  def one_step(state: TrainState, batch: dict) -> tuple[TrainState, Metrics]:
    rng = jax.random.fold_in(state.rng, state.step)
    new_state, metrics = task.train_step(state, batch, rng, tx, accum_steps)
    ema_params = new_state.ema_params
    if ema_decay:
      ema_params = optax.incremental_update(new_state.params, ema_params, 1.0 - ema_decay)
    return new_state.replace(step=state.step + 1, ema_params=ema_params), metrics

  def train_call(state: TrainState, batches: dict) -> tuple[TrainState, Metrics]:
    num_steps = jax.tree.leaves(batches)[0].shape[0]
    if num_steps == 1:
      # No loop for K=1: XLA:CPU runs some convolutions inside a while loop far slower,
      # so a scan only pays where dispatch dominates.
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
