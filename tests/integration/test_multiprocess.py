"""Two processes x two CPU devices on 127.0.0.1, through launch/multiprocess.sh."""

import os
import signal
import time

import numpy as np
import pytest

from tests.conftest import launch_processes, run_main
from train_lib.metric_writer import read_metrics

# A constant learning rate, so a run may be extended by raising total_steps.
ARGS = ['--config.log_every=5', '--config.eval_every=10', '--config.checkpoint.every=10',
        '--config.optimizer.schedule=constant', '--config.optimizer.warmup_steps=0']


def _launch(workdir, port, *args, wait=True):
  return launch_processes(f'--workdir={workdir}', *ARGS, *args, port=port, wait=wait)


def _children(pid: int) -> list[str]:
  """Process ids whose parent is `pid`, from /proc (no procps needed)."""
  found = []
  for entry in filter(str.isdigit, os.listdir('/proc')):
    try:
      with open(f'/proc/{entry}/stat') as f:
        stat = f.read()
    except OSError:
      continue
    if int(stat.rsplit(')', 1)[1].split()[1]) == pid:
      found.append(entry)
  return sorted(found, key=int)


def _compare(a, b):
  assert [r['step'] for r in a] == [r['step'] for r in b]
  for x, y in zip(a, b):
    keys = [k for k in x if not k.startswith('perf/')]
    assert keys == [k for k in y if not k.startswith('perf/')]
    np.testing.assert_allclose([x[k] for k in keys], [y[k] for k in keys], rtol=1e-5)


@pytest.fixture(scope='module')
def two_process_run(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('two_processes'))
  _launch(workdir, 12391, '--config.total_steps=20')
  return workdir


def test_two_processes_equal_one_process_with_as_many_devices(two_process_run, tmp_path):
  result = run_main(f'--workdir={tmp_path}', *ARGS, '--config.total_steps=20',
                    env={'JAX_PLATFORMS': 'cpu', 'XLA_FLAGS': '--xla_force_host_platform_device_count=4'})
  assert result.returncode == 0, result.stderr[-3000:]
  _compare(read_metrics(two_process_run), read_metrics(str(tmp_path)))
  data_files = os.listdir(os.path.join(two_process_run, 'checkpoints', '20', 'data'))
  assert {'process_0-of-2.json', 'process_1-of-2.json'} <= set(data_files)


def test_two_process_checkpoint_continues_in_one_process_on_one_device(two_process_run, tmp_path):
  extended = ['--config.total_steps=30', '--config.mesh.data=1']
  result = run_main(f'--workdir={two_process_run}', *ARGS, *extended)
  assert result.returncode == 0, result.stderr[-3000:]
  assert 'Resuming from the checkpoint at step 20' in result.stderr
  reference = run_main(f'--workdir={tmp_path}', *ARGS, *extended)
  assert reference.returncode == 0, reference.stderr[-3000:]
  _compare(read_metrics(two_process_run), read_metrics(str(tmp_path)))


@pytest.mark.slow
def test_sigterm_to_one_process_stops_both_with_a_checkpoint(tmp_path):
  workdir = str(tmp_path)
  launcher = _launch(workdir, 12392, '--config.total_steps=5000', '--config.log_every=100',
                     '--config.eval_every=0', '--config.checkpoint.every=100', wait=False)
  deadline = time.time() + 300
  while not os.path.isdir(os.path.join(workdir, 'checkpoints', '100')):
    assert launcher.poll() is None and time.time() < deadline, launcher.stdout.read()[-3000:]
    time.sleep(0.1)
  children = _children(launcher.pid)
  assert len(children) == 2
  os.kill(int(children[1]), signal.SIGTERM)  # process 1 only
  output, _ = launcher.communicate(timeout=120)
  assert launcher.returncode == 75, output[-3000:]
  saved = max(int(s) for s in os.listdir(os.path.join(workdir, 'checkpoints')) if s.isdigit())
  assert 100 <= saved < 5000
  assert len(os.listdir(os.path.join(workdir, 'checkpoints', str(saved), 'data'))) >= 2  # both processes saved
  # Later flags win: finish 10 steps after the preemption instead of at step 5000.
  resumed = _launch(workdir, 12393, f'--config.total_steps={saved + 10}', '--config.eval_every=0')
  assert f'Resuming from the checkpoint at step {saved}' in resumed
