"""orbax checkpoints of the train state, the data iterator's position, the config and the
tokenizer, on a local disk or in a bucket; and resuming from the newest one that reads back intact.

Saves are async and atomic (orbax renames a temporary directory on commit; in a bucket it
writes commit_success.txt last), so a run killed mid-save leaves the previous checkpoint as
the latest. Each checkpoint carries a fingerprint of the state it holds
(train_lib/fingerprint.py): bytes changed in storage restore without an error from orbax,
but not past the fingerprint.
"""

import dataclasses
import json
import uuid
from typing import Any

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from absl import logging
from etils import epath
from jax.experimental import multihost_utils

from train_lib import fingerprint, from_run, log_filter, storage
from train_lib.errors import CheckpointError, ConfigError
from train_lib.train_state import TrainState


class _DataStateHandler(ocp.AsyncCheckpointHandler):
  """The data iterator's position, one `process_{i}-of-{n}.json` per process as grain writes it,
  written in the background like the other items (grain's own handler writes it synchronously,
  which on a bucket holds the train loop for a round trip).

  lamina's loader stream depends only on the seed and the global batch size, so every
  process's file holds the same position and any of them restores any topology.
  """

  async def async_save(self, directory: epath.Path, args: 'DataStateSave') -> list:
    return [ocp.future.CommitFutureAwaitingContractedSignals(self._write(directory, args.state),
                                                             name='lamina_data_state')]

  async def _write(self, directory: epath.Path, state: bytes) -> None:
    self.save(directory, DataStateSave(state))

  def save(self, directory: epath.Path, args: 'DataStateSave') -> None:
    (directory / f'process_{jax.process_index()}-of-{jax.process_count()}.json').write_bytes(args.state)

  def restore(self, directory: epath.Path, args: 'DataStateRestore') -> Any:
    files = sorted(directory.glob('process_*-of-*.json'))
    exact = directory / f'process_{jax.process_index()}-of-{jax.process_count()}.json'
    args.item.set_state((exact if exact.exists() else files[0]).read_bytes())
    args.item.start_prefetch()
    return args.item


@ocp.args.register_with_handler(_DataStateHandler, for_save=True)
@dataclasses.dataclass
class DataStateSave(ocp.args.CheckpointArgs):
  state: bytes  # as of the last batch the train step consumed, not the live (prefetching) iterator's


@ocp.args.register_with_handler(_DataStateHandler, for_restore=True)
@dataclasses.dataclass
class DataStateRestore(ocp.args.CheckpointArgs):
  item: Any


