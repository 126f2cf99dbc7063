"""orbax checkpoints of the train state, the data iterator's position, the config and the tokenizer.

Saves are async and atomic (orbax writes to a temporary directory and renames it on
commit), so a run killed mid-save leaves the previous checkpoint as the latest.
"""

import dataclasses
import json
from typing import Any

import grain
import jax
import ml_collections
import orbax.checkpoint as ocp
from etils import epath

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


class _DataStateHandler(grain.checkpoint.CheckpointHandler):
  """grain's handler, except that a run may resume on a different number of processes.

  grain writes one `process_{i}-of-{n}.json` per process. lamina's loader stream
  depends only on the seed and the global batch size, so every process's file holds
  the same position and any of them restores any topology.
  """

  def restore(self, directory: epath.Path, item: Any = None, args: Any = None) -> Any:
    item = item or args.item
    files = sorted(directory.glob('process_*-of-*.json'))
    exact = directory / f'process_{jax.process_index()}-of-{jax.process_count()}.json'
    item.set_state((exact if exact.exists() else files[0]).read_text().encode())
    item.start_prefetch()
    return item


@ocp.args.register_with_handler(_DataStateHandler, for_save=True)
@dataclasses.dataclass
class DataStateSave(ocp.args.CheckpointArgs):
  item: Any


@ocp.args.register_with_handler(_DataStateHandler, for_restore=True)
@dataclasses.dataclass
class DataStateRestore(ocp.args.CheckpointArgs):
  item: Any


class Checkpointer:

  def __init__(self, directory: str, cfg: ml_collections.ConfigDict, config: ml_collections.ConfigDict,
               tokenizer: dict | None = None):
    """`tokenizer`: a text run's `Tokenizer.to_json()`, saved so sampling decodes with the same one."""
    options = ocp.CheckpointManagerOptions(
        max_to_keep=cfg.keep, enable_async_checkpointing=cfg.async_save, create=True)
    self._manager = ocp.CheckpointManager(directory, options=options)
    self._config = json.loads(config.to_json_best_effort())
    self._tokenizer = tokenizer

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def save(self, step: int, state: TrainState, data_state: bytes, *, force: bool = False) -> None:
    """Saves `state` but its frozen parts, which their own runs hold."""
    items = dict(state=ocp.args.StandardSave(state.replace(frozen=None)),
                 data=DataStateSave(_IteratorSnapshot(data_state)),
                 config=ocp.args.JsonSave(self._config))
    if self._tokenizer:
      items['tokenizer'] = ocp.args.JsonSave(self._tokenizer)
    self._manager.save(step, force=force, args=ocp.args.Composite(**items))

  def restore(self, step: int, abstract_state: TrainState, data_iterator) -> TrainState:
    """Restores onto the shardings carried by `abstract_state`; sets the iterator's position.
    The state comes back without its frozen parts (None)."""
    restored = self._manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state.replace(frozen=None)),
        data=DataStateRestore(data_iterator),
    ))
    return restored.state

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.close()
