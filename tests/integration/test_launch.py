"""Every launch script's --dry-run prints well-formed commands that carry the trainer's args."""

import os
import shlex
import subprocess

import pytest

from tests.conftest import REPO

MAIN_ARGS = ['--config=experiments/digits_cnn.py:tiny=True', '--workdir=/tmp/lamina/launch test']


def _dry_run(script, *options, main_args=tuple(MAIN_ARGS)):
  command = ['bash', os.path.join(REPO, 'launch', script), '--dry-run', *options, '--', *main_args]
  result = subprocess.run(command, cwd=REPO, capture_output=True, text=True, check=True)
  return [shlex.split(line.rstrip(' &')) for line in result.stdout.strip().splitlines()]


def _main_invocation(argv):
  i = argv.index('train_lib.main')
  assert argv[i - 1] == '-m'
  return argv[i + 1:]


def test_local_passes_args_and_gpus():
  [argv] = _dry_run('local.sh', '--gpus=0,1')
  assert argv[:2] == ['env', 'CUDA_VISIBLE_DEVICES=0,1']
  assert _main_invocation(argv) == MAIN_ARGS


def test_multiprocess_starts_one_process_per_id_on_loopback():
  lines = _dry_run('multiprocess.sh', '--processes=3', '--devices_per_process=2', '--port=23456')
  assert len(lines) == 3
  for i, argv in enumerate(lines):
    assert 'XLA_FLAGS=--xla_force_host_platform_device_count=2' in argv
    assert _main_invocation(argv) == ['--coordinator_address=127.0.0.1:23456', '--num_processes=3',
                                      f'--process_id={i}', *MAIN_ARGS]


def test_slurm_runs_one_task_per_gpu_through_srun():
  [argv] = _dry_run('slurm.sbatch')
  assert argv[0] == 'srun' and '--gpus-per-task=1' in argv
  assert _main_invocation(argv) == MAIN_ARGS
  header = open(os.path.join(REPO, 'launch', 'slurm.sbatch')).read()
  assert '#SBATCH --requeue' in header and '#SBATCH --ntasks-per-node=8' in header


TPU_OPTIONS = ['--name=lamina-t', '--zone=us-west4-a', '--type=v5litepod-16', '--project=p1', '--spot']
BUCKET_ARGS = [MAIN_ARGS[0], '--workdir=gs://runs/launch test']


def _train_args(lines):
  """The trainer's args in the ssh command that runs it on every worker."""
  [train] = [argv[-1].split('=', 1)[1] for argv in lines if 'train_lib.main' in argv[-1]]
  return shlex.split(train.split('python3 -m train_lib.main', 1)[1].split('2>&1')[0])


@pytest.mark.parametrize('queued', [False, True])
def test_tpu_vm_creates_copies_installs_runs_fetches_and_deletes(queued):
  lines = _dry_run('tpu_vm.sh', *TPU_OPTIONS, *(['--queued'] if queued else []), main_args=BUCKET_ARGS)
  assert all(argv[0] in ('gcloud', 'git') for argv in lines)
  gcloud = [argv for argv in lines if argv[0] == 'gcloud']
  assert gcloud[0][1:4] == ['storage', 'buckets', 'describe'] and gcloud[0][4] == 'gs://runs'  # before the TPU
  compute = [argv for argv in gcloud if argv[1] == 'compute']
  assert all('--zone=us-west4-a' in argv and '--project=p1' in argv for argv in compute)
  verbs = [' '.join(argv[1:5]) for argv in compute]
  create = 'compute tpus queued-resources create' if queued else 'compute tpus tpu-vm create'
  assert verbs[0].startswith(create) and '--spot' in compute[0] and '--accelerator-type=v5litepod-16' in compute[0]
  ssh = [argv for argv in compute if argv[3:5] == ['tpu-vm', 'ssh']]
  assert len(ssh) == 2 and all('--worker=all' in argv for argv in ssh)
  assert "pip install -q -e '.[tpu]'" in ssh[0][-1]
  assert _train_args(lines) == BUCKET_ARGS
  assert ['gcloud', 'storage', 'cp', './lamina-t-train.log', 'gs://runs/launch test/train.log'] in lines
  assert 'delete' in verbs[-1]


def test_tpu_vm_workdir_defaults_to_the_bucket():
  lines = _dry_run('tpu_vm.sh', *TPU_OPTIONS, '--bucket=gs://runs', main_args=MAIN_ARGS[:1])
  assert _train_args(lines) == [MAIN_ARGS[0], '--workdir=gs://runs/lamina/lamina-t']


@pytest.mark.parametrize('script, options, message', [
    ('tpu_vm.sh', ['--zone=z', '--type=t'], '--name is required'),
    ('tpu_vm.sh', ['--name=n', '--zone=z', '--type=v4-32', '--', '--workdir=/mnt/run'],
     'a v4-32 has several hosts, each with its own disk, deleted at the end; pass --workdir=gs://BUCKET/PATH'),
    ('tpu_vm.sh', ['--name=n', '--zone=z', '--type=v5litepod-8', '--', '--workdir=/mnt/run'],
     'on a TPU VM that is deleted at the end; pass --workdir=gs://BUCKET/PATH (or --keep)'),
    ('tpu_vm.sh', ['--name=n', '--zone=z', '--type=v5litepod-8', '--'], 'give --bucket=gs://BUCKET'),
    ('tpu_vm.sh', ['--name=n', '--zone=z', '--type=v5litepod-8', '--bucket=runs', '--'], 'is not a gs:// bucket'),
    ('local.sh', ['--gpu=1'], "unknown option '--gpu=1'"),
    ('multiprocess.sh', ['--procs=2'], "unknown option '--procs=2'"),
])
def test_bad_options_are_one_line(script, options, message):
  trailing = [] if '--' in options else ['--']
  result = subprocess.run(['bash', os.path.join(REPO, 'launch', script), '--dry-run', *options, *trailing],
                          cwd=REPO, capture_output=True, text=True)
  assert result.returncode == 2
  assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
