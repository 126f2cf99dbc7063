"""Creating the train state directly in its sharded layout.

Shapes come from `jax.eval_shape`, shardings from the models' logical axis names
mapped through the config's rules, and the state is initialised inside `jax.jit`
with those out_shardings, so no device ever holds more than its shard.
"""

import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn
from jax.sharding import Mesh

from train_lib import sown
from train_lib.errors import ConfigError
from train_lib.optimizers import Optimizer
from train_lib.tasks.base import Task
from train_lib.train_state import TrainState


def boxed_state_fn(task: Task, tx: Optimizer, sample_batch: dict,
                   use_ema: bool) -> Callable[[jax.Array], TrainState]:
  """rng -> TrainState whose arrays are still wrapped with their logical axis names."""

  def create(rng: jax.Array) -> TrainState:
    init_rng, run_rng = jax.random.split(rng)
    variables = sown.strip(task.init_variables(init_rng, sample_batch))
    params = variables.pop('params')
    return TrainState(
        step=jnp.zeros((), jnp.int32),
        params=params,
        # optax maps over the boxes, so optimizer moments inherit the params' axes.
        opt_state=tx.init(params),
        model_state=variables,
        frozen={},  # the trainer attaches config.frozen's parts (train_lib/frozen.py)
        ema_params=jax.tree.map(jnp.copy, params) if use_ema else None,
        rng=run_rng,
    )

  return create


def _strip_boxes(tree):
  """Unwraps logical-axis boxes without sharding constraints (valid outside a trace)."""
  is_box = lambda x: isinstance(x, nn.meta.AxisMetadata)
  return jax.tree.map(lambda x: x.unbox(apply_constraint=False) if is_box(x) else x, tree, is_leaf=is_box)


def state_shardings(create_boxed: Callable, rng: jax.Array, mesh: Mesh, rules: Sequence):
  """(abstract unboxed state, its NamedShardings) without allocating anything."""
  boxed = jax.eval_shape(create_boxed, rng)
  logical_specs = nn.get_partition_spec(boxed)
  shardings = nn.logical_to_mesh_sharding(logical_specs, mesh, rules)
  abstract = _strip_boxes(boxed)
  jax.tree_util.tree_map_with_path(_check_divisible, abstract, shardings)
  return abstract, shardings


def _check_divisible(path, leaf: jax.ShapeDtypeStruct, sharding) -> None:
  """Every sharded dimension must split evenly over its mesh axes."""
  for dim, (size, axes) in enumerate(zip(leaf.shape, sharding.spec)):
    axes = (axes,) if isinstance(axes, str) else tuple(axes or ())
    parts = math.prod(sharding.mesh.shape[a] for a in axes)
    if size % parts:
      raise ConfigError(
          f'{jax.tree_util.keystr(path)} has size {size} in dimension {dim}, which the mesh axes '
          f'{axes} ({parts} devices) do not divide; change config.mesh or map that logical axis '
          'to None in config.sharding_rules')


# The initialisers run once, and XLA:CPU's backend optimisations of their threefry and
# truncated-normal code take longer to compile than they could ever save. Values move by
# rounding only (tests/integration/test_trainer.py).
_CPU_INIT_COMPILER_OPTIONS = {'xla_backend_optimization_level': 0}


def init_state(create_boxed: Callable, rng: jax.Array, shardings) -> TrainState:
  options = _CPU_INIT_COMPILER_OPTIONS if jax.default_backend() == 'cpu' else None
  return jax.jit(lambda r: _strip_boxes(create_boxed(r)), out_shardings=shardings, compiler_options=options)(rng)


def with_shardings(abstract, shardings):
  """ShapeDtypeStructs that carry their target sharding (for restore and AOT compile)."""
  return jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings)
