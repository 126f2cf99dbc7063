"""Frozen parts: networks restored read-only from other runs, such as a distillation teacher or
the feature network of a sample-quality metric.

  config.frozen.teacher = {'workdir': '/tmp/lamina/fmnist_resnet', 'step': None, 'ema': False}

A task or an evaluator asks for a part by name (`part(config, 'teacher')`) and gets the source
run's model; the trainer restores every part's variables ({'params': ..., plus the source's
other collections, such as batch_stats}) replicated over this run's mesh into
`TrainState.frozen[name]`. Nothing differentiates them, checkpoints leave them out, and a
resumed run restores them from their source again.
"""

import dataclasses
import functools

import jax
import ml_collections
import numpy as np
from etils import epath
from flax import linen as nn
from jax.sharding import Mesh, NamedSharding, PartitionSpec

import input_pipeline
from train_lib import from_run, registry
from train_lib.errors import ConfigError

FIELDS = {'workdir': None, 'step': None, 'ema': False}


@dataclasses.dataclass(frozen=True)
class FrozenPart:
  """A run's model, and where its variables come from."""

  name: str
  source: from_run.SourceRun
  model: nn.Module | None
  params_item: str  # 'params', or 'ema_params' for the source's EMA weights


def part(config: ml_collections.ConfigDict, name: str, *, model: bool = True) -> FrozenPart:
  """The part `config.frozen[name]`; a missing entry or source run is one ConfigError line.
  `model=False` reads a run of several networks, leaving `model` None."""
  if name not in config.frozen:
    raise ConfigError(f"config.frozen has no part '{name}'; add config.frozen.{name} = "
                      "{'workdir': <a run of this codebase>} (it has " f'{sorted(config.frozen.keys())})')
  cfg = config.frozen[name]
  where = f'frozen.{name}'
  registry.check_keys(cfg.keys(), FIELDS, where=where)
  if not cfg.get('workdir'):
    raise ConfigError(f'{where}.workdir is missing: the workdir of the run to restore it from')
  source = from_run.open_run(cfg.workdir, cfg.get('step'), what=f'{where}.workdir')
  params_item = from_run.params_item(source, bool(cfg.get('ema', False)), what=f'{where}.ema')
  return FrozenPart(name, source, _model(source.workdir, source.step) if model else None, params_item)


@functools.cache
def _task(workdir: str, step: int):
  """The task (and so the networks) of the run in `workdir` up to `step`, built from its own config."""
  from train_lib import tasks  # tasks may import this module
  config = from_run.open_run(workdir, step, what=workdir).config
  return tasks.get(config, input_pipeline.dataset_info(config.data))


def _model(workdir: str, step: int) -> nn.Module:
  """The model the run in `workdir` trained up to `step`."""
  task = _task(workdir, step)
  if not hasattr(task, 'model'):
    raise ConfigError(f"the run in {workdir} trained task '{task.config.task.name}', which has several networks; "
                      'a frozen part is one model (a classifier, a language model, a U-Net)')
  return task.model


def parts(config: ml_collections.ConfigDict) -> dict[str, FrozenPart]:
  """Every part of `config.frozen`, checked."""
  return {name: part(config, name) for name in config.frozen.keys()}


def abstract_variables(frozen_parts: dict[str, FrozenPart], mesh: Mesh) -> dict[str, dict]:
  """{name: variables} of every part as ShapeDtypeStructs, replicated over `mesh`."""
  replicated = NamedSharding(mesh, PartitionSpec())
  spec = lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=replicated)
  return {name: {'params': jax.tree.map(spec, _params_shapes(p)),
                 **jax.tree.map(spec, from_run.saved_shapes(p.source, 'model_state'))}
          for name, p in frozen_parts.items()}


def _params_shapes(frozen_part: FrozenPart):
  """The part's params as ShapeDtypeStructs, in the tree its model applies."""
  source = frozen_part.source
  if source.config.quantization.mode != 'ptq':
    return from_run.saved_shapes(source, frozen_part.params_item)
  return _quantized_params_shapes(source.workdir, source.step)


@functools.cache
def _quantized_params_shapes(workdir: epath.Path, step: int):
  """A post-training quantized run's params are qwix's quantized arrays, whose tree (and how each
  was quantized) only its model's init knows: traced on one batch of its own eval split."""
  from train_lib import tasks
  config = from_run.open_run(workdir, step, what=workdir).config
  task = tasks.get(config, input_pipeline.dataset_info(config.data))
  batch = next(input_pipeline.make_eval_batches(config.data, split=config.data.eval_split,
                                                global_batch_size=config.eval_batch_size, process_index=0,
                                                process_count=1))
  return nn.meta.unbox(jax.eval_shape(task.init_variables, jax.random.key(0), batch)['params'])


def restore(frozen_parts: dict[str, FrozenPart], abstract: dict[str, dict]) -> dict[str, dict]:
  """{name: variables} of every part, onto the shardings of `abstract` (`abstract_variables`)."""
  variables = {}
  for name, frozen_part in frozen_parts.items():
    params_key = frozen_part.params_item
    collections = {k: v for k, v in abstract[name].items() if k != 'params'}
    restored = from_run.restore(frozen_part.source, {params_key: abstract[name]['params'], 'model_state': collections})
    variables[name] = {'params': restored[params_key], **restored['model_state']}
  return variables


def load(workdir: str, step: int | None = None, *, ema: bool = False) -> tuple[nn.Module, dict]:
  """(model, variables) of the run in `workdir` on this process's first device: a trained model
  for a notebook or a tool, read as a frozen part is."""
  frozen_part, variables = _load(workdir, step, ema)
  return frozen_part.model, variables


def load_task(workdir: str, step: int | None = None, *, ema: bool = False):
  """(task, variables) of the run in `workdir`, as `load`, for runs of several networks (a
  contrastive run's towers: `task.embed({...variables}['params'], ...)`)."""
  frozen_part, variables = _load(workdir, step, ema, model=False)
  return _task(frozen_part.source.workdir, frozen_part.source.step), variables


def _load(workdir: str, step: int | None, ema: bool, model: bool = True) -> tuple[FrozenPart, dict]:
  config = ml_collections.ConfigDict({'frozen': {'run': {'workdir': workdir, 'step': step, 'ema': ema}}})
  frozen_part = part(config, 'run', model=model)
  mesh = Mesh(np.array(jax.local_devices()[:1]), ('devices',))
  return frozen_part, restore({'run': frozen_part}, abstract_variables({'run': frozen_part}, mesh))['run']
