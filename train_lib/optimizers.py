"""Optimizers and learning-rate schedules built from `config.optimizer`, per parameter group.

  config.optimizer.groups.head = {'params': 'head/.*', 'learning_rate': 1e-2}

A group takes the parameters whose path ('stage1_block1/conv_0/kernel', 'generator/...')
matches its `params` regex in full (default '<group name>/.*': a task's model of that
name) and any optimizer field of its own; the rest is the top-level settings'. Parameters
no group takes form the 'default' group.
"""

import copy
import dataclasses
import re
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax

from train_lib import layer_decay, pruning, registry, trainable
from train_lib.errors import ConfigError

DEFAULT_GROUP = 'default'
FROZEN_GROUP = 'frozen'
# Settings of the whole optimizer, not of a group.
_GLOBAL_FIELDS = ('groups', 'trainable', 'pruning')

SCHEDULES = ('constant', 'cosine', 'linear')
DECAY_MASKS = ('kernels', 'all')


def make_schedule(cfg: ml_collections.ConfigDict, total_steps: int) -> optax.Schedule:
  """Linear warmup from 0, then constant, cosine or linear decay to `end_factor` x peak."""
  peak = cfg.learning_rate
  warmup = cfg.warmup_steps
  decay_steps = max(total_steps - warmup, 1)
  end = peak * cfg.end_factor
  if cfg.schedule == 'constant':
    main = optax.constant_schedule(peak)
  elif cfg.schedule == 'cosine':
    main = optax.cosine_decay_schedule(peak, decay_steps, alpha=cfg.end_factor)
  elif cfg.schedule == 'linear':
    main = optax.linear_schedule(peak, end, decay_steps)
  else:
    raise ConfigError(f"optimizer.schedule: unknown '{cfg.schedule}'; valid schedules are {list(SCHEDULES)}")
  if warmup == 0:
    return main
  return optax.join_schedules([optax.linear_schedule(0.0, peak, warmup), main], [warmup])


def _decay_mask(kind: str) -> Callable | None:
  if kind == 'all':
    return None
  # Biases and norm scales are vectors: decaying them only hurts (Loshchilov & Hutter).
  return lambda params: jax.tree.map(lambda p: p.ndim > 1, params)


