"""gs:// workdirs against a local GCS emulator: every file of a run lands in the bucket, a second
command resumes from it, a run killed with SIGKILL resumes from the bucket and ends as if never
stopped, two processes write one checkpoint that one process restores, and a language-model run
in the bucket samples from the command line. A missing bucket, missing credentials, no permission
and an unreachable service are each one line before anything compiles."""

import http.server
import json
import os
import threading
import subprocess
import sys
import time
import uuid

import pytest
from etils import epath
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.conftest import REPO, launch_processes, run_main
from tests.storage_emulator import BUCKET, client_env, free_port
from train_lib import storage
from train_lib.metric_writer import read_metrics

ARGS = ['--config.total_steps=300', '--config.log_every=20', '--config.eval_every=100',
        '--config.checkpoint.every=50', '--config.checkpoint.keep=2']


def _bucket_workdir() -> str:
  return f'gs://{BUCKET}/{uuid.uuid4().hex[:12]}'


def _without_perf(records):
  return [{k: v for k, v in r.items() if not k.startswith('perf/')} for r in records]


def _fresh(path: epath.Path) -> epath.Path:
  """`path`, with this process's cached listings of the bucket dropped: other processes write there."""
  storage.forget_listings(path)
  return path


def _steps(workdir: str) -> list[int]:
  _fresh(epath.Path(workdir))
  return sorted(int(p.name) for p in epath.Path(workdir, 'checkpoints').iterdir() if p.name.isdigit())


def test_a_run_writes_its_files_to_the_bucket_and_resumes_from_it(gcs, tmp_path):
  workdir = _bucket_workdir()
  args = ['--config.total_steps=40', '--config.checkpoint.every=20', '--config.log_every=10',
          '--config.profile.first_step=10', '--config.profile.num_steps=2']
  first = run_main(f'--workdir={workdir}', *args, env=gcs)
  assert first.returncode == 0, first.stderr[-3000:]
  assert not os.path.exists(os.path.join(REPO, 'gs:'))  # not a local folder named 'gs:'
  run = epath.Path(workdir)
  assert {'config.json', 'metrics.jsonl', 'checkpoints', 'tensorboard', 'profile', 'peak_flops.json'} <= {
      p.name for p in run.iterdir()}
  assert _steps(workdir) == [20, 40]
  assert not list(run.glob('.write_check*'))
  assert [r['step'] for r in read_metrics(workdir)] == [10, 20, 30, 40]
  assert list(run.glob('profile/plugins/profile/*/*.xplane.pb'))
  events = list((run / 'tensorboard').iterdir())
  assert events and all(e.name.startswith('events.out.tfevents') for e in events)
  for event in events:  # TensorBoard reads them back once downloaded
    (tmp_path / event.name).write_bytes(event.read_bytes())
  accumulator = EventAccumulator(str(tmp_path)).Reload()
  assert [e.step for e in accumulator.Scalars('train/loss')] == [10, 20, 30, 40]

  second = run_main(f'--workdir={workdir}', *args[:-2], '--config.total_steps=60', env=gcs)
  assert second.returncode == 0, second.stderr[-3000:]
  assert 'Resuming from the checkpoint at step 40' in second.stderr
  assert [r['step'] for r in read_metrics(workdir)] == [10, 20, 30, 40, 50, 60]
  assert _steps(workdir) == [20, 40, 60]

  again = run_main(f'--workdir={workdir}', *args[:-2], '--config.total_steps=60', env=gcs)
  assert again.returncode == 0, again.stderr[-3000:]
  assert f'The run in {workdir} is already complete at step 60' in again.stderr


@pytest.mark.slow
def test_sigkill_then_rerun_resumes_from_the_bucket_and_equals_an_uninterrupted_run(gcs, tmp_path):
  uninterrupted = run_main(f'--workdir={tmp_path / "local"}', *ARGS)
  assert uninterrupted.returncode == 0, uninterrupted.stderr[-2000:]
  workdir = _bucket_workdir()
  log = tmp_path / 'killed.log'  # a file, not a pipe nobody reads while it runs
  process = subprocess.Popen([sys.executable, '-m', 'train_lib.main', f'--workdir={workdir}', *ARGS], cwd=REPO,
                             stdout=subprocess.DEVNULL, stderr=log.open('w'), env={**os.environ, **gcs})
  committed = epath.Path(workdir, 'checkpoints', '100', 'commit_success.txt')
  deadline = time.time() + 240
  while not _fresh(committed).exists():
    assert process.poll() is None, log.read_text()[-3000:]
    assert time.time() < deadline, 'no checkpoint appeared in the bucket'
    time.sleep(0.05)
  process.kill()
  process.wait()
  assert _steps(workdir)[-1] < 300
  resumed = run_main(f'--workdir={workdir}', *ARGS, env=gcs)
  assert resumed.returncode == 0, resumed.stderr[-2000:]
  assert 'Resuming from the checkpoint at step' in resumed.stderr
  assert _without_perf(read_metrics(workdir)) == _without_perf(read_metrics(tmp_path / 'local'))


