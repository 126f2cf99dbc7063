"""Pruning as the optimizer's last transformation: magnitude (Zhu & Gupta 2017) or N:M sparsity.

  config.optimizer.pruning = {'method': 'magnitude', 'sparsity': 0.9, 'params': '(?!stem_conv/|head/).*kernel'}
  config.optimizer.pruning = {'method': 'n_m', 'n': 2, 'm': 4}

The masks (True: the weight is kept) live in the optimizer state, so checkpoints hold them and a
resumed run goes on with them. The transformation runs on the update the optimizer is about to
apply, after every scaling, and makes it `where(mask, update, -param)`: a kept weight moves
exactly as it would unpruned, a pruned one becomes p + (-p) == 0.0 exactly and stays there
(0 + -0 == 0) whatever its momentum holds. Masks only ever lose weights, so a pruned weight
never comes back and its stale moments are never used: nothing else needs re-zeroing.

What is pruned: the kernels (ndim > 1) among the trained parameters whose path matches
`params` in full. The default takes every kernel; a network's first conv and its classifier
hold few weights that each matter much, and are usually left out by the experiment's regex.

method 'magnitude': the weights of smallest |w| go, ranked over all kernels at once (scope
'global': layers end up unequally sparse) or kernel by kernel (scope 'per_layer'). The target
follows Zhu & Gupta's cubic schedule, from `initial_sparsity` at t0 = `start_step` to
`sparsity` at `end_step`,

  s_t = s_f + (s_i - s_f) * (1 - (t - t0) / (end_step - t0))^3,

the masks recomputed every `every` steps from t0 and at end_step, then fixed. end_step = -1 is
three quarters of the way from start_step to the run's last step: the last quarter fine-tunes
the final masks while the learning rate decays. end_step == start_step prunes in one shot.

method 'n_m': of every `m` consecutive weights along the input (contraction) axis, a kernel's
second-to-last (Dense [in, out], Conv [..., in, out]), the `n` of largest |w| stay: the layout
NVIDIA's sparse tensor cores run 2:4 in. As NVIDIA's ASP does, it prunes once, at start_step,
and the rest of the run fine-tunes the masks. Kernels of other layouts (the attention's fused
[embed, heads, 3, head_dim]) are to be left out by the regex.

A step is one update of a parameter group: each optimizer group has its own pruning state, as
it has its own moments, so a task that steps its groups in separate calls (a GAN) prunes each
on the train-step schedule. With several groups, 'global' ranks within each group.
"""

import dataclasses
import re
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from flax import linen as nn
from flax import traverse_util

from train_lib import trainable
from train_lib.errors import ConfigError

METHODS = ('none', 'magnitude', 'n_m')
SCOPES = ('global', 'per_layer')
_WHERE = 'optimizer.pruning'


class PruningState(NamedTuple):
  count: jax.Array  # updates so far: the step of the next one
  masks: Any  # nested {name: ...} of bool arrays, one per pruned kernel, True where the weight stays


class PrunedState(NamedTuple):
  """An Optimizer's state when it prunes: its groups' optimizer states, then their pruning states."""

  optimizer: Any
  pruning: Any


@dataclasses.dataclass(frozen=True)
class Schedule:
  """When the masks change and to what sparsity: the cubic ramp from `initial` at step `start` to
  `final` at step `end`, recomputed every `every` steps from `start` and at `end`."""

  initial: float
  final: float
  start: int
  end: int
  every: int

  def sparsity(self, step: jax.Array) -> jax.Array:
    if self.end == self.start:
      return jnp.asarray(self.final, jnp.float32)
    progress = jnp.clip((step - self.start) / (self.end - self.start), 0.0, 1.0)
    return self.final + (self.initial - self.final) * (1.0 - progress) ** 3

  def due(self, step: jax.Array) -> jax.Array:
    on_grid = ((step - self.start) % self.every == 0) | (step == self.end)
    return (step >= self.start) & (step <= self.end) & on_grid