def _base(cfg: ml_collections.ConfigDict, lr: optax.Schedule) -> optax.GradientTransformation:
  name = cfg.name
  if name == 'sgd':
    return optax.sgd(lr)
  if name == 'momentum':
    return optax.sgd(lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
  if name == 'adam':
    return optax.adam(lr, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps)
  if name == 'adamw':
    return optax.adamw(lr, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps, weight_decay=cfg.weight_decay,
                       mask=_decay_mask(cfg.weight_decay_mask))
  raise ConfigError(f"optimizer.name: unknown '{name}'; valid optimizers are {list(OPTIMIZERS)}")


OPTIMIZERS = ('sgd', 'momentum', 'adam', 'adamw')


def validate(cfg: ml_collections.ConfigDict) -> None:
  """Checks `config.optimizer` and each of its groups; every failure is one ConfigError line."""
  _groups(cfg)


def _validate_settings(cfg: ml_collections.ConfigDict, where: str) -> None:
  if cfg.name not in OPTIMIZERS:
    raise ConfigError(f"{where}.name: unknown '{cfg.name}'; valid optimizers are {list(OPTIMIZERS)}")
  if cfg.schedule not in SCHEDULES:
    raise ConfigError(f"{where}.schedule: unknown '{cfg.schedule}'; valid schedules are {list(SCHEDULES)}")
  if cfg.weight_decay_mask not in DECAY_MASKS:
    raise ConfigError(
        f"{where}.weight_decay_mask: unknown '{cfg.weight_decay_mask}'; valid masks are {list(DECAY_MASKS)}")
  for key in ('learning_rate', 'weight_decay', 'grad_clip_norm', 'warmup_steps'):
    if cfg[key] < 0:
      raise ConfigError(f'{where}.{key} must be >= 0, got {cfg[key]}')
  if not 0.0 <= cfg.layer_decay <= 1.0:
    raise ConfigError(f'{where}.layer_decay must be in [0, 1] (0: off), got {cfg.layer_decay}')


_RESERVED = {DEFAULT_GROUP: 'no group takes', FROZEN_GROUP: 'optimizer.trainable leaves out'}


@dataclasses.dataclass(frozen=True)
class _Group:
  name: str
  pattern: re.Pattern | None  # None: the default group, which takes what no other group does
  settings: ml_collections.ConfigDict


def _groups(cfg: ml_collections.ConfigDict) -> list[_Group]:
  """The default group (the top-level settings), then each of `cfg.groups` with its own settings
  over the top-level ones; all checked."""
  base = ml_collections.ConfigDict({k: v for k, v in cfg.items() if k not in _GLOBAL_FIELDS})
  _validate_settings(base, 'optimizer')
  trainable.pattern(cfg)
  pruning.validate(cfg.pruning)
  groups = [_Group(DEFAULT_GROUP, None, base)]
  for name, overrides in cfg.get('groups', {}).items():
    where = f'optimizer.groups.{name}'
    if name in (DEFAULT_GROUP, FROZEN_GROUP):
      raise ConfigError(f"{where}: '{name}' names the parameters {_RESERVED[name]}; give the group another name")
    registry.check_keys(overrides.keys(), [*base.keys(), 'params'], where=where)
    settings = copy.deepcopy(base)
    settings.update({k: v for k, v in overrides.items() if k != 'params'})
    _validate_settings(settings, where)
    pattern = trainable.compile_regex(overrides.get('params', f'{name}/.*'), where=f'{where}.params')
    groups.append(_Group(name, pattern, settings))
  return groups


def _transform(cfg: ml_collections.ConfigDict, total_steps: int) -> optax.GradientTransformation:
  """Clip -> (coupled L2 decay for non-adamw) -> optimizer, with the schedule applied."""
  lr = make_schedule(cfg, total_steps)
  parts = []
  if cfg.grad_clip_norm > 0:
    parts.append(optax.clip_by_global_norm(cfg.grad_clip_norm))
  if cfg.weight_decay > 0 and cfg.name != 'adamw':
    # SGD-style weight decay is an L2 gradient term, added before momentum.
    parts.append(optax.add_decayed_weights(cfg.weight_decay, mask=_decay_mask(cfg.weight_decay_mask)))
  parts.append(_base(cfg, lr))
  return optax.chain(*parts)


class Optimizer:
  """Each parameter group's optax transformation (optax.multi_transform), stepped together
  or group by group.

  Parameters outside `optimizer.trainable` are the 'frozen' group: zero updates, no state.
  `update(..., groups=('discriminator',))` steps only the named groups: the others get zero
  updates and keep their optimizer state as it was, so one train step can update a GAN's
  discriminator and then its generator, each through its own optimizer.
  """

  def __init__(self, cfg: ml_collections.ConfigDict, total_steps: int):
    groups = _groups(cfg)
    self._cfg = cfg
    self._patterns = {group.name: group.pattern for group in groups if group.pattern is not None}
    self._layer_decay = {group.name: group.settings.layer_decay for group in groups}
    transforms = {group.name: _transform(group.settings, total_steps) for group in groups}
    if cfg.trainable != trainable.ALL:
      transforms[FROZEN_GROUP] = optax.set_to_zero()  # no state: no moments, no weight decay
    self.groups = tuple(transforms)
    self._tx = optax.multi_transform(transforms, self.labels)
    # Applied last, to the update as scaled: the masks must hold on what is added to the params.
    self._pruning = pruning.make(cfg.pruning, total_steps, labels=self.labels, groups=self.groups,
                                 skip=(FROZEN_GROUP,))

  def labels(self, params: Any) -> Any:
    """The group of every parameter; a group (or `trainable`) that takes none is a ConfigError
    naming some paths."""
    paths = trainable.variable_paths(params)
    trains = trainable.pattern(self._cfg)

    def group(path: str) -> str:
      if not trains.fullmatch(path):
        return FROZEN_GROUP
      matches = [name for name, pattern in self._patterns.items() if pattern.fullmatch(path)]
      if len(matches) > 1:
        raise ConfigError(f'parameter {path} matches optimizer groups {matches}; make their params regexes disjoint')
      return matches[0] if matches else DEFAULT_GROUP

    labels = jax.tree.map(group, paths)
    taken = set(jax.tree.leaves(labels))
    examples = ', '.join(jax.tree.leaves(paths)[:4])
    if taken == {FROZEN_GROUP}:
      raise ConfigError(f"optimizer.trainable: '{trains.pattern}' matches no parameter; parameter paths look like "
                        f'{examples}')
    for name, pattern in self._patterns.items():
      if name not in taken:
        which = 'parameter' if self._cfg.trainable == trainable.ALL else 'trainable parameter'
        raise ConfigError(f"optimizer.groups.{name}: params '{pattern.pattern}' matches no {which}; "
                          f'parameter paths look like {examples}')
    return labels

  def init(self, params: Any) -> Any:
    state = self._tx.init(params)
    return state if self._pruning is None else pruning.PrunedState(state, self._pruning.init(params))

  def update(self, grads: Any, opt_state: Any, params: Any,
             groups: Sequence[str] | None = None) -> tuple[Any, Any]:
    """(updates, new opt_state) for the named groups (default all)."""
    state, pruning_state = opt_state if self._pruning is not None else (opt_state, None)
    updates, new_state = self._tx.update(grads, state, params)
    if any(self._layer_decay.values()):
      labels = self.labels(params)
      decays = jax.tree.map(lambda label: self._layer_decay.get(label, 0.0), labels)
      factors = layer_decay.scales(trainable.variable_paths(params), decays)
      updates = jax.tree.map(lambda u, f: u * f, updates, factors)
    if self._pruning is not None:
      updates, new_pruning = self._pruning.update(updates, pruning_state, params)
    if groups is None:
      return updates, new_state if self._pruning is None else pruning.PrunedState(new_state, new_pruning)
    unknown = sorted(set(groups) - set(self.groups))
    if unknown:
      raise ValueError(f'no optimizer group {unknown}; the groups are {list(self.groups)}')
    stepped = jax.tree.map(lambda label: label in groups, self.labels(params))
    updates = jax.tree.map(lambda take, u: u if take else jnp.zeros_like(u), stepped, updates)
    keep = lambda new, old: new._replace(inner_states={
        name: new.inner_states[name] if name in groups else old.inner_states[name] for name in self.groups})
    if self._pruning is None:
      return updates, keep(new_state, state)
    return updates, pruning.PrunedState(keep(new_state, state), keep(new_pruning, pruning_state))


def make_optimizer(cfg: ml_collections.ConfigDict, total_steps: int) -> Optimizer:
  """The optimizer `config.optimizer` describes, over `total_steps` steps."""
  return Optimizer(cfg, total_steps)