@pytest.mark.slow
def test_two_processes_write_one_checkpoint_in_the_bucket_that_one_process_restores(gcs):
  workdir = _bucket_workdir()
  args = ['--config.log_every=5', '--config.checkpoint.every=10', '--config.optimizer.schedule=constant']
  launch_processes(f'--workdir={workdir}', *args, '--config.total_steps=10', port=12394, env=gcs)
  data = {p.name for p in epath.Path(workdir, 'checkpoints', '10', 'data').iterdir()}
  assert {'process_0-of-2.json', 'process_1-of-2.json'} <= data
  one = run_main(f'--workdir={workdir}', *args, '--config.total_steps=20', '--config.mesh.data=1', env=gcs)
  assert one.returncode == 0, one.stderr[-3000:]
  assert 'Resuming from the checkpoint at step 10' in one.stderr
  assert [r['step'] for r in read_metrics(workdir)] == [5, 10, 15, 20]


@pytest.mark.slow
def test_sampling_reads_a_language_model_run_in_the_bucket(gcs):
  workdir = _bucket_workdir()
  trained = run_main(f'--workdir={workdir}', '--config=experiments/shakespeare_gpt.py:tiny=True',
                     '--config.total_steps=20', env=gcs)
  assert trained.returncode == 0, trained.stderr[-3000:]
  sample = subprocess.run([sys.executable, '-m', 'train_lib.sample', f'--workdir={workdir}', '--prompt=ROMEO:',
                           '--max_new_tokens=20'], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**os.environ, **gcs})
  assert sample.returncode == 0, sample.stderr[-2000:]
  assert sample.stdout.startswith('ROMEO:') and len(sample.stdout) > len('ROMEO:') + 10


def _refused_before_compiling(result, reason: str) -> None:
  assert result.returncode == 1, result.stderr[-2000:]
  last = result.stderr.strip().splitlines()[-1]
  assert last.startswith('lamina: config error: workdir gs://') and reason in last, last
  assert 'model FLOPs per step' not in result.stderr  # logged once the train step is compiled


def test_a_missing_bucket_is_one_line_before_compiling(gcs):
  result = run_main('--workdir=gs://no-such-bucket/run', '--config.total_steps=10', env=gcs)
  _refused_before_compiling(result, 'bucket gs://no-such-bucket does not exist; create it')


class _CloudStorageDenying(http.server.BaseHTTPRequestHandler):
  """Answers every request as Cloud Storage answers a caller without credentials (401) or without
  the permission to write (403); the emulator lets everyone do everything."""

  code = 401

  def _deny(self):
    who = 'Anonymous caller' if self.code == 401 else 'runner@project.iam.gserviceaccount.com'
    body = json.dumps({'error': {'code': self.code, 'message': f'{who} does not have storage.objects.create '
                                 'access to the Google Cloud Storage object.'}}).encode()
    self.send_response(self.code)
    self.send_header('Content-Type', 'application/json')
    self.send_header('Content-Length', str(len(body)))
    self.end_headers()
    self.wfile.write(body)

  do_GET = do_POST = do_PUT = do_DELETE = _deny

  def log_message(self, *args):
    del args


@pytest.mark.parametrize('code', [401, 403], ids=['no_credentials', 'no_permission'])
def test_missing_credentials_or_permission_is_one_line_before_compiling(code):
  handler = type('Denying', (_CloudStorageDenying,), {'code': code})
  server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
  threading.Thread(target=server.serve_forever, daemon=True).start()
  try:
    result = run_main(f'--workdir=gs://{BUCKET}/run', '--config.total_steps=10',
                      env=client_env(f'http://127.0.0.1:{server.server_port}'))
  finally:
    server.shutdown()
  _refused_before_compiling(result, f'no permission to write to gs://{BUCKET} ')
  assert 'gcloud auth application-default login' in result.stderr.strip().splitlines()[-1]


@pytest.mark.slow
def test_an_unreachable_storage_service_is_one_line_before_compiling():
  nothing_listens = f'http://127.0.0.1:{free_port()}'
  result = run_main(f'--workdir=gs://{BUCKET}/run', '--config.total_steps=10', env=client_env(nothing_listens))
  _refused_before_compiling(result, 'cannot reach the storage service')
  assert 'Traceback' not in result.stderr
