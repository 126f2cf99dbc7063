"""The persistent compilation cache: lamina's default, JAX's settings first, and reruns that load."""

import os

import jax
import pytest

from tests.conftest import run_main
from train_lib import compilation_cache
from train_lib.metric_writer import read_metrics

_SETTINGS = ('jax_enable_compilation_cache', 'jax_compilation_cache_dir', 'jax_compilation_cache_max_size')


@pytest.fixture
def jax_settings():
  """Restores JAX's cache settings afterwards (this process's cache itself was set up at start)."""
  saved = {name: getattr(jax.config, name) for name in _SETTINGS}
  yield
  for name, value in saved.items():
    jax.config.update(name, value)


def test_default_is_lamina_bounded_cache(jax_settings):
  jax.config.update('jax_compilation_cache_dir', None)
  jax.config.update('jax_compilation_cache_max_size', -1)
  assert compilation_cache.enable() == compilation_cache.DEFAULT_DIR
  assert jax.config.jax_compilation_cache_max_size == compilation_cache.MAX_BYTES


def test_jax_settings_win(jax_settings, tmp_path):
  jax.config.update('jax_compilation_cache_dir', str(tmp_path))
  jax.config.update('jax_compilation_cache_max_size', -1)
  assert compilation_cache.enable() == str(tmp_path)
  assert jax.config.jax_compilation_cache_max_size == -1  # a directory the user chose keeps the user's bound
  jax.config.update('jax_enable_compilation_cache', False)
  assert compilation_cache.enable() is None


@pytest.mark.needs_gxx
def test_rerun_loads_the_onednn_resnet_and_trains_identically(tmp_path):
  # The oneDNN convolutions are FFI custom calls: the riskiest program to save and load.
  cache = str(tmp_path / 'cache')
  args = ['--config=experiments/fashion_mnist_resnet.py:tiny=True', '--config.model.width=8',
          '--config.model.stage_sizes=(1, 1)']
  runs = []
  for name in ('compiled', 'loaded'):
    result = run_main(*args, f'--workdir={tmp_path / name}',
                      env={'JAX_COMPILATION_CACHE_DIR': cache, 'JAX_LOG_COMPILES': '1'})
    assert result.returncode == 0, result.stderr[-3000:]
    runs.append(result.stderr)
  assert 'convolutions: oneDNN' in runs[0]  # kernels=auto, one CPU device
  assert any(f.startswith('jit_train_call-') for f in os.listdir(cache))
  assert "cache hit for 'jit_train_call'" not in runs[0] and "cache hit for 'jit_train_call'" in runs[1]

  def losses(name):
    records = read_metrics(str(tmp_path / name))
    return [{k: v for k, v in r.items() if 'loss' in k or 'accuracy' in k} for r in records]
  assert losses('compiled')[-1]['eval/loss'] > 0
  assert losses('loaded') == losses('compiled')
