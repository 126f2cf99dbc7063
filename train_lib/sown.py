"""What models sow while they run: 'losses' (terms a task adds to its training loss, already
weighted, such as an MoE router's auxiliary losses) and 'metrics' (values it reports).

Any task applies its model through `apply` to get both; `strip` keeps them out of the
variables an init returns (state_init does it for every task). Where those collections
are not mutable (evaluation, decoding) a model's `sow` does nothing.
"""

from typing import Any

import jax
import jax.numpy as jnp
from flax import traverse_util
from flax import linen as nn

COLLECTIONS = ('losses', 'metrics')


def strip(variables: dict) -> dict:
  """`variables` without the sown collections."""
  return {name: value for name, value in variables.items() if name not in COLLECTIONS}


def apply(model: nn.Module, variables: dict, *args: Any, mutable: tuple[str, ...] | list[str] = (),
          **kwargs: Any) -> tuple[Any, dict, jax.Array, dict[str, jax.Array]]:
  """model.apply with the sown collections mutable: (output, the `mutable` collections updated,
  the sum of the sown losses (0 when none), the sown values as scalar metrics).

  Metric names are the sowing module's path and the value's name ('block_1/mlp/load'); a
  vector gives one metric per entry ('.../load_0', ...); 'aux_loss' is the summed loss.
  """
  out, updated = model.apply(variables, *args, mutable=[*mutable, *COLLECTIONS], **kwargs)
  updated = dict(updated)
  losses, metrics = updated.pop('losses', {}), updated.pop('metrics', {})
  total = sum((jnp.sum(jnp.asarray(v, jnp.float32)) for v in jax.tree.leaves(losses)), jnp.zeros((), jnp.float32))
  scalars = {'aux_loss': total} if jax.tree.leaves(losses) else {}
  for path, values in traverse_util.flatten_dict(dict(metrics), sep='/').items():
    value = jnp.mean(jnp.stack([jnp.asarray(v, jnp.float32) for v in values]), axis=0)  # a module called twice
    if value.ndim == 0:
      scalars[path] = value
    else:
      scalars.update({f'{path}_{i}': v for i, v in enumerate(value.reshape(-1))})
  return out, updated, total, scalars