def validate(cfg: ml_collections.ConfigDict) -> None:
  """Checks `config.optimizer.pruning`; every failure is one ConfigError line."""
  if cfg.method not in METHODS:
    raise ConfigError(f"{_WHERE}.method: unknown '{cfg.method}'; valid methods are {list(METHODS)}")
  if cfg.scope not in SCOPES:
    raise ConfigError(f"{_WHERE}.scope: unknown '{cfg.scope}'; valid scopes are {list(SCOPES)}")
  if not 0.0 < cfg.sparsity < 1.0:
    raise ConfigError(f'{_WHERE}.sparsity must be in (0, 1), got {cfg.sparsity}')
  if not 0.0 <= cfg.initial_sparsity <= cfg.sparsity:
    raise ConfigError(f'{_WHERE}.initial_sparsity must be in [0, sparsity={cfg.sparsity}], got {cfg.initial_sparsity}')
  for key, least in (('start_step', 0), ('every', 1), ('n', 1)):
    if cfg[key] < least:
      raise ConfigError(f'{_WHERE}.{key} must be >= {least}, got {cfg[key]}')
  if cfg.end_step != -1 and cfg.end_step < cfg.start_step:
    raise ConfigError(f'{_WHERE}.end_step must be >= start_step={cfg.start_step}, or -1 (three quarters of the way '
                      f'to the last step), got {cfg.end_step}')
  if cfg.m <= cfg.n:
    raise ConfigError(f'{_WHERE}.m must be > n={cfg.n} (n of every m weights stay), got {cfg.m}')
  trainable.compile_regex(cfg.params, where=f'{_WHERE}.params')


def schedule(cfg: ml_collections.ConfigDict, total_steps: int) -> Schedule:
  """The mask schedule of a run of `total_steps` steps; one that does not fit in it is a ConfigError."""
  last = f'the last step of this run ({total_steps - 1}: steps count from 0)'
  if cfg.start_step >= total_steps:
    raise ConfigError(f'{_WHERE}.start_step={cfg.start_step} is past {last}')
  if cfg.method == 'n_m':
    final = 1.0 - cfg.n / cfg.m
    return Schedule(final, final, cfg.start_step, cfg.start_step, 1)
  end = cfg.end_step if cfg.end_step != -1 else cfg.start_step + (total_steps - cfg.start_step) * 3 // 4
  if end >= total_steps:
    raise ConfigError(f'{_WHERE}.end_step={end} is past {last}; -1 ends the schedule three quarters of the way')
  return Schedule(cfg.initial_sparsity, cfg.sparsity, cfg.start_step, end, cfg.every)


def _is_box(x: Any) -> bool:
  return isinstance(x, nn.meta.AxisMetadata)


def _unboxed(x: Any) -> Any:
  return x.value if _is_box(x) else x


def _kernels(tree: Any, pattern: re.Pattern) -> dict[str, Any]:
  """{path: leaf} of the kernels (ndim > 1) of `tree` whose path `pattern` matches in full; a
  leaf may still be in its logical-axis box."""
  paths = jax.tree.leaves(trainable.variable_paths(tree))
  leaves = jax.tree.leaves(tree, is_leaf=_is_box)
  return {path: leaf for path, leaf in zip(paths, leaves) if pattern.fullmatch(path) and _unboxed(leaf).ndim > 1}


def kernels(cfg: ml_collections.ConfigDict, params: Any) -> dict[str, jax.Array]:
  """{path: kernel} of what `cfg.pruning` (config.optimizer) prunes: matched kernels that train."""
  trains = trainable.pattern(cfg)
  matched = _kernels(params, trainable.compile_regex(cfg.pruning.params, where=f'{_WHERE}.params'))
  return {path: kernel for path, kernel in matched.items() if trains.fullmatch(path)}


def _keep_ranked(scores: jax.Array, num_pruned: jax.Array) -> jax.Array:
  """False for exactly the `num_pruned` lowest of the flat `scores` (ties: the first ones), True for the rest."""
  order = jnp.argsort(scores, stable=True)
  return jnp.zeros(scores.shape, bool).at[order].set(jnp.arange(scores.size) >= num_pruned)


def magnitude_masks(weights: dict[str, jax.Array], masks: dict[str, jax.Array], sparsity: jax.Array,
                    scope: str) -> dict[str, jax.Array]:
  """`masks` with the smallest |w| of `weights` pruned to `sparsity`, over all of them ('global')
  or in each ('per_layer'); weights already pruned stay pruned and count toward it."""
  # Pruned weights rank first whatever their value, so a mask never grows back.
  scores = {path: jnp.where(masks[path], jnp.abs(w.astype(jnp.float32)), -1.0).ravel() for path, w in weights.items()}
  count = lambda size: jnp.round(sparsity * size).astype(jnp.int32)
  if scope == 'per_layer':
    keep = {path: _keep_ranked(s, count(s.size)) for path, s in scores.items()}
  else:
    flat = jnp.concatenate(list(scores.values()))
    starts = np.cumsum([s.size for s in scores.values()])[:-1]
    keep = dict(zip(scores, jnp.split(_keep_ranked(flat, count(flat.size)), starts)))
  return {path: masks[path] & keep[path].reshape(masks[path].shape) for path in masks}


