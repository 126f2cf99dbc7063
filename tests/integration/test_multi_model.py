"""A task with two models whose parameter groups have their own optimizers: one train step
updates the first and then the second, each only through its own optimizer. The task is
defined and registered here; the trainer is not touched."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
from flax import linen as nn

import models
from tests.conftest import small_digits_config
from train_lib import optimizers, state_init, tasks, train_and_evaluate
from train_lib.tasks.base import Task


class TwoClassifiers(Task):
  """Two logistic regressions on the same images, 'first' and 'second', trained one after the
  other in each step (as a GAN steps its discriminator, then its generator)."""

  def __init__(self, config, data_info):
    super().__init__(config, data_info)
    self.model = models.get('logreg', num_classes=data_info['num_classes'])

  def init_variables(self, rng, batch):
    first, second = (self.model.init(key, batch['image'], train=False)['params'] for key in jax.random.split(rng))
    return {'params': {'first': first, 'second': second}}

  def _loss(self, params, name, batch):
    logits = self.model.apply({'params': params[name]}, batch['image'], train=False)
    return optax.softmax_cross_entropy_with_integer_labels(logits, batch['label']).mean()

  def loss(self, params, state, batch, rng):
    return self._loss(params, 'first', batch) + self._loss(params, 'second', batch), (state.model_state, {})

  def eval_metrics(self, params, state, batch):
    logits = self.model.apply({'params': params['second']}, batch['image'], train=False)
    return {'accuracy': (logits.argmax(-1) == batch['label']).astype(jnp.float32)}

  def train_step(self, state, batch, rng, tx, accum_steps):
    first_loss, grads = jax.value_and_grad(self._loss)(state.params, 'first', batch)
    state = state.apply_gradients(tx, grads, groups=['first'])
    second_loss, grads = jax.value_and_grad(self._loss)(state.params, 'second', batch)
    state = state.apply_gradients(tx, grads, groups=['second'])
    return state, {'loss': first_loss + second_loss, 'first_loss': first_loss}


@pytest.fixture
def two_classifiers(monkeypatch):
  monkeypatch.setitem(tasks.TASKS, 'two_classifiers', TwoClassifiers)
  config = small_digits_config()
  config.task.name = 'two_classifiers'
  config.optimizer.update({'schedule': 'constant', 'warmup_steps': 0, 'weight_decay': 0.0})
  config.optimizer.groups = {'first': {'name': 'sgd', 'learning_rate': 0.5},
                             'second': {'name': 'adam', 'learning_rate': 0.01}}
  return config


def _batch():
  rng = np.random.default_rng(0)
  return {'image': jnp.asarray(rng.uniform(size=(16, 8, 8, 1)), jnp.float32),
          'label': jnp.asarray(rng.integers(0, 10, 16), jnp.int32)}


def test_one_step_moves_each_model_by_its_own_optimizer_only(two_classifiers):
  task = tasks.get(two_classifiers, {'num_classes': 10})
  tx = task.make_optimizer(100)
  assert tx.groups == ('default', 'first', 'second')
  batch = _batch()
  state = jax.jit(lambda r: nn.meta.unbox(state_init.boxed_state_fn(task, tx, batch, use_ema=False)(r)))(
      jax.random.key(0))
  new, _ = jax.jit(lambda s: task.train_step(s, batch, None, tx, 1))(state)

  grads = jax.grad(task._loss)(state.params, 'first', batch)['first']
  want_first = jax.tree.map(lambda p, g: p - 0.5 * g, state.params['first'], grads)  # sgd at 0.5
  for got, want in zip(jax.tree.leaves(new.params['first']), jax.tree.leaves(want_first)):
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)
  # The second model's gradient is taken after the first one's update, and goes through Adam.
  after_first = {'first': new.params['first'], 'second': state.params['second']}
  grads = jax.grad(task._loss)(after_first, 'second', batch)['second']
  adam = optax.adam(0.01)
  updates, _ = adam.update(grads, adam.init(state.params['second']))
  for got, want in zip(jax.tree.leaves(new.params['second']),
                       jax.tree.leaves(optax.apply_updates(state.params['second'], updates))):
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-7)


def test_stepping_one_group_leaves_the_other_and_its_optimizer_state_bit_identical(two_classifiers):
  task = tasks.get(two_classifiers, {'num_classes': 10})
  tx = task.make_optimizer(100)
  batch = _batch()
  state = jax.jit(lambda r: nn.meta.unbox(state_init.boxed_state_fn(task, tx, batch, use_ema=False)(r)))(
      jax.random.key(0))
  grads = jax.grad(lambda p: task._loss(p, 'first', batch) + task._loss(p, 'second', batch))(state.params)
  new = jax.jit(lambda s, g: s.apply_gradients(tx, g, groups=['second']))(state, grads)
  assert jax.tree.all(jax.tree.map(np.array_equal, new.params['first'], state.params['first']))
  first_state = lambda s: s.opt_state.inner_states['first']
  assert jax.tree.all(jax.tree.map(np.array_equal, first_state(new), first_state(state)))
  assert not np.array_equal(new.params['second']['head']['kernel'], state.params['second']['head']['kernel'])
  with pytest.raises(ValueError, match=r"no optimizer group \['thrid'\]; the groups are \['default', 'first'"):
    state.apply_gradients(tx, grads, groups=['thrid'])


def test_the_trainer_runs_it_with_each_groups_learning_rate(two_classifiers, workdir):
  two_classifiers.optimizer.groups.first.learning_rate = 0.0
  final = train_and_evaluate(two_classifiers, workdir)
  assert final['eval/accuracy'] > 0.5  # the second model learnt
  saved = ocp.StandardCheckpointer().restore(f'{workdir}/checkpoints/40/state')
  initial = ocp.StandardCheckpointer().restore(f'{workdir}/checkpoints/20/state')
  np.testing.assert_array_equal(saved['params']['first']['head']['kernel'],
                                initial['params']['first']['head']['kernel'])  # learning rate 0
  assert not np.array_equal(saved['params']['second']['head']['kernel'], initial['params']['second']['head']['kernel'])


def test_an_optimizer_group_that_takes_no_parameter_is_one_line(two_classifiers, workdir):
  two_classifiers.optimizer.groups = {'head': {'learning_rate': 0.1}}
  with pytest.raises(optimizers.ConfigError, match=r"optimizer.groups.head: params 'head/.\*' matches no parameter; "
                     r'parameter paths look like first/head/bias'):
    train_and_evaluate(two_classifiers, workdir)
