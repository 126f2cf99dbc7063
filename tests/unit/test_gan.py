"""The GAN task: one train step moves each network through its own optimizer, the losses, the checks."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import linen as nn

from experiments import digits_gan
from train_lib import state_init, tasks
from train_lib.errors import ConfigError
from train_lib.tasks import gan

DIGITS = {'num_classes': 10, 'features': {'image': {'shape': (8, 8, 1), 'dtype': 'float32'},
                                          'label': {'shape': (), 'dtype': 'int64'}}}


def _config(**task):
  config = digits_gan.get_config('classifier=,tiny=True')
  config.task.update(task)
  # Different optimizers, so each network's update names the one that made it.
  config.optimizer.groups = {'generator': {'name': 'adam', 'learning_rate': 1e-3},
                             'discriminator': {'name': 'sgd', 'learning_rate': 0.1}}
  return config


def _batch():
  rng = np.random.default_rng(0)
  return {'image': jnp.asarray(rng.uniform(size=(16, 8, 8, 1)), jnp.float32),
          'label': jnp.asarray(rng.integers(0, 10, 16), jnp.int32)}


def _key(seed: int) -> jax.Array:
  # XLA:CPU compiles threefry's random bits several times slower than rbg's.
  return jax.random.key(seed, impl='rbg')


def _state(task, tx, batch):
  return jax.jit(lambda r: nn.meta.unbox(state_init.boxed_state_fn(task, tx, batch, use_ema=False)(r)))(_key(0))


def _close(got, want, atol=1e-6):
  for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
    np.testing.assert_allclose(g, w, rtol=1e-5, atol=atol)


@pytest.mark.parametrize('loss, r1', [('non_saturating', 0.0), ('hinge', 1.0)])
def test_one_step_updates_discriminator_then_generator_each_by_its_own_optimizer(loss, r1):
  task = tasks.get(_config(loss=loss, r1_gamma=r1), DIGITS)
  tx = task.make_optimizer(100)
  batch = _batch()
  state = _state(task, tx, batch)
  rng = _key(1)
  new, metrics = jax.jit(lambda s: task.train_step(s, batch, rng, tx, 1))(state)

  # The expected updates are computed apart from the step, each compiled (eager, op by op, they
  # were most of the test's time).
  # The discriminator: plain SGD at 0.1 on its loss against the fakes of the step's first key.
  d_rng, g_rng = jax.random.split(rng)
  real = task.to_model(batch['image'])
  fake, _ = jax.jit(lambda p, s: task._fakes(p, s, d_rng, None, 16, train=True))(state.params, state.model_state)
  d_grads = jax.jit(lambda d, p, s: jax.grad(task._d_loss, has_aux=True)(d, p, s, real, fake, None)[0])(
      state.params['discriminator'], state.params, state.model_state)
  _close(new.params['discriminator'], jax.tree.map(lambda p, g: p - 0.1 * g, state.params['discriminator'], d_grads))

  # The generator: Adam's first step (lr g / (|g| + eps)) on its loss against the updated discriminator;
  # where g is near 0 that ratio is rounding-sensitive, hence atol 10% of lr.
  after_d = state.replace(params={**state.params, 'discriminator': new.params['discriminator']})
  g_grads = jax.jit(lambda g, p, s: jax.grad(task._g_loss, has_aux=True)(g, p, s, g_rng, None, 16)[0])(
      after_d.params['generator'], after_d.params, after_d.model_state)
  _close(new.params['generator'], jax.tree.map(lambda p, g: p - 1e-3 * g / (jnp.abs(g) + 1e-8),
                                               state.params['generator'], g_grads), atol=1e-4)
  assert {'d_loss', 'g_loss', 'd_real', 'd_fake'} <= set(metrics)
  assert ('r1' in metrics) == bool(r1)
  # The generator's BatchNorm statistics moved with its step.
  moved = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), state.model_state, new.model_state)
  assert any(jax.tree.leaves(moved['batch_stats']['generator']))


def test_losses_follow_their_formulas():
  real, fake = jnp.array([2.0, -1.0]), jnp.array([0.5, -3.0])
  np.testing.assert_allclose(gan.discriminator_loss('hinge', real, fake), [0.0 + 1.5, 2.0 + 0.0])
  np.testing.assert_allclose(gan.discriminator_loss('non_saturating', real, fake),
                             np.log1p(np.exp(-np.array([2.0, -1.0]))) + np.log1p(np.exp([0.5, -3.0])), rtol=1e-6)
  np.testing.assert_allclose(gan.generator_loss('hinge', fake), [-0.5, 3.0])
  np.testing.assert_allclose(gan.generator_loss('non_saturating', fake), np.log1p(np.exp(-np.array([0.5, -3.0]))),
                             rtol=1e-6)


def test_conditional_spectral_norm_gan_trains_a_step():
  config = _config(conditional=True)
  config.model.discriminator.spectral_norm = True
  task = tasks.get(config, DIGITS)
  tx = task.make_optimizer(100)
  batch = _batch()
  state = _state(task, tx, batch)
  new, metrics = jax.jit(lambda s: task.train_step(s, batch, _key(1), tx, 1))(state)
  assert np.isfinite(float(metrics['loss']))
  # The power iteration's vectors live in batch_stats and move when the discriminator trains.
  u_before = state.model_state['batch_stats']['discriminator']
  u_after = new.model_state['batch_stats']['discriminator']
  assert any(jax.tree.leaves(jax.tree.map(lambda a, b: bool(jnp.any(a != b)), u_before, u_after)))
  images = task.generate(new.params, new, _key(2), jnp.arange(10) % 10, 10, None)
  assert images.shape == (10, 8, 8, 1) and float(images.min()) >= 0.0 and float(images.max()) <= 1.0


@pytest.mark.parametrize('edit, message', [
    (lambda c: setattr(c.optimizer, 'groups', {'generator': {}}), 'steps each network through its own optimizer'),
    (lambda c: c.update({'grad_accum_steps': 2}), 'one batch a step'),
    (lambda c: c.task.update({'loss': 'wasserstein'}), "task.loss: unknown 'wasserstein'; valid: ['non_saturating', 'hinge']"),
    (lambda c: setattr(c, 'model', ml_collections.ConfigDict({'generator': c.model.generator})),
     'needs config.model.generator and config.model.discriminator'),
])
def test_bad_gan_config_is_one_line(edit, message):
  config = _config()
  edit(config)
  with pytest.raises(ConfigError) as error:
    tasks.get(config, DIGITS)
  assert message in str(error.value) and '\n' not in str(error.value)
