"""Reading another run: its config and chosen parts of its train state, onto this run's mesh.

The one piece behind everything that starts from a checkpoint this run did not write:
frozen parts (train_lib/frozen.py), sampling from a finished run (train_lib/sample.py) and
fine-tuning from another run. Nothing here writes to the source's workdir.
"""

import dataclasses
from typing import Any

import jax
import ml_collections
import orbax.checkpoint as ocp
from etils import epath

from train_lib import config_defaults, workdir as workdir_lib
from train_lib.errors import ConfigError


@dataclasses.dataclass(frozen=True)
class SourceRun:
  """One checkpoint of another run: where it is and the config that trained it."""

  workdir: epath.Path
  step: int
  config: ml_collections.ConfigDict

  @property
  def directory(self) -> epath.Path:
    return self.workdir / 'checkpoints' / str(self.step)

  def has_item(self, name: str) -> bool:
    """Whether the checkpoint holds item `name` ('state', 'config', 'tokenizer', ...)."""
    return (self.directory / name).is_dir()


def open_run(workdir: str, step: int | None = None, *, what: str) -> SourceRun:
  """The checkpoint at `step` (default the latest) of the run in `workdir`.

  A missing run or step is a ConfigError whose one line starts with `what` (the config
  key or flag that named the run) and says how to fix it.
  """
  workdir = workdir_lib.resolve(workdir)
  directory = workdir / 'checkpoints'
  steps = checkpoint_steps(directory)
  if not steps:
    raise ConfigError(f'{what}: no checkpoint in {directory}; train that run first or point {what} at a run '
                      'that has one')
  if step is None:
    step = steps[-1]
  elif step not in steps:
    raise ConfigError(f'{what}: no checkpoint at step {step} in {directory}; its steps are {steps}')
  saved_config = ml_collections.ConfigDict(_json_item(directory, step, 'config'))
  return SourceRun(workdir, step, config_defaults.complete(saved_config))


def checkpoint_steps(directory: epath.Path) -> list[int]:
  """The committed checkpoint steps in `directory` (a workdir's 'checkpoints'), oldest first."""
  if not directory.is_dir():
    return []
  return sorted(int(step.name) for step in directory.iterdir()
                if step.name.isdigit() and (step / 'state').is_dir())


def params_item(source: SourceRun, ema: bool, *, what: str) -> str:
  """The state item holding the weights to read: 'ema_params' or 'params'. Asking for the EMA
  of a run that kept none is a ConfigError whose line starts with `what`."""
  if ema and source.config.ema_decay <= 0:
    raise ConfigError(f'{what}: the run in {source.workdir} kept no EMA (ema_decay=0); set ema=False')
  return 'ema_params' if ema else 'params'


def state_shapes(step_directory: epath.Path) -> dict[str, Any]:
  """ShapeDtypeStructs of the train state saved in one checkpoint (its 'state' item's metadata)."""
  metadata = ocp.StandardCheckpointHandler().metadata(step_directory / 'state')  # the item's own metadata
  tree = metadata.tree if hasattr(metadata, 'tree') else metadata
  return jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype), tree)


def saved_shapes(source: SourceRun, subtree: str) -> Any:
  """ShapeDtypeStructs of one subtree of the saved train state ('params', 'model_state', ...)."""
  tree = state_shapes(source.directory)
  if tree.get(subtree) is None:
    raise ConfigError(f'the checkpoint {source.directory} holds no {subtree!r}; it holds '
                      f'{sorted(k for k, v in tree.items() if v is not None)}')
  return tree[subtree]


def restore(source: SourceRun, target: dict[str, Any]) -> dict[str, Any]:
  """The subtrees of the saved train state named by `target`'s keys ('params', 'ema_params',
  'model_state'), restored onto the shardings its ShapeDtypeStructs carry."""
  restore_args = jax.tree.map(lambda s: ocp.ArrayRestoreArgs(sharding=s.sharding), target)
  with ocp.PyTreeCheckpointer() as checkpointer:
    return checkpointer.restore(source.directory / 'state', args=ocp.args.PyTreeRestore(
        target, restore_args=restore_args, partial_restore=True))


def inference_variables(source: SourceRun) -> tuple[Any, Any]:
  """(the weights evaluation uses, EMA ones when the run kept an EMA; model_state) of the saved state,
  restored onto this process's first device: what sampling from a finished run reads."""
  item = params_item(source, source.config.ema_decay > 0, what='--workdir')
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  on_device = lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=device)
  target = {item: saved_shapes(source, item), 'model_state': saved_shapes(source, 'model_state')}
  restored = restore(source, jax.tree.map(on_device, target))
  return restored[item], restored['model_state']


def read_json(source: SourceRun, item: str) -> Any:
  """A JSON item of the checkpoint ('tokenizer', ...)."""
  return _json_item(source.directory.parent, source.step, item)


def _json_item(checkpoints: epath.Path, step: int, item: str) -> Any:
  manager = ocp.CheckpointManager(checkpoints, options=ocp.CheckpointManagerOptions(create=False, read_only=True))
  try:
    return manager.restore(step, args=ocp.args.Composite(**{item: ocp.args.JsonRestore()}))[item]
  finally:
    manager.close()
