"""Optimizers and schedules from config.optimizer."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from train_lib import layer_decay, optimizers, trainable
from train_lib.config_defaults import base_config
from train_lib.errors import ConfigError
from train_lib.train_state import TrainState


def _cfg(**kw):
  cfg = base_config().optimizer
  cfg.update(kw)
  return cfg


def test_warmup_then_cosine_to_end_factor():
  lr = optimizers.make_schedule(_cfg(learning_rate=1.0, schedule='cosine', warmup_steps=10, end_factor=0.1), 110)
  assert float(lr(0)) == 0.0
  assert float(lr(5)) == pytest.approx(0.5)
  assert float(lr(10)) == pytest.approx(1.0)
  assert float(lr(60)) == pytest.approx(0.55, abs=1e-6)  # halfway down the cosine
  assert float(lr(110)) == pytest.approx(0.1)


def test_linear_and_constant():
  linear = optimizers.make_schedule(_cfg(learning_rate=2.0, schedule='linear'), 100)
  assert float(linear(50)) == pytest.approx(1.0)
  constant = optimizers.make_schedule(_cfg(learning_rate=2.0), 100)
  assert float(constant(99)) == 2.0


def _one_update(cfg, params, grads):
  tx = optimizers.make_optimizer(cfg, 100)
  updates, _ = tx.update(grads, tx.init(params), params)
  return updates


def test_weight_decay_skips_biases_and_scales():
  params = {'kernel': jnp.ones((2, 2)), 'bias': jnp.ones((2,))}
  zeros = jax.tree.map(jnp.zeros_like, params)
  for name in ('sgd', 'adamw'):
    updates = _one_update(_cfg(name=name, learning_rate=0.1, weight_decay=0.5), params, zeros)
    assert np.all(np.asarray(updates['kernel']) < 0), name
    np.testing.assert_array_equal(updates['bias'], 0.0)
  updates = _one_update(_cfg(name='sgd', learning_rate=0.1, weight_decay=0.5, weight_decay_mask='all'), params, zeros)
  assert np.all(np.asarray(updates['bias']) < 0)


def test_gradient_clipping_bounds_the_update():
  params = {'w': jnp.zeros((4,))}
  grads = {'w': jnp.full((4,), 100.0)}
  updates = _one_update(_cfg(name='sgd', learning_rate=1.0, grad_clip_norm=1.0), params, grads)
  assert float(optax.tree.norm(updates)) == pytest.approx(1.0, rel=1e-5)


@pytest.mark.parametrize('name', optimizers.OPTIMIZERS)
def test_every_optimizer_descends(name):
  params = {'w': jnp.array([3.0, -2.0])}
  tx = optimizers.make_optimizer(_cfg(name=name, learning_rate=0.1), 100)
  state = tx.init(params)
  loss = lambda p: jnp.sum(p['w'] ** 2)
  for _ in range(20):
    updates, state = tx.update(jax.grad(loss)(params), state, params)
    params = optax.apply_updates(params, updates)
  assert float(loss(params)) < 13.0 / 2


@pytest.mark.parametrize('field, value, message', [
    ('name', 'rmsprop', "unknown 'rmsprop'; valid optimizers are"),
    ('schedule', 'step', "unknown 'step'; valid schedules are"),
    ('weight_decay_mask', 'biases', "unknown 'biases'; valid masks are"),
    ('learning_rate', -1.0, 'learning_rate must be >= 0'),
])
def test_bad_values(field, value, message):
  with pytest.raises(ConfigError, match=message):
    optimizers.validate(_cfg(**{field: value}))


def test_micro_batches_interleave_so_each_device_keeps_its_rows():
  from train_lib import gradients
  batch = {'x': jnp.arange(8)}
  np.testing.assert_array_equal(gradients.micro_batches(batch, 2)['x'], [[0, 2, 4, 6], [1, 3, 5, 7]])


def test_accumulated_gradient_is_the_mean_over_micro_batches():
  from train_lib import gradients
  x = jnp.arange(8.0)

  def grad_fn(params, state, batch, rng):
    grads = jax.grad(lambda p: jnp.mean((p * batch['x']) ** 2))(params)
    return grads, state.model_state, {'loss': jnp.mean(batch['x'])}

  state = TrainState(step=0, params=1.5, opt_state=None, model_state={}, frozen={}, ema_params=None, rng=None)
  full, _, _ = grad_fn(1.5, state, {'x': x}, None)
  accumulated, _, metrics = gradients.accumulate(grad_fn, 4, state, {'x': x}, jax.random.PRNGKey(0))
  assert float(accumulated) == pytest.approx(float(full))
  assert float(metrics['loss']) == pytest.approx(3.5)


_PARAMS = {'backbone': {'conv': {'kernel': jnp.ones((2, 2))}},
           'head': {'kernel': jnp.ones((2, 3)), 'bias': jnp.ones(3)}}


def test_groups_take_parameters_by_path_and_train_at_their_own_rates():
  cfg = _cfg(name='sgd', learning_rate=0.1)
  cfg.groups = {'head': {'learning_rate': 1.0}, 'biases': {'params': '.*/bias', 'name': 'sgd', 'learning_rate': 0.0}}
  with pytest.raises(ConfigError, match=r'parameter head/bias matches optimizer groups \[.biases., .head.\]'):
    optimizers.make_optimizer(cfg, 100).labels(_PARAMS)
  cfg.groups.head.params = 'head/kernel'
  tx = optimizers.make_optimizer(cfg, 100)
  assert tx.labels(_PARAMS) == {'backbone': {'conv': {'kernel': 'default'}},
                                'head': {'kernel': 'head', 'bias': 'biases'}}
  grads = jax.tree.map(jnp.ones_like, _PARAMS)
  updates, _ = tx.update(grads, tx.init(_PARAMS), _PARAMS)
  assert float(updates['backbone']['conv']['kernel'][0, 0]) == pytest.approx(-0.1)
  assert float(updates['head']['kernel'][0, 0]) == pytest.approx(-1.0)
  assert float(updates['head']['bias'][0]) == 0.0


@pytest.mark.parametrize('groups, message', [
    ({'head': {'learning_rate': 1.0, 'lr': 2}}, r"optimizer.groups.head: unknown key\(s\) \['lr'\]; valid keys are"),
    ({'head': {'name': 'rmsprop'}}, r"optimizer.groups.head.name: unknown 'rmsprop'; valid optimizers are"),
    ({'head': {'params': 'head/(kernel'}}, r'optimizer.groups.head.params is not a regex'),
    ({'default': {'learning_rate': 1.0}}, r"optimizer.groups.default: 'default' names the parameters no group takes"),
    ({'frozen': {'learning_rate': 1.0}}, r"optimizer.groups.frozen: 'frozen' names the parameters "
                                         r'optimizer.trainable leaves out'),
    ({'head': {'layer_decay': 1.5}}, r'optimizer.groups.head.layer_decay must be in \[0, 1\] \(0: off\), got 1.5'),
])
def test_bad_groups_are_one_line(groups, message):
  cfg = _cfg()
  cfg.groups = groups
  with pytest.raises(ConfigError, match=message):
    optimizers.validate(cfg)


def test_frozen_parameters_get_no_update_no_state_and_no_gradient():
  cfg = _cfg(name='adamw', learning_rate=0.1, weight_decay=0.5, trainable='head/.*')
  tx = optimizers.make_optimizer(cfg, 100)
  assert tx.groups == ('default', 'frozen')
  opt_state = tx.init(_PARAMS)
  # Adam's moments exist for the head only: two moments of 6 + 3 values, no array for the backbone.
  assert sorted(x.size for x in jax.tree.leaves(opt_state) if x.ndim) == [3, 3, 6, 6]
  grads = jax.tree.map(jnp.ones_like, _PARAMS)
  updates, _ = tx.update(grads, opt_state, _PARAMS)
  assert float(jnp.abs(updates['backbone']['conv']['kernel']).max()) == 0.0  # no weight decay either
  assert float(updates['head']['kernel'][0, 0]) < 0.0

  loss = lambda p: sum(jnp.sum(x ** 2) for x in jax.tree.leaves(trainable.stop_frozen(cfg, p)))
  cut = jax.grad(loss)(_PARAMS)
  assert float(jnp.abs(cut['backbone']['conv']['kernel']).max()) == 0.0
  np.testing.assert_array_equal(cut['head']['kernel'], 2 * _PARAMS['head']['kernel'])


@pytest.mark.parametrize('trains, message', [
    ('decoder/.*', r"optimizer.trainable: 'decoder/.\*' matches no parameter; parameter paths look like backbone/"),
    ('head/(', r'optimizer.trainable is not a regex'),
])
def test_bad_trainable_is_one_line(trains, message):
  with pytest.raises(ConfigError, match=message):
    optimizers.make_optimizer(_cfg(trainable=trains), 100).labels(_PARAMS)


def test_layer_decay_scales_each_block_by_its_depth():
  paths = ['patch_embedding/kernel', 'position_embedding', 'cls_token', 'block_0/attention/query/kernel',
           'block_1/mlp/up/kernel', 'final_norm/scale', 'head/kernel']
  factors = layer_decay.scales(paths, [0.5] * len(paths))
  assert factors == [0.5 ** 3, 0.5 ** 3, 0.5 ** 3, 0.5 ** 2, 0.5, 1.0, 1.0]
  assert layer_decay.scales(paths, [0.0] * len(paths)) == [1.0] * len(paths)

  params = {'block_0': {'kernel': jnp.ones(2)}, 'block_1': {'kernel': jnp.ones(2)}, 'head': {'kernel': jnp.ones(2)}}
  tx = optimizers.make_optimizer(_cfg(name='sgd', learning_rate=1.0, layer_decay=0.5), 100)
  updates, _ = tx.update(jax.tree.map(jnp.ones_like, params), tx.init(params), params)
  assert [float(updates[k]['kernel'][0]) for k in ('block_0', 'block_1', 'head')] == [-0.25, -0.5, -1.0]
