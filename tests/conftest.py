"""Shared fixtures and the suite's layers.

tests/unit/ compiles small functions and trains nothing (marker `unit`, under a minute on 2
cores); tests/integration/ runs tiny trainings, command lines, several processes, and the CPU
kernels' builds and numerics (marker `integration`). Markers
`needs_gxx` and `needs_torch` name what builds the CPU kernels or runs PyTorch; where that
tool is missing those tests are skipped, saying why.
"""

import importlib.util
import os
import shutil
import subprocess
import sys

import pytest

import kernels
from experiments import digits_cnn
from tests import storage_emulator
from train_lib import compilation_cache

compilation_cache.enable()  # as the command line does; before any test compiles

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


_MISSING = {
    'needs_gxx': (lambda: shutil.which(os.environ.get('CXX', 'g++')) is None,
                  'no C++ compiler to build the CPU kernels (apt-get install g++)'),
    'needs_torch': (lambda: importlib.util.find_spec('torch') is None,
                    "no torch for the peer benchmark (pip install -e '.[bench]')"),
}


def pytest_collection_modifyitems(items):
  """Marks each test with its layer (its folder) and skips what a missing tool cannot run; slow
  runs first (their files first under --dist=loadfile), so no worker ends the suite alone on one."""
  for item in items:
    layer = os.path.basename(os.path.dirname(str(item.fspath)))
    if layer in ('unit', 'integration'):
      item.add_marker(layer)
    for marker, (missing, why) in _MISSING.items():
      if item.get_closest_marker(marker) and missing():
        item.add_marker(pytest.mark.skip(reason=why))
  items.sort(key=lambda item: item.get_closest_marker('slow') is None)  # stable: files keep their order


def small_digits_config(**overrides):
  """The default experiment cut to a few seconds; overrides use dotted keys."""
  config = digits_cnn.get_config()
  config.total_steps = 40
  config.log_every = 10
  config.eval_every = 20
  config.checkpoint.every = 20
  config.optimizer.warmup_steps = 5
  for key, value in overrides.items():
    target = config
    *path, leaf = key.split('.')
    for part in path:
      target = target[part]
    target[leaf] = value
  return config


def data_config(data_dir: str, name: str = 'digits', **overrides):
  """The default data config for dataset `name` prepared under `data_dir`, with `overrides`."""
  from train_lib.config_defaults import base_config
  cfg = base_config().data
  cfg.update({'name': name, 'data_dir': data_dir, **overrides})
  return cfg


def run_main(*args: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
  """`python -m train_lib.main ARGS` in a fresh process."""
  return subprocess.run([sys.executable, '-m', 'train_lib.main', *args], cwd=REPO, capture_output=True,
                        text=True, timeout=timeout, env={**os.environ, **(env or {})})


def launch_processes(*main_args: str, port: int, env: dict | None = None,
                     wait: bool = True) -> str | subprocess.Popen:
  """launch/multiprocess.sh: two processes of two CPU devices each, joined on 127.0.0.1:`port`.
  With `wait`, its output (the run must succeed); otherwise the launcher's process."""
  command = [os.path.join(REPO, 'launch', 'multiprocess.sh'), '--processes=2', '--devices_per_process=2',
             f'--port={port}', '--', *main_args]
  # The interpreter running the tests, whether or not its venv is on PATH.
  process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             start_new_session=True, env={**os.environ, 'PYTHON': sys.executable, **(env or {})})
  if not wait:
    return process
  output, _ = process.communicate(timeout=600)
  assert process.returncode == 0, output[-3000:]
  return output


@pytest.fixture(scope='session')
def gcs():
  """A GCS emulator for this worker, its environment set here and returned for subprocesses."""
  with storage_emulator.running() as env:
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
      yield env
    finally:
      for key, value in saved.items():
        if value is None:
          os.environ.pop(key, None)
        else:
          os.environ[key] = value


@pytest.fixture
def auto_kernels():
  """Traces inside the test take kernels.use('auto')'s fast paths, as the trainer's do by default."""
  with kernels.use('auto'):
    yield


@pytest.fixture(scope='session')
def data_dir(tmp_path_factory):
  """One tfds data_dir per test worker: each offline dataset is prepared there once."""
  return str(tmp_path_factory.mktemp('tfds'))


@pytest.fixture
def workdir(tmp_path):
  return str(tmp_path / 'work')
