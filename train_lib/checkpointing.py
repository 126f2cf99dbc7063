"""orbax checkpoints of the train state, the data iterator's position and the config.

Saves are async and atomic (orbax writes to a temporary directory and renames it on
commit), so a run killed mid-save leaves the previous checkpoint as the latest.
"""

import json

import grain
import ml_collections
import orbax.checkpoint as ocp

from train_lib.train_state import TrainState


class _IteratorSnapshot:
  """The data iterator's state as of the last batch the train step consumed.

  The loader runs ahead of the device (prefetch), so the live iterator's state is
  not the one that matches the saved train state; grain's handler only needs this.
  """

  def __init__(self, state: bytes):
    self._state = state

  def get_state(self) -> bytes:
    return self._state


class Checkpointer:

  def __init__(self, directory: str, cfg: ml_collections.ConfigDict, config: ml_collections.ConfigDict):
    options = ocp.CheckpointManagerOptions(
        max_to_keep=cfg.keep, enable_async_checkpointing=cfg.async_save, create=True)
    self._manager = ocp.CheckpointManager(directory, options=options)
    self._config = json.loads(config.to_json_best_effort())

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def save(self, step: int, state: TrainState, data_state: bytes, *, force: bool = False) -> None:
    self._manager.save(step, force=force, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state),
        data=grain.checkpoint.CheckpointSave(_IteratorSnapshot(data_state)),
        config=ocp.args.JsonSave(self._config),
    ))

  def restore(self, step: int, abstract_state: TrainState, data_iterator) -> TrainState:
    """Restores onto the shardings carried by `abstract_state`; sets the iterator's position."""
    restored = self._manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state),
        data=grain.checkpoint.CheckpointRestore(data_iterator),
    ))
    return restored.state

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.close()
