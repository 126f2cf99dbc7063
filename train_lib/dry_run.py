"""`--config.dry_run=True`: what a run would cost per device, without running it."""

import math

import jax

from train_lib.train_state import TrainState


def _bytes_per_device(abstract, shardings) -> int:
  leaves = zip(jax.tree.leaves(abstract), jax.tree.leaves(shardings))
  return sum(math.prod(s.shard_shape(a.shape)) * a.dtype.itemsize for a, s in leaves)


def report(abstract: TrainState, shardings: TrainState, compiled, flops_per_step: float) -> str:
  """Parameter, optimizer and activation memory per device, FLOPs, and every parameter's sharding."""
  memory = compiled.memory_analysis()
  lines = [
      'Dry run: compiled the train step; nothing was trained.',
      f'  parameters: {sum(x.size for x in jax.tree.leaves(abstract.params)):,} '
      f'({_bytes_per_device(abstract.params, shardings.params) / 2**20:.2f} MiB per device)',
      f'  optimizer state: {_bytes_per_device(abstract.opt_state, shardings.opt_state) / 2**20:.2f} MiB per device',
      f'  activations and temporaries: {getattr(memory, "temp_size_in_bytes", 0) / 2**20:.2f} MiB per device',
      f'  model FLOPs per step per device: {flops_per_step:.4g}',
      '  parameter shardings:',
  ]
  def describe(path, leaf, sharding):
    return f'    {jax.tree_util.keystr(path)} {tuple(leaf.shape)} {sharding.spec}'
  lines += jax.tree.leaves(jax.tree_util.tree_map_with_path(describe, abstract.params, shardings.params))
  return '\n'.join(lines)
