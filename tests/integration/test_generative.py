"""Generators on the trainer: a resumed GAN equals an uninterrupted one, `python -m train_lib.sample`
draws grids and refuses bad settings in one line, and the 'samples' evaluator checks its inputs."""

import subprocess
import sys

import jax
import numpy as np
import pytest
from PIL import Image

from experiments import digits_cnn, digits_diffusion, digits_gan
from tests.conftest import REPO
from train_lib import from_run, train_and_evaluate
from train_lib.errors import ConfigError
from train_lib.metric_writer import read_metrics


def _saved(workdir: str, step: int) -> dict:
  """params, ema_params and model_state of the checkpoint at `step`, on the host."""
  source = from_run.open_run(workdir, step, what='test')
  device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  target = {k: jax.tree.map(lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype, sharding=device),
                            from_run.saved_shapes(source, k)) for k in ('params', 'ema_params', 'model_state')}
  return jax.tree.map(np.asarray, from_run.restore(source, target))


def test_a_resumed_gan_equals_an_uninterrupted_one(tmp_path):
  def config(steps):
    c = digits_gan.get_config('classifier=,tiny=True,spectral_norm=True')
    c.total_steps = steps
    c.checkpoint.every = 3
    return c

  straight, resumed = str(tmp_path / 'straight'), str(tmp_path / 'resumed')
  train_and_evaluate(config(6), straight)
  train_and_evaluate(config(3), resumed)
  train_and_evaluate(config(6), resumed)  # picks up at step 3
  jax.tree.map(np.testing.assert_array_equal, _saved(resumed, 6), _saved(straight, 6))
  last = lambda workdir: {k: v for k, v in read_metrics(workdir)[-1].items() if k.startswith(('train/', 'eval/'))}
  assert last(resumed) == last(straight)


@pytest.fixture(scope='module')
def conditional_diffusion(tmp_path_factory):
  """A trained class-conditional run for the sample command. Its experiment's three sample
  evaluators are left out (their sampler compiles were most of its time): the evaluator's guided
  sampling is test_experiments' fashion_mnist_diffusion run."""
  workdir = str(tmp_path_factory.mktemp('conditional_diffusion'))
  config = digits_diffusion.get_config('classifier=,tiny=True,conditional=True')
  config.evals = {'eval': config.evals.eval}
  train_and_evaluate(config, workdir)
  return workdir


def _sample(*args: str) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, '-m', 'train_lib.sample', *args], cwd=REPO, capture_output=True, text=True,
                        timeout=300)


def test_sample_command_writes_a_class_per_column_grid(conditional_diffusion, tmp_path):
  out = tmp_path / 'grid.png'
  result = _sample(f'--workdir={conditional_diffusion}', '--num=20', '--sampler=ddim', '--steps=3', '--guidance=2.0',
                   f'--out={out}')
  assert result.returncode == 0, result.stderr[-2000:]
  with Image.open(out) as image:
    # 8x8 digits enlarged 4x with a 2-pixel gutter: 10 columns (one a class), 2 rows.
    assert image.size == (10 * 34 + 2, 2 * 34 + 2) and image.mode == 'L'


@pytest.mark.parametrize('args, message', [
    (['--sampler=euler'], "unknown sampler 'euler'; valid samplers are ['ddpm', 'ddim']"),
    (['--label=10'], '--label=10 is out of range: the model knows classes 0..9'),
    (['--sampler=ddpm', '--eta=0.5'], "eta is DDIM's"),
    (['--prompt=hello'], 'the language-model flags --prompt do not apply: this run draws images'),
    ([], '--out=FILE.png is required'),
])
def test_sample_command_refuses_bad_settings_in_one_line(conditional_diffusion, tmp_path, args, message):
  out = [] if not args else [f'--out={tmp_path / "grid.png"}']
  result = _sample(f'--workdir={conditional_diffusion}', *args, *out)
  assert result.returncode == 1
  assert message in result.stderr and result.stderr.strip().count('\n') == 0, result.stderr
  assert not (tmp_path / 'grid.png').exists()


def test_samples_evaluator_needs_a_generator():
  config = digits_cnn.get_config('tiny=True')
  config.evals.samples = {'type': 'samples', 'num': 8}
  with pytest.raises(ConfigError, match="type 'samples' needs a task that generates images"):
    train_and_evaluate(config, '/nonexistent/never_written')


def test_samples_evaluator_needs_a_classifier_with_a_head(conditional_diffusion):
  config = digits_diffusion.get_config(f'classifier={conditional_diffusion},tiny=True')
  with pytest.raises(ConfigError, match="'digits_cnn' must be an image classifier of this codebase.*trained a UNet"):
    train_and_evaluate(config, '/nonexistent/never_written')
