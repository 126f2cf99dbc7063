"""Starting a run from another run's weights: `config.init_from`.

  config.init_from = {'workdir': '/tmp/lamina/fmnist_resnet', 'params': '(?!head/).*'}

Every parameter whose path matches `params` in full and that the source checkpoint holds
is restored onto this run's mesh and shardings (any mesh, any process count); non-trained
variables at a loaded path (BatchNorm statistics) come with it. What is not loaded — a
new classifier head, an added layer, a self-supervised run's missing head — keeps its
fresh initialisation and is named in one log line. A loaded parameter whose shape or
dtype differs from the source's is one ConfigError line, before anything compiles.

Only a fresh start reads the source: a run that has its own checkpoint resumes from it.
"""

import dataclasses
from typing import Any

import jax
import ml_collections
from absl import logging
from etils import epath
from flax import traverse_util

import input_pipeline
from train_lib import from_run, trainable, workdir as workdir_lib
from train_lib.errors import ConfigError
from train_lib.train_state import TrainState


@dataclasses.dataclass(frozen=True)
class Plan:
  """What to read from which checkpoint, checked against this run's state."""

  source: from_run.SourceRun
  params_item: str  # the source's 'params' or 'ema_params'
  # Flat {path: ShapeDtypeStruct with this run's sharding} of what is loaded, per state field
  # ('params'; 'model_state' keys its paths by collection first).
  params: dict[str, jax.ShapeDtypeStruct]
  model_state: dict[str, jax.ShapeDtypeStruct]
  fresh: tuple[str, ...]  # parameter paths that keep their initialisation


def plan(config: ml_collections.ConfigDict, workdir: epath.Path, abstract_state: TrainState,
         shardings: TrainState) -> Plan | None:
  """The load `config.init_from` asks for, every problem one ConfigError line; None when it names no
  run or when the run in `workdir` has checkpoints of its own (it resumes from them instead)."""
  cfg = config.init_from
  if not cfg.workdir:
    return None
  with workdir_lib.one_line_errors(workdir, 'readable'):
    if from_run.checkpoint_steps(workdir / 'checkpoints'):
      return None
  source = from_run.open_run(cfg.workdir, cfg.step, what='init_from.workdir')
  _check_tokenizer(config.data, source)
  params_item = from_run.params_item(source, cfg.ema, what='init_from.ema')
  wanted = trainable.compile_regex(cfg.params, where='init_from.params')
  target = _flat(abstract_state.params, shardings.params)
  saved = traverse_util.flatten_dict(from_run.saved_shapes(source, params_item), sep='/')
  params = {path: spec for path, spec in target.items() if wanted.fullmatch(path) and path in saved}
  if not params:
    raise ConfigError(f"init_from.params: '{cfg.params}' matches no parameter that {source.directory} holds; its "
                      f"parameter paths look like {', '.join(list(saved)[:4])}")
  _check_same(params, saved, source)
  saved_state = traverse_util.flatten_dict(from_run.state_shapes(source.directory).get('model_state') or {}, sep='/')
  model_state = {path: spec for path, spec in _flat(abstract_state.model_state, shardings.model_state).items()
                 if wanted.fullmatch(path.partition('/')[2]) and path in saved_state}
  _check_same(model_state, saved_state, source)
  return Plan(source, params_item, params, model_state, tuple(sorted(set(target) - set(params))))


def _check_tokenizer(data_cfg: ml_collections.ConfigDict, source: from_run.SourceRun) -> None:
  """A language model's token ids mean what the source's tokenizer made them mean, or nothing."""
  if not (input_pipeline.text_data.is_text(data_cfg) and source.has_item('tokenizer')):
    return
  if from_run.read_json(source, 'tokenizer') != input_pipeline.text_data.tokenizer(data_cfg).to_json():
    theirs = source.config.data
    raise ConfigError(f"init_from: the source's tokenizer ({theirs.tokenizer} on {theirs.name}) is not this run's "
                      f'({data_cfg.tokenizer} on {data_cfg.name}), so its token ids would mean other text; use the '
                      "source's data.name and data.tokenizer")


def _flat(abstract: Any, shardings: Any) -> dict[str, jax.ShapeDtypeStruct]:
  specs = jax.tree.map(lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings)
  return traverse_util.flatten_dict(specs, sep='/') if specs else {}


def _check_same(loading: dict[str, jax.ShapeDtypeStruct], saved: dict[str, jax.ShapeDtypeStruct],
                source: from_run.SourceRun) -> None:
  """Every variable to load has its saved shape and dtype; else one line naming the first that differs
  and a regex that leaves out every one that does."""
  differ = [path for path, spec in loading.items()
            if (saved[path].shape, saved[path].dtype) != (spec.shape, spec.dtype)]
  if differ:
    path, spec = differ[0], loading[differ[0]]
    more = f' (and {len(differ) - 1} more differ)' if len(differ) > 1 else ''
    tops = '|'.join(dict.fromkeys(p.split('/')[0] for p in differ))
    raise ConfigError(
        f'init_from: {path} is {saved[path].dtype}{list(saved[path].shape)} in {source.directory} but {spec.dtype}'
        f"{list(spec.shape)} here{more}; leave it out of init_from.params (e.g. '(?!({tops})/).*') to start it fresh")


def load(load_plan: Plan, state: TrainState) -> TrainState:
  """`state` (freshly initialised) with the planned parameters and variables read from the source;
  an EMA starts from the loaded weights."""
  target = {load_plan.params_item: traverse_util.unflatten_dict(load_plan.params, sep='/')}
  if load_plan.model_state:
    target['model_state'] = traverse_util.unflatten_dict(load_plan.model_state, sep='/')
  restored = from_run.restore(load_plan.source, target)
  params = _merge(state.params, restored[load_plan.params_item])
  state = state.replace(params=params, model_state=_merge(state.model_state, restored.get('model_state', {})))
  if state.ema_params is not None:
    state = state.replace(ema_params=jax.tree.map(lambda p: p.copy(), params))
  logging.info('init_from: loaded %d of %d parameters (and %d non-trained variables) from %s (%s); initialised fresh: %s',
               len(load_plan.params), len(load_plan.params) + len(load_plan.fresh), len(load_plan.model_state),
               load_plan.source.directory, load_plan.params_item, ', '.join(load_plan.fresh) or 'none')
  return state


def _merge(tree: Any, loaded: Any) -> Any:
  """`tree` with the leaves `loaded` (a sub-tree of it) holds replaced."""
  flat = traverse_util.flatten_dict(tree, sep='/')
  flat.update(traverse_util.flatten_dict(loaded, sep='/'))
  return traverse_util.unflatten_dict(flat, sep='/')
