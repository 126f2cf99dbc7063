"""The device mesh and the logical-axis rules that place arrays on it."""

from collections.abc import Sequence

import jax
import ml_collections
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from train_lib.errors import ConfigError

MESH_AXES = ('data', 'fsdp', 'tensor', 'expert')

# Logical names used by models/ -> mesh axes. None replicates. The batch is split over the
# `expert` axis too, so only MoE layers tell its devices apart: their expert buffers are
# split by expert over it and by routing group ('expert_groups') over the other batch axes,
# and moving tokens between the two layouts is an all-to-all (models/moe.py).
DEFAULT_RULES = (
    ('batch', ('data', 'fsdp', 'expert')),
    ('expert_groups', ('data', 'fsdp')),
    ('embed', 'fsdp'),
    ('mlp', 'tensor'),
    ('heads', 'tensor'),
    ('kv', None),
    ('vocab', 'tensor'),
    ('classes', None),
    ('conv_in', None),
    ('conv_out', 'tensor'),
    ('expert', 'expert'),
    ('length', None),
)


def axis_sizes(mesh_cfg: ml_collections.ConfigDict, num_devices: int) -> tuple[int, ...]:
  """Resolves the config's axis sizes; one -1 takes the devices that are left."""
  unknown = set(mesh_cfg.keys()) - set(MESH_AXES)
  if unknown:
    raise ConfigError(f'mesh: unknown axis {sorted(unknown)}; valid axes are {list(MESH_AXES)}')
  sizes = [int(mesh_cfg.get(name, 1)) for name in MESH_AXES]
  if sizes.count(-1) > 1:
    raise ConfigError(f'mesh: at most one axis may be -1, got {dict(zip(MESH_AXES, sizes))}')
  if any(s == 0 or s < -1 for s in sizes):
    raise ConfigError(f'mesh: axis sizes must be positive or -1, got {dict(zip(MESH_AXES, sizes))}')
  fixed = int(np.prod([s for s in sizes if s != -1]))
  if -1 in sizes:
    if num_devices % fixed:
      raise ConfigError(f'mesh: fixed axes use {fixed} devices, which does not divide the {num_devices} available')
    sizes[sizes.index(-1)] = num_devices // fixed
  if int(np.prod(sizes)) != num_devices:
    raise ConfigError(
        f'mesh: {dict(zip(MESH_AXES, sizes))} needs {int(np.prod(sizes))} devices but {num_devices} exist; '
        'set one axis to -1 to fill the rest')
  return tuple(sizes)


def make_mesh(mesh_cfg: ml_collections.ConfigDict, devices: Sequence[jax.Device] | None = None) -> Mesh:
  devices = list(devices if devices is not None else jax.devices())
  sizes = axis_sizes(mesh_cfg, len(devices))
  # Auto axes: linen's logical constraints assume them (Explicit asserts).
  return jax.make_mesh(sizes, MESH_AXES, axis_types=(AxisType.Auto,) * len(MESH_AXES), devices=devices)


def batch_axes(rules: Sequence) -> tuple[str, ...]:
  """Mesh axes that the 'batch' logical axis is split over."""
  target = dict(rules).get('batch')
  if target is None:
    return ()
  return (target,) if isinstance(target, str) else tuple(target)


def data_parallel_size(mesh: Mesh, rules: Sequence) -> int:
  return int(np.prod([mesh.shape[a] for a in batch_axes(rules)]))


def batch_sharding(mesh: Mesh, rules: Sequence, leading_dims: int = 0) -> NamedSharding:
  """Splits dimension `leading_dims` (the example axis) over the batch axes."""
  return NamedSharding(mesh, PartitionSpec(*([None] * leading_dims), batch_axes(rules) or None))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, PartitionSpec())


def global_batch(local: dict, sharding: NamedSharding) -> dict:
  """This process's rows of a batch -> global arrays whose example axis (the first) `sharding`
  splits; every process passes its own equal share."""

  def to_global(x: np.ndarray) -> jax.Array:
    return jax.make_array_from_process_local_data(sharding, x, (x.shape[0] * jax.process_count(), *x.shape[1:]))

  return jax.tree.map(to_global, local)


def replicated_to_host(tree):
  """Host copies of replicated arrays, from this process's own replica.

  A global array spanning other processes' devices cannot be fetched whole; a
  replicated one has every value on the first local device already.
  """
  return jax.tree.map(lambda x: np.asarray(x.addressable_data(0)), tree)
