"""Pruning (train_lib/pruning.py): the cubic schedule, global and per-layer magnitude masks, N:M
masks, and pruned weights that stay exactly 0.0 through the optimizer's steps."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from train_lib import optimizers, pruning
from train_lib.config_defaults import base_config
from train_lib.errors import ConfigError


def _cfg(prune=None, **optimizer):
  cfg = base_config().optimizer
  cfg.update({'name': 'momentum', 'learning_rate': 0.1, **optimizer})
  cfg.pruning.update(prune or {})
  return cfg


def test_cubic_schedule_and_its_mask_steps():
  plan = pruning.Schedule(initial=0.0, final=0.9, start=100, end=400, every=100)
  for step, expected in ((0, 0.0), (100, 0.0), (200, 0.9 * (1 - (2 / 3) ** 3)), (300, 0.9 * (1 - (1 / 3) ** 3)),
                         (400, 0.9), (1000, 0.9)):
    assert float(plan.sparsity(step)) == pytest.approx(expected, abs=1e-6), step
  assert [s for s in range(0, 1000, 50) if plan.due(s)] == [100, 200, 300, 400]
  # An end off the grid is a mask step too; -1 ends three quarters of the way to the last step.
  off_grid = pruning.schedule(_cfg({'method': 'magnitude', 'start_step': 200, 'every': 250}).pruning, 1000)
  assert (off_grid.end, [s for s in range(1000) if off_grid.due(s)]) == (800, [200, 450, 700, 800])
  one_shot = pruning.Schedule(initial=0.0, final=0.5, start=10, end=10, every=100)
  assert float(one_shot.sparsity(10)) == 0.5 and [s for s in range(50) if one_shot.due(s)] == [10]


def _two_layers():
  """A kernel of large weights and one of small ones: one global threshold prunes mostly the small."""
  big, small = jax.random.split(jax.random.key(0))
  return {'big': 10.0 * jax.random.normal(big, (30, 20)), 'small': jax.random.normal(small, (7, 9, 4))}


@pytest.mark.parametrize('scope', pruning.SCOPES)
def test_magnitude_masks_reach_the_target_with_one_threshold_per_scope(scope):
  weights = _two_layers()
  masks = pruning.magnitude_masks(weights, jax.tree.map(lambda w: jnp.ones(w.shape, bool), weights),
                                  jnp.float32(0.7), scope)
  pruned = {path: int((~mask).sum()) for path, mask in masks.items()}
  if scope == 'per_layer':
    assert pruned == {path: round(0.7 * w.size) for path, w in weights.items()}
    groups = [[path] for path in weights]
  else:
    assert sum(pruned.values()) == round(0.7 * sum(w.size for w in weights.values()))
    assert pruned['small'] / weights['small'].size > 0.95 > pruned['big'] / weights['big'].size
    groups = [list(weights)]
  for paths in groups:  # every weight kept is at least as large as every weight pruned
    kept = np.concatenate([np.abs(weights[p])[masks[p]] for p in paths])
    gone = np.concatenate([np.abs(weights[p])[~masks[p]] for p in paths])
    assert kept.min() >= gone.max()


def test_pruned_weights_stay_pruned_whatever_their_value():
  weights = {'w': jnp.arange(1.0, 11.0)}
  earlier = {'w': jnp.arange(10) != 9}  # the largest weight was pruned before
  masks = pruning.magnitude_masks(weights, earlier, jnp.float32(0.3), 'global')
  np.testing.assert_array_equal(masks['w'], (np.arange(10) >= 2) & (np.arange(10) != 9))


@pytest.mark.parametrize('shape', [(8, 6), (3, 3, 12, 5)])
def test_n_m_masks_keep_the_n_largest_of_every_m_along_the_input_axis(shape):
  kernel = jax.random.normal(jax.random.key(1), shape)
  mask = np.asarray(pruning.n_m_mask(kernel, 2, 4))
  groups = lambda x: np.moveaxis(np.asarray(x), -2, -1).reshape(*shape[:-2], shape[-1], shape[-2] // 4, 4)
  keep, magnitude = groups(mask), groups(np.abs(kernel))
  assert np.all(keep.sum(-1) == 2)
  assert np.all(np.where(keep, magnitude, np.inf).min(-1) >= np.where(keep, -np.inf, magnitude).max(-1))


_PARAMS = {'conv': {'kernel': jnp.linspace(-1.0, 1.0, 3 * 3 * 8 * 4).reshape(3, 3, 8, 4), 'bias': jnp.ones(4)},
           'head': {'kernel': jnp.linspace(1.0, -1.0, 8 * 4).reshape(8, 4)}}


def _train(cfg, steps=8):
  """(params, opt_state) after `steps` updates on fixed random gradients, jitted as the trainer runs them."""
  tx = optimizers.make_optimizer(cfg, 10)
  keys = jax.random.split(jax.random.key(2), steps)
  grads = [jax.tree.map(lambda p, k=k: jax.random.normal(k, p.shape), _PARAMS) for k in keys]

  @jax.jit
  def step(params, state, g):
    updates, state = tx.update(g, state, params)
    return optax.apply_updates(params, updates), state

  params, state = _PARAMS, tx.init(_PARAMS)
  for g in grads:
    params, state = step(params, state, g)
  return params, state


@pytest.mark.parametrize('name, method', [('momentum', 'magnitude'), ('adamw', 'n_m')])
def test_pruned_weights_are_exactly_zero_and_kept_ones_train_as_unpruned(name, method):
  params, state = _train(_cfg({'method': method, 'sparsity': 0.75, 'every': 2}, name=name, weight_decay=0.01))
  dense, _ = _train(_cfg(name=name, weight_decay=0.01))
  masks = state.pruning.inner_states['default'].inner_state.masks
  assert int(state.pruning.inner_states['default'].inner_state.count) == 8
  pruned = sum(int((~masks[path]['kernel']).sum()) for path in ('conv', 'head'))
  assert pruned == (0.75 if method == 'magnitude' else 0.5) * (_PARAMS['conv']['kernel'].size + 32)
  for path in ('conv', 'head'):
    mask = np.asarray(masks[path]['kernel'])
    assert np.all(np.asarray(params[path]['kernel'])[~mask] == 0.0)
    # Fixed gradients: a weight never pruned followed the dense run (to rounding: XLA fuses the two programs apart).
    np.testing.assert_allclose(np.asarray(params[path]['kernel'])[mask], np.asarray(dense[path]['kernel'])[mask],
                               rtol=1e-5, atol=1e-6)
  np.testing.assert_array_equal(params['conv']['bias'], dense['conv']['bias'])  # not a kernel: not pruned


def test_stepping_one_group_leaves_the_other_and_its_pruning_state_alone():
  cfg = _cfg({'method': 'magnitude', 'sparsity': 0.5, 'end_step': 0})
  cfg.groups = {'head': {}}
  tx = optimizers.make_optimizer(cfg, 10)
  state = tx.init(_PARAMS)
  grads = jax.tree.map(jnp.ones_like, _PARAMS)
  updates, new = tx.update(grads, state, _PARAMS, groups=['default'])
  assert np.all(np.asarray(updates['head']['kernel']) == 0.0)
  assert int(new.pruning.inner_states['head'].inner_state.count) == 0
  assert int(new.pruning.inner_states['default'].inner_state.count) == 1
  conv = np.asarray(optax.apply_updates(_PARAMS, updates)['conv']['kernel'])
  assert (conv == 0.0).sum() == conv.size // 2


def test_frozen_kernels_are_not_pruned():
  cfg = _cfg({'method': 'magnitude', 'sparsity': 0.5, 'end_step': 0}, trainable='head/.*')
  params, state = _train(cfg, steps=1)
  np.testing.assert_array_equal(params['conv']['kernel'], _PARAMS['conv']['kernel'])
  assert (np.asarray(params['head']['kernel']) == 0.0).sum() == 16
  assert list(state.pruning.inner_states['default'].inner_state.masks) == ['head']


@pytest.mark.parametrize('prune, message', [
    ({'method': 'lottery'}, r"optimizer.pruning.method: unknown 'lottery'; valid methods are "
                            r"\['none', 'magnitude', 'n_m'\]"),
    ({'method': 'magnitude', 'scope': 'layer'}, r"scope: unknown 'layer'; valid scopes are \['global', 'per_layer'\]"),
    ({'method': 'magnitude', 'sparsity': 1.0}, r'sparsity must be in \(0, 1\), got 1.0'),
    ({'method': 'n_m', 'n': 4, 'm': 4}, r'optimizer.pruning.m must be > n=4'),
    ({'method': 'magnitude', 'every': 0}, r'optimizer.pruning.every must be >= 1'),
    ({'method': 'magnitude', 'params': 'head/(kernel'}, r'optimizer.pruning.params is not a regex'),
    ({'method': 'magnitude', 'end_step': 10}, r'end_step=10 is past the last step of this run \(9: steps count'),
    ({'method': 'magnitude', 'params': 'conv/bias'}, r"params: 'conv/bias' matches no trained kernel"),
    ({'method': 'n_m', 'm': 3, 'params': 'conv/kernel'}, r'conv/kernel \[3, 3, 8, 4\] has 8 inputs \(axis -2\), '
                                                       r'not a multiple of m=3'),
])
def test_bad_pruning_is_one_config_error_line(prune, message):
  cfg = _cfg(prune)
  with pytest.raises(ConfigError, match=message) as raised:
    optimizers.validate(cfg)
    optimizers.make_optimizer(cfg, 10).init(_PARAMS)
  assert '\n' not in str(raised.value)
