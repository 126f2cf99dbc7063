"""The task's per-example metrics, averaged over a whole split: every example counted once.

Writes '<name>/<metric>' for each metric of `task.eval_metrics` (weighted by
`task.eval_weights`) and '<name>/<task.eval_count_name>', the total weight, on any number
of processes: the last batch is padded and its padding masked.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp

import input_pipeline
from train_lib import mesh as mesh_lib
from train_lib.evaluators import base
from train_lib.tasks.base import Metrics, Task
from train_lib.train_state import TrainState


def make_eval_step(task: Task, *, use_ema: bool) -> Callable[[TrainState, dict], Metrics]:
  """Masked (and task-weighted) sums of the per-example metrics, plus the total weight as 'count'."""

  def eval_step(state: TrainState, batch: dict) -> Metrics:
    params = state.ema_params if use_ema else state.params
    per_example = task.eval_metrics(params, state, batch)
    mask = batch['mask']
    weights = task.eval_weights(batch)
    if weights is not None:
      mask = mask * weights
    sums = {name: jnp.sum(values * mask) for name, values in per_example.items()}
    sums['count'] = jnp.sum(mask)
    return sums

  return eval_step


class PerExampleEvaluator(base.Evaluator):

  def __init__(self, name, cfg, context):
    super().__init__(name, cfg, context)
    self._batches = mesh_lib.batch_sharding(context.mesh, context.rules)
    self._step = jax.jit(make_eval_step(context.task, use_ema=context.config.ema_decay > 0),
                         in_shardings=(context.state_shardings, self._batches),
                         out_shardings=mesh_lib.replicated(context.mesh), compiler_options=context.compiler_options)

  def run(self, state: TrainState) -> base.Result:
    totals = None
    for local in input_pipeline.make_eval_batches(self.data, split=self.data.eval_split,
                                                  global_batch_size=self.batch_size,
                                                  process_index=jax.process_index(),
                                                  process_count=jax.process_count()):
      sums = self._step(state, mesh_lib.global_batch(local, self._batches))
      totals = sums if totals is None else jax.tree.map(jnp.add, totals, sums)
    totals = mesh_lib.replicated_to_host(totals)
    count = totals.pop('count')
    return base.Result(scalars={self.context.task.eval_count_name: int(count),
                                **{key: float(value / count) for key, value in totals.items()}})
