"""train_lib.main re-executes itself under tcmalloc where the machine has it."""

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO
from train_lib import allocator


def test_environment_preloads_tcmalloc_once(monkeypatch):
  monkeypatch.setattr(allocator, 'find_tcmalloc', lambda: '/lib/libtcmalloc_minimal.so.4')
  env = allocator.environment({'LD_PRELOAD': '/lib/other.so'})
  assert env['LD_PRELOAD'] == '/lib/libtcmalloc_minimal.so.4:/lib/other.so'
  assert allocator.environment(env) == env  # already preloaded: unchanged
  assert 'LD_PRELOAD' not in allocator.environment({allocator.OPT_OUT: '1'})


def test_environment_without_tcmalloc_is_unchanged(monkeypatch):
  monkeypatch.setattr(allocator, 'find_tcmalloc', lambda: None)
  assert allocator.environment({'A': 'b'}) == {'A': 'b'}


@pytest.mark.parametrize('opt_out', [False, True])
def test_main_runs_under_tcmalloc_where_installed_unless_opted_out(tmp_path, opt_out):
  # CI installs libtcmalloc-minimal4; elsewhere the run must still train, under the system allocator.
  expect_tcmalloc = not opt_out and allocator.find_tcmalloc() is not None
  env = {k: v for k, v in os.environ.items() if k not in ('LD_PRELOAD', allocator.OPT_OUT)}
  if opt_out:
    env[allocator.OPT_OUT] = '1'
  result = subprocess.run(
      [sys.executable, '-m', 'train_lib.main', '--config=experiments/digits_cnn.py:tiny=True',
       f'--workdir={tmp_path}'], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  assert ('Memory allocator: tcmalloc' in result.stderr) == expect_tcmalloc
  assert ('Memory allocator: the system one' in result.stderr) != expect_tcmalloc
  assert os.path.exists(tmp_path / 'metrics.jsonl')
