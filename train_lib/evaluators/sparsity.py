"""How sparse the trained weights are: the fraction of exact zeros in each kernel that
config.optimizer.pruning prunes (train_lib/pruning.py).

  config.evals.sparsity = {'type': 'sparsity'}

Writes '<name>/<kernel path>' for each such kernel, '<name>/total' over all of them, and
'<name>/nonzero_params', the nonzero parameters of the whole model (what a sparse format
stores). With pruning off it measures the kernels the `params` regex names, a dense run's
baseline. It reads no data: 'split', 'pp' and 'batch_size' are unused, and a run is one small
jitted reduction.

It reads `state.params`, also in a run that keeps an EMA (which the other evaluators read):
the optimizer zeroes pruned weights in the params exactly, while the EMA of a weight pruned at
step t only decays toward zero, as ema_decay**(T - t) of its value then, so the EMA weights are
not sparse. A pruned model to deploy is the params of a run without an EMA.
"""

import jax
import jax.numpy as jnp

from train_lib import mesh as mesh_lib
from train_lib import pruning
from train_lib.evaluators import base


class SparsityEvaluator(base.Evaluator):

  def __init__(self, name, cfg, context):
    super().__init__(name, cfg, context)
    self._optimizer = context.config.optimizer

    def count(params):
      zeros = {path: jnp.sum(kernel == 0) for path, kernel in pruning.kernels(self._optimizer, params).items()}
      return zeros, sum(jnp.count_nonzero(p) for p in jax.tree.leaves(params))

    self._count = jax.jit(count, out_shardings=mesh_lib.replicated(context.mesh))

  def run(self, state) -> base.Result:
    sizes = {path: kernel.size for path, kernel in pruning.kernels(self._optimizer, state.params).items()}
    zeros, nonzero = mesh_lib.replicated_to_host(self._count(state.params))
    scalars = {path: float(zeros[path] / size) for path, size in sizes.items()}
    scalars['total'] = float(sum(zeros.values()) / max(sum(sizes.values()), 1))
    scalars['nonzero_params'] = int(nonzero)
    return base.Result(scalars=scalars)
