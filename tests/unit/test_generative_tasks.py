"""The diffusion task's checks, guidance and sampling, and the image helpers around generators."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

import models
from experiments import digits_diffusion
from train_lib import image_grid, image_sampling, tasks
from train_lib.errors import ConfigError
from train_lib.train_state import TrainState

DIGITS = {'num_classes': 10, 'features': {'image': {'shape': (8, 8, 1), 'dtype': 'float32'},
                                          'label': {'shape': (), 'dtype': 'int64'}}}


def _task(arg: str = ''):
  return tasks.get(digits_diffusion.get_config(f'classifier=,tiny=True{"," + arg if arg else ""}'), DIGITS)


def _key(seed: int) -> jax.Array:
  return jax.random.key(seed, impl='rbg')


def _state(task, scale: float):
  batch = {'image': jnp.zeros((2, 8, 8, 1)), 'label': jnp.zeros((2,), jnp.int32)}
  # Compiled, with rbg keys: an eager init compiles every op it meets, and XLA:CPU compiles
  # threefry's random bits several times slower than rbg's.
  variables = nn.meta.unbox(jax.jit(task.init_variables)(_key(0), batch))
  # A random network, not a zero-output one (the U-Net's output layer starts at zero); numpy's
  # noise compiles nothing.
  noise = np.random.default_rng(1)
  params = jax.tree.map(lambda p: p + scale * noise.standard_normal(p.shape, np.float32), variables['params'])
  return params, TrainState(step=0, params=params, opt_state=None, model_state={}, frozen={}, ema_params=None, rng=None)


@pytest.mark.parametrize('arg, settings, message', [
    ('', {'guidance': 2.0}, 'guidance needs a class-conditional model'),
    ('', {'steps': 0}, 'steps must be an int in 1..1000'),
    ('', {'temperature': 1.0}, "task 'diffusion' has no sampler setting ['temperature']"),
    ('conditional=True', {'name': 'dpm'}, "unknown sampler 'dpm'"),
])
def test_bad_sampler_settings_are_one_config_error_line(arg, settings, message):
  with pytest.raises(ConfigError) as error:
    _task(arg).sampler(settings, where='evals.x.sampler')
  assert str(error.value).startswith('evals.x.sampler: ') and message in str(error.value)
  assert '\n' not in str(error.value)


@pytest.mark.parametrize('field, value, message', [
    ('schedule', 'quadratic', "task.schedule: unknown noise schedule 'quadratic'"),
    ('prediction', 'x0', "task.prediction: unknown 'x0'; valid: ['epsilon', 'v']"),
    ('label_dropout', 1.0, 'task.label_dropout must be in [0, 1)'),
    ('pixel_range', (1.0, 0.0), 'task.pixel_range must be (low, high) with low < high'),
])
def test_bad_diffusion_task_is_one_config_error_line(field, value, message):
  config = digits_diffusion.get_config('classifier=,tiny=True')
  config.task[field] = value
  with pytest.raises(ConfigError, match=message.replace('[', r'\[').replace('(', r'\(').replace(')', r'\)')):
    tasks.get(config, DIGITS)


def test_guidance_extrapolates_from_the_unconditional_prediction():
  """One DDIM step from t = T - 1 of a v-prediction model returns x0 = -v (abar_T ~ 0): in pixels, the
  guided prediction u + s (c - u) itself, so scale 3 lies twice as far beyond 1 as 1 lies beyond 0."""
  task = _task('conditional=True,prediction=v')
  params, state = _state(task, scale=0.01)
  labels = jnp.arange(4) % 10
  draw = lambda **kw: task.generate(params, state, _key(2), labels, 4,
                                    task.sampler({'steps': 1, 'clip_x0': False, **kw}, where='test'))
  plain, unconditional, one, three = draw(), draw(guidance=0.0), draw(guidance=1.0), draw(guidance=3.0)
  np.testing.assert_array_equal(plain, one)
  assert 0.0 < float(plain.min()) and float(plain.max()) < 1.0  # unclipped pixels: the map is linear
  assert float(jnp.abs(one - unconditional).max()) > 1e-4  # the label matters
  np.testing.assert_allclose(three - one, 2 * (one - unconditional), atol=2e-5)
  assert plain.shape == (4, 8, 8, 1)


def test_requested_labels():
  conditional, unconditional = _task('conditional=True'), _task()
  np.testing.assert_array_equal(image_sampling.requested_labels(conditional, 12, None), np.arange(12) % 10)
  np.testing.assert_array_equal(image_sampling.requested_labels(conditional, 3, 7), [7, 7, 7])
  assert image_sampling.requested_labels(unconditional, 3, None) is None
  with pytest.raises(ConfigError, match='--label needs a class-conditional model'):
    image_sampling.requested_labels(unconditional, 3, 1)


def test_grid_places_images_row_by_row_with_a_gutter():
  images = np.stack([np.full((2, 2, 1), v) for v in (0.0, 0.5, 1.0)])
  grid = image_grid.grid(images, (0.0, 1.0), columns=2, min_size=2, gutter=1)
  assert grid.shape == (2 * 3 + 1, 2 * 3 + 1, 1) and grid.dtype == np.uint8
  assert grid[1, 1, 0] == 0 and grid[1, 4, 0] == 128 and grid[4, 1, 0] == 255
  assert grid[0, 0, 0] == 255 and grid[4, 4, 0] == 255  # gutter, and the empty fourth cell


def test_unet_output_depends_on_the_timestep_and_the_label():
  unet = models.get('unet', channels=16, channel_mult=(1, 2), groups=4, num_classes=10)
  x = jax.random.normal(jax.random.key(0), (2, 8, 8, 1))
  variables = nn.meta.unbox(unet.init(jax.random.key(1), x, jnp.zeros(2, jnp.int32), jnp.zeros(2, jnp.int32),
                                      train=False))
  # Perturbed: the zero-initialised output layers would hide every dependence.
  params = jax.tree.map(lambda p: p + 0.01 * jax.random.normal(jax.random.key(2), p.shape), variables['params'])
  apply = lambda t, label: unet.apply({'params': params}, x, jnp.full(2, t), jnp.full(2, label), train=False)
  assert float(jnp.abs(apply(0, 3) - apply(700, 3)).max()) > 1e-4
  assert float(jnp.abs(apply(0, 3) - apply(0, 4)).max()) > 1e-4


def test_unet_refuses_groups_of_one_channel():
  with pytest.raises(ValueError, match='groups=32 leaves one channel per GroupNorm group at width 16'):
    models.get('unet', channels=16, channel_mult=(1, 2), groups=32)