class Checkpointer:

  def __init__(self, directory: epath.Path, cfg: ml_collections.ConfigDict, config: ml_collections.ConfigDict,
               tokenizer: dict | None = None):
    """`tokenizer`: the data's `Tokenizer.to_json()` (text and caption runs), saved so sampling decodes
    with the same one."""
    options = ocp.CheckpointManagerOptions(
        max_to_keep=cfg.keep, enable_async_checkpointing=cfg.async_save, create=True)
    self._directory = directory
    self._manager = ocp.CheckpointManager(directory, options=options)
    self._config = json.loads(config.to_json_best_effort())
    self._tokenizer = tokenizer

  def save(self, step: int, state: TrainState, data_state: bytes, *, force: bool = False) -> None:
    """Saves `state` but its frozen parts, which their own runs hold."""
    state = state.replace(frozen=None)
    items = dict(state=ocp.args.StandardSave(state),
                 data=DataStateSave(data_state),
                 config=ocp.args.JsonSave(self._config),
                 fingerprint=ocp.args.JsonSave(fingerprint.of(state)))
    if self._tokenizer:
      items['tokenizer'] = ocp.args.JsonSave(self._tokenizer)
    self._manager.save(step, force=force, args=ocp.args.Composite(**items))

  def restore_latest(self, abstract_state: TrainState, data_iterator) -> tuple[int, TrainState | None]:
    """(step, state) of the newest checkpoint that reads back intact, or (0, None) where there is none.

    The state comes onto the shardings carried by `abstract_state`, without its frozen parts
    (None), and the iterator is set to the position saved with it. An unreadable checkpoint
    is one warning line and is set aside as `<step>.unreadable-<id>`, so the run can save that
    step again; with none intact, a CheckpointError. A checkpoint of another model or
    optimizer is a ConfigError: that is a config to fix, not damage.
    """
    abstract_state = abstract_state.replace(frozen=None)
    steps = sorted(self._manager.all_steps(), reverse=True)
    for i, step in enumerate(steps):
      state, problem = self._restore(step, abstract_state, data_iterator)
      if _everywhere(problem is None):
        return step, state
      problem = problem or 'unreadable on another process'
      log_filter.restore_failed()
      fallback = f'resuming from step {steps[i + 1]}' if i + 1 < len(steps) else 'no older checkpoint'
      logging.warning('Checkpoint at step %d in %s is unreadable (%s); set aside; %s',
                      step, self._directory, problem, fallback)
      self._set_aside(step)
    if steps:
      raise CheckpointError(f'no intact checkpoint in {self._directory}: steps {sorted(steps)} are all unreadable '
                            '(set aside as <step>.unreadable-*); start afresh in a new --workdir')
    return 0, None

  def _restore(self, step: int, abstract_state: TrainState, data_iterator) -> tuple[TrainState | None, str | None]:
    """(state, None), or (None, why it cannot be read)."""
    directory = self._directory / str(step)
    try:
      saved = from_run.state_shapes(directory)
    except Exception as e:  # pylint: disable=broad-except  # whatever the damage, the reason in one line
      return None, _first_line(e)
    _check_same_layout(saved, abstract_state, directory)
    items = dict(state=ocp.args.StandardRestore(abstract_state), data=DataStateRestore(data_iterator))
    has_fingerprint = (directory / 'fingerprint').exists()  # checkpoints written before it have none
    if has_fingerprint:
      items['fingerprint'] = ocp.args.JsonRestore()
    try:
      with storage.quiet_client_logs():
        restored = self._manager.restore(step, args=ocp.args.Composite(**items))
    except Exception as e:  # pylint: disable=broad-except
      return None, _first_line(e)
    if has_fingerprint:
      changed = fingerprint.first_mismatch(restored.fingerprint, fingerprint.of(restored.state))
      if changed:
        return None, f'{changed} differs from the fingerprint saved with it'
    return restored.state, None

  def _set_aside(self, step: int) -> None:
    if jax.process_index() == 0:
      with storage.quiet_client_logs():
        (self._directory / str(step)).rename(self._directory / f'{step}.unreadable-{uuid.uuid4().hex[:8]}')
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices(f'lamina: checkpoint {step} set aside')
    self._manager.reload()

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.close()


def _everywhere(ok: bool) -> bool:
  """Whether `ok` holds on every process: they restore together or not at all."""
  if jax.process_count() == 1:
    return ok
  return bool(np.all(multihost_utils.process_allgather(np.array(ok))))


def _first_line(error: BaseException) -> str:
  """The first line of the innermost cause: orbax wraps tensorstore's precise error in a vaguer one."""
  while error.__cause__ is not None:
    error = error.__cause__
  text = str(error).strip().splitlines()
  return f'{type(error).__name__}: {text[0][:300] if text else ""}'.rstrip(': ')


def _path_shapes(tree: Any) -> dict[str, tuple]:
  """{'params/head/kernel': shape, ...}: the same names for a live state and orbax's metadata of it."""
  def name(key) -> str:
    return str(next(getattr(key, a) for a in ('key', 'name', 'idx') if hasattr(key, a)))
  return {'/'.join(name(k) for k in path): tuple(x.shape) for path, x in jax.tree_util.tree_leaves_with_path(tree)}


def _check_same_layout(saved: Any, abstract_state: TrainState, directory: epath.Path) -> None:
  found, expected = _path_shapes(saved), _path_shapes(abstract_state)
  for path in sorted(found.keys() | expected.keys()):
    if found.get(path) != expected.get(path):
      raise ConfigError(
          f'the checkpoint {directory} holds another train state than this config makes ({path}: '
          f'{found.get(path, "absent")} saved, {expected.get(path, "absent")} here); resume with the config '
          'that wrote it, or start in a new --workdir')
