"""Shared fixtures: small, fast variants of the default experiment."""

import os
import subprocess
import sys

import pytest

import kernels
from experiments import digits_cnn
from train_lib import compilation_cache

compilation_cache.enable()  # as the command line does; before any test compiles

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def pytest_collection_modifyitems(items):
  """Slow runs first (their files first under --dist=loadfile), so no worker ends the suite alone on one."""
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


def run_main(*args: str, env: dict | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
  """`python -m train_lib.main ARGS` in a fresh process."""
  return subprocess.run([sys.executable, '-m', 'train_lib.main', *args], cwd=REPO, capture_output=True,
                        text=True, timeout=timeout, env={**os.environ, **(env or {})})


@pytest.fixture
def auto_kernels():
  """Traces inside the test take kernels.use('auto')'s fast paths, as the trainer's do by default."""
  with kernels.use('auto'):
    yield


@pytest.fixture
def workdir(tmp_path):
  return str(tmp_path / 'work')
