"""The evaluator interface: one entry of `config.evals`, run on the train state every so often.

  config.evals.eval = {'type': 'per_example', 'every': 500, 'split': 'test', 'pp': '...'}
  config.evals.samples = {'type': 'my_type', 'every': 1000, 'num': 64}

Every evaluator has the keys of COMMON_FIELDS, which default to the run's eval_every,
data.eval_split, data.pp_eval and eval_batch_size, and declares its own in `config_fields`.
`run(state)` returns scalars, written as '<name>/<key>', and images, written as PNGs under
WORKDIR/samples/ and as TensorBoard images. Evaluators are built, and their keys checked, before
anything is compiled.
"""

import abc
import collections
import copy
import dataclasses
import re
from typing import Any

import jax
import ml_collections
import numpy as np
from etils import epath
from jax.sharding import Mesh

import input_pipeline
from train_lib import mesh as mesh_lib
from train_lib import registry
from train_lib.errors import ConfigError
from train_lib.tasks.base import Task
from train_lib.train_state import TrainState

COMMON_FIELDS = ('every', 'split', 'pp', 'batch_size')


@dataclasses.dataclass(frozen=True)
class Context:
  """What every evaluator may use: the run's config, task, mesh and state layout, and its workdir."""

  config: ml_collections.ConfigDict
  task: Task
  mesh: Mesh
  rules: tuple
  state_shardings: TrainState
  workdir: epath.Path  # local or gs://; read and write through it (train_lib/storage.py)
  compiler_options: dict[str, Any]


@dataclasses.dataclass
class Result:
  """scalars: {key: value}; images: {key: [H, W, C] uint8 (C = 1 or 3)}."""

  scalars: dict[str, float] = dataclasses.field(default_factory=dict)
  images: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)


class Evaluator(abc.ABC):
  """Base class; subclasses set `config_fields` to their own keys and defaults."""

  config_fields: dict[str, Any] = {}

  def __init__(self, name: str, cfg: ml_collections.ConfigDict, context: Context):
    self.name = name
    self.context = context
    where = f'evals.{name}'
    registry.check_keys(cfg.keys(), ['type', *COMMON_FIELDS, *self.config_fields], where=where)
    self.every = cfg.get('every', context.config.eval_every)
    if isinstance(self.every, bool) or not isinstance(self.every, int) or self.every < 0:
      raise ConfigError(f'{where}.every must be an int >= 0 (0: only after the last step), got {self.every!r}')
    if self.every % context.config.steps_per_call:
      raise ConfigError(f'{where}.every={self.every} must be a multiple of steps_per_call='
                        f'{context.config.steps_per_call}')
    self.batch_size = cfg.get('batch_size', context.config.eval_batch_size)
    self.cfg = cfg
    # config.data with this evaluator's split and preprocessing as its eval split and pp_eval.
    self.data = copy.deepcopy(context.config.data)
    self.data.eval_split = cfg.get('split', self.data.eval_split)
    self.data.pp_eval = cfg.get('pp', self.data.pp_eval)
    if (self.data.eval_split, self.data.pp_eval) != (context.config.data.eval_split, context.config.data.pp_eval):
      try:
        input_pipeline.validate(self.data)
      except ValueError as e:
        # validate names the data config's fields; here they are this evaluator's split and pp.
        message = re.sub(r'^eval_split:', 'split:', re.sub(r'^pp_eval:', 'pp:', str(e)))
        raise ConfigError(f'{where}.{message}') from e

  def arg(self, key: str) -> Any:
    """One of this evaluator's own keys, or its default."""
    return self.cfg.get(key, self.config_fields[key])

  def split_outputs(self, fn, state: TrainState) -> dict[str, np.ndarray]:
    """{key: [N, ...]}: the jitted `fn(state, global batch) -> {key: [B, ...], 'mask': [B]}` (outputs
    replicated) over this evaluator's split, padding rows dropped, so each example appears once."""
    parts = collections.defaultdict(list)
    batches = mesh_lib.batch_sharding(self.context.mesh, self.context.rules)
    for local in input_pipeline.make_eval_batches(self.data, split=self.data.eval_split,
                                                  global_batch_size=self.batch_size,
                                                  process_index=jax.process_index(),
                                                  process_count=jax.process_count()):
      out = mesh_lib.replicated_to_host(fn(state, mesh_lib.global_batch(local, batches)))
      real = np.asarray(out.pop('mask')) > 0
      for key, values in out.items():
        parts[key].append(np.asarray(values)[real])
    return {key: np.concatenate(values) for key, values in parts.items()}

  def due(self, step: int, is_last: bool) -> bool:
    return is_last or bool(self.every and step % self.every == 0)

  @abc.abstractmethod
  def run(self, state: TrainState) -> Result:
    """Evaluates `state` (collectively: every process calls it)."""