def n_m_mask(kernel: jax.Array, n: int, m: int) -> jax.Array:
  """True for the `n` largest |w| of every `m` consecutive weights along axis -2 (the input axis
  of Dense [in, out] and Conv [..., in, out] kernels); ties keep the first."""
  w = jnp.moveaxis(jnp.abs(kernel.astype(jnp.float32)), -2, -1)
  groups = w.reshape(*w.shape[:-1], w.shape[-1] // m, m)
  rank = jnp.argsort(jnp.argsort(-groups, axis=-1, stable=True), axis=-1)  # 0: the group's largest
  return jnp.moveaxis((rank < n).reshape(w.shape), -1, -2)


def _prune_group(cfg: ml_collections.ConfigDict, plan: Schedule, pattern: re.Pattern) -> optax.GradientTransformation:
  """One optimizer group's pruning: its kernels' masks and its own step count."""

  def init(params: Any) -> PruningState:
    found = _kernels(params, pattern)
    if cfg.method == 'n_m':
      for path, kernel in found.items():
        shape = _unboxed(kernel).shape
        if shape[-2] % cfg.m:
          raise ConfigError(f'{_WHERE}: {path} {list(shape)} has {shape[-2]} inputs (axis -2), not a multiple of '
                            f"m={cfg.m}; leave it out of {_WHERE}.params, e.g. '(?!{re.escape(path)}).*kernel'")
    # jax.tree.map keeps a kernel's logical-axis box, so its mask is sharded as it is.
    masks = {tuple(path.split('/')): jax.tree.map(lambda x: jnp.ones(x.shape, bool), kernel)
             for path, kernel in found.items()}
    return PruningState(jnp.zeros((), jnp.int32), traverse_util.unflatten_dict(masks))

  def recompute(weights: dict[str, jax.Array], masks: dict[str, jax.Array], step: jax.Array) -> dict[str, jax.Array]:
    if cfg.method == 'n_m':
      return {path: masks[path] & n_m_mask(w, cfg.n, cfg.m) for path, w in weights.items()}
    return magnitude_masks(weights, masks, plan.sparsity(step), cfg.scope)

  def update(updates: Any, state: PruningState, params: Any = None) -> tuple[Any, PruningState]:
    if params is None:
      raise ValueError('pruning needs the params: update(updates, state, params)')
    count = optax.safe_increment(state.count)
    masks = traverse_util.flatten_dict(state.masks, sep='/')
    if not masks:  # a group with no pruned kernel
      return updates, PruningState(count, state.masks)
    paths = trainable.variable_paths(updates)
    weights = {path: w for path, w in zip(jax.tree.leaves(paths), jax.tree.leaves(params)) if path in masks}
    masks = jax.lax.cond(plan.due(state.count), lambda: recompute(weights, masks, state.count), lambda: masks)
    # where, not a product: the kept weights' updates stay bit-identical, and p + (-p) is exactly 0.
    updates = jax.tree.map(lambda path, u, p: jnp.where(masks[path], u, -p) if path in masks else u,
                           paths, updates, params)
    return updates, PruningState(count, traverse_util.unflatten_dict(masks, sep='/'))

  return optax.GradientTransformation(init, update)


def make(cfg: ml_collections.ConfigDict, total_steps: int, *, labels: Callable[[Any], Any], groups: Sequence[str],
         skip: Sequence[str] = ()) -> optax.GradientTransformation | None:
  """The pruning `cfg` (config.optimizer.pruning) asks for over a run of `total_steps`, or None
  for method 'none': each group of `groups` (the optimizer's, `labels` giving each parameter's)
  pruned with its own state, but those of `skip` (frozen), which pass through."""
  if cfg.method == 'none':
    return None
  plan = schedule(cfg, total_steps)
  pattern = trainable.compile_regex(cfg.params, where=f'{_WHERE}.params')
  per_group = _prune_group(cfg, plan, pattern)
  tx = optax.multi_transform({name: optax.identity() if name in skip else per_group for name in groups}, labels)

  def init(params: Any) -> Any:
    found = _kernels(params, pattern)
    group_of = dict(zip(jax.tree.leaves(trainable.variable_paths(params)), jax.tree.leaves(labels(params))))
    if not any(group_of[path] not in skip for path in found):
      examples = ', '.join([path for path, label in group_of.items() if label not in skip][:4])
      raise ConfigError(f"{_WHERE}.params: '{cfg.params}' matches no trained kernel (ndim > 1); trained parameter "
                        f'paths look like {examples}')
    return tx.init(params)

  return optax.GradientTransformation(init, tx.update)
