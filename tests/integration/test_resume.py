"""kill -9 and SIGTERM mid-run, then the same command: the run continues and ends as if never stopped."""

import os
import signal
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO, run_main
from train_lib.metric_writer import read_metrics

ARGS = ['--config.total_steps=300', '--config.log_every=20', '--config.eval_every=100',
        '--config.checkpoint.every=20', '--config.checkpoint.keep=2']


def _start(workdir):
  return subprocess.Popen([sys.executable, '-m', 'train_lib.main', f'--workdir={workdir}', *ARGS], cwd=REPO,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def _wait_for_checkpoint(process, workdir, step, timeout=240):
  path = os.path.join(workdir, 'checkpoints', str(step))
  deadline = time.time() + timeout
  while not os.path.isdir(path):
    assert process.poll() is None, process.stderr.read()
    assert time.time() < deadline, 'no checkpoint appeared'
    time.sleep(0.05)


def _without_perf(records):
  return [{k: v for k, v in r.items() if not k.startswith('perf/')} for r in records]


@pytest.fixture(scope='module')
def uninterrupted(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('uninterrupted'))
  result = run_main(f'--workdir={workdir}', *ARGS)
  assert result.returncode == 0, result.stderr[-2000:]
  return read_metrics(workdir)


def test_kill_9_then_rerun_equals_uninterrupted(tmp_path, uninterrupted):
  workdir = str(tmp_path)
  process = _start(workdir)
  _wait_for_checkpoint(process, workdir, 100)
  process.kill()
  process.wait()
  assert sorted(int(s) for s in os.listdir(os.path.join(workdir, 'checkpoints')) if s.isdigit())[-1] < 300
  result = run_main(f'--workdir={workdir}', *ARGS)
  assert result.returncode == 0, result.stderr[-2000:]
  assert 'Resuming from the checkpoint at step' in result.stderr
  assert _without_perf(read_metrics(workdir)) == _without_perf(uninterrupted)


def test_sigterm_saves_exits_75_and_resumes(tmp_path, uninterrupted):
  workdir = str(tmp_path)
  process = _start(workdir)
  _wait_for_checkpoint(process, workdir, 100)
  process.send_signal(signal.SIGTERM)
  assert process.wait(timeout=60) == 75
  saved = max(int(s) for s in os.listdir(os.path.join(workdir, 'checkpoints')) if s.isdigit())
  assert saved >= 100
  result = run_main(f'--workdir={workdir}', *ARGS)
  assert result.returncode == 0, result.stderr[-2000:]
  assert f'Resuming from the checkpoint at step {saved}' in result.stderr
  # Train windows that began before the preemption average fewer steps; the rest match.
  first_whole_window = (saved // 20 + 1) * 20 + 20 if saved % 20 else saved + 20
  resumed = [r for r in _without_perf(read_metrics(workdir)) if r['step'] >= first_whole_window]
  expected = [r for r in _without_perf(uninterrupted) if r['step'] >= first_whole_window]
  assert resumed == expected
