"""Run in a subprocess with forced host devices: a task's train loss, gradient norm and train
metrics, and its eval metrics summed over the real rows, on one real batch of an experiment's
tiny config, the batch sharded over a data-parallel mesh of the first N devices, for each N
asked for; prints them and how many devices held the batch, as JSON keyed by N.

  XLA_FLAGS=--xla_force_host_platform_device_count=8 python tests/contrastive_probe.py fashion_mnist_simclr 1 8
"""

import json
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import linen as nn

import input_pipeline
from train_lib import mesh as mesh_lib
from train_lib import state_init, tasks, trainer


def _probe(config, local: dict, devices: list) -> dict:
  """The metrics of `local` on a data-parallel mesh of `devices`."""
  mesh, rules = mesh_lib.make_mesh(config.mesh, devices), trainer.logical_rules(config)
  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    task = tasks.get(config, input_pipeline.dataset_info(config.data))
    batch = mesh_lib.global_batch(local, mesh_lib.batch_sharding(mesh, rules))
    create = state_init.boxed_state_fn(task, task.make_optimizer(config.total_steps), local, use_ema=False)
    rng = jax.random.PRNGKey(config.seed)
    _, shardings = state_init.state_shardings(create, rng, mesh, rules)
    state = state_init.init_state(create, rng, shardings)
    grads, _, metrics = jax.jit(task.compute_grads)(state.params, state, batch, jax.random.key(1))
    per_example = jax.jit(task.eval_metrics)(state.params, state, batch)
    eval_sums = {k: jnp.sum(v * batch['mask']) for k, v in per_example.items()}
  return {
      'devices': len(mesh.devices.flat),
      'batch_devices': len(batch[sorted(local)[0]].sharding.device_set),
      'grad_norm': float(optax.tree.norm(grads)),
      **{f'train_{k}': float(v) for k, v in metrics.items()},
      **{f'eval_{k}': float(v) for k, v in eval_sums.items()},
  }


def main(experiment: str, *device_counts: str) -> None:
  module = __import__(f'experiments.{experiment}', fromlist=['get_config'])
  # float32: bf16 roundings depend on how the work is split, and the test compares to float tolerance.
  config = module.get_config('tiny=True')
  config.compute_dtype = 'float32'
  loader = input_pipeline.make_train_loader(config.data, global_batch_size=config.batch_size, seed=config.seed,
                                            process_index=0, process_count=1)
  local = next(iter(loader))
  # The last 5 examples stand for eval padding: out of the negatives, and out of the sums.
  local['mask'] = (np.arange(config.batch_size) < config.batch_size - 5).astype(np.float32)
  counts = [int(n) for n in device_counts] or [jax.device_count()]
  print(json.dumps({n: _probe(config, local, jax.devices()[:n]) for n in counts}))


if __name__ == '__main__':
  main(*sys.argv[1:])
