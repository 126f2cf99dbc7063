"""Run in a subprocess with forced host devices: trains an experiment (the default one 'digits',
the Shakespeare GPT 'gpt', or the Shakespeare MoE with capacity or dropless dispatch, 'moe' and
'moe_dropless') for 20 steps (the MoE 10) on each mesh given, one after the other, and prints
their per-step losses and how their parameters are sharded, as JSON keyed by mesh.

  XLA_FLAGS=--xla_force_host_platform_device_count=8 python tests/mesh_probe.py WORKDIR digits data=8 data=2,fsdp=2,tensor=2
"""

import json
import os
import sys

import jax

from experiments import shakespeare_gpt, shakespeare_moe
from tests.conftest import small_digits_config
from train_lib import trainer
from train_lib.metric_writer import read_metrics


def _config(experiment: str):
  if experiment == 'gpt':
    # float32: bf16 roundings depend on how the work is split, and the test compares to 1e-5.
    config = shakespeare_gpt.get_config('steps_per_call=1,compute_dtype=float32')
    config.update({'total_steps': 20, 'log_every': 1, 'eval_every': 0})
    config.checkpoint.every = 0
    return config
  if experiment in ('moe', 'moe_dropless'):
    dispatch = 'dropless' if experiment == 'moe_dropless' else 'capacity'
    # Four experts, so four devices on the expert axis hold one each; float32 as above.
    config = shakespeare_moe.get_config(f'experts=4,top_k=2,dispatch={dispatch},steps_per_call=1,'
                                        'compute_dtype=float32')
    config.update({'total_steps': 10, 'log_every': 1, 'eval_every': 0})
    config.checkpoint.every = 0
    return config
  return small_digits_config(total_steps=20, log_every=1, eval_every=0, **{'checkpoint.every': 0})


def _probe(workdir: str, mesh_arg: str, experiment: str) -> dict:
  config = _config(experiment)
  config.mesh.data = 1
  for item in mesh_arg.split(','):
    axis, size = item.split('=')
    config.mesh[axis] = int(size)
  trainer.train_and_evaluate(config, workdir)
  # The shardings the state was created with, by parameter path.
  with jax.set_mesh(trainer.make_mesh(config.mesh)):
    run = trainer.Run(config, workdir + '_probe', trainer.make_mesh(config.mesh))
  def describe(path, sharding, leaf):
    return jax.tree_util.keystr(path), {'spec': str(sharding.spec), 'shape': list(leaf.shape),
                                        'shard_shape': list(sharding.shard_shape(leaf.shape))}
  described = jax.tree_util.tree_map_with_path(describe, run.shardings.params, run.abstract_state.params)
  return {
      'losses': [r['train/loss'] for r in read_metrics(workdir)],
      'params': dict(jax.tree.leaves(described, is_leaf=lambda x: isinstance(x, tuple))),
      'devices': jax.device_count(),
  }


def main(workdir: str, experiment: str, *mesh_args: str) -> None:
  print(json.dumps({mesh_arg: _probe(os.path.join(workdir, mesh_arg.replace(',', '_').replace('=', '')), mesh_arg,
                                     experiment) for mesh_arg in mesh_args}))


if __name__ == '__main__':
  main(*sys.argv[1:])
