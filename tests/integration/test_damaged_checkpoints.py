"""A damaged newest checkpoint (truncated, emptied, changed or missing bytes) is never loaded: the
run says in one line which step is unreadable and why, sets it aside and resumes from the newest
intact one, ending as a run stopped at that step and resumed does. With none intact, one line and
a non-zero exit; a checkpoint of another model is a config error, not damage."""

import logging
import os
import re
import shutil

import pytest

from tests.conftest import run_main, small_digits_config
from train_lib import train_and_evaluate
from train_lib.errors import ConfigError
from train_lib.metric_writer import read_metrics

# A constant learning rate: a run stopped at step 40 and resumed to 80 equals one never stopped.
SETTINGS = {'checkpoint.every': 20, 'checkpoint.keep': 5, 'optimizer.schedule': 'constant',
            'optimizer.warmup_steps': 0, 'eval_every': 20}


def _config(total_steps):
  return small_digits_config(total_steps=total_steps, **SETTINGS)


def _largest_array_file(step_dir):
  files = [os.path.join(root, name) for root, _, names in os.walk(os.path.join(step_dir, 'state'))
           for name in names if '/d/' in root + '/']
  return max(files, key=os.path.getsize)


def _truncate(step_dir):
  path = _largest_array_file(step_dir)
  os.truncate(path, os.path.getsize(path) // 2)


def _empty(step_dir):
  os.truncate(_largest_array_file(step_dir), 0)


def _change_one_bit(step_dir):
  """A flipped bit in stored array data: orbax restores it without an error, as another number."""
  path = _largest_array_file(step_dir)
  data = bytearray(open(path, 'rb').read())
  data[int(len(data) * 0.6)] ^= 0x10
  open(path, 'wb').write(bytes(data))


def _remove_a_file(step_dir):
  """What an interrupted copy or upload leaves."""
  os.remove(_largest_array_file(step_dir))


def _empty_the_data_position(step_dir):
  os.truncate(os.path.join(step_dir, 'data', 'process_0-of-1.json'), 0)


def _without_perf(records):
  return [{k: v for k, v in r.items() if not k.startswith('perf/')} for r in records]


@pytest.fixture(scope='module')
def saved(tmp_path_factory):
  """A run with checkpoints at steps 20, 40 and 60; and the metrics of one stopped at 40 and resumed to 80."""
  base = str(tmp_path_factory.mktemp('base'))
  train_and_evaluate(_config(60), base)
  stopped_at_40 = str(tmp_path_factory.mktemp('stopped_at_40'))
  shutil.copytree(base, stopped_at_40, dirs_exist_ok=True)
  shutil.rmtree(os.path.join(stopped_at_40, 'checkpoints', '60'))
  train_and_evaluate(_config(80), stopped_at_40)
  return base, _without_perf(read_metrics(stopped_at_40))


@pytest.mark.parametrize('damage', [_truncate, _empty, _change_one_bit, _remove_a_file, _empty_the_data_position],
                         ids=lambda f: f.__name__.strip('_'))
def test_a_damaged_newest_checkpoint_resumes_from_the_newest_intact_one(saved, damage, tmp_path, caplog):
  base, reference = saved
  workdir = str(tmp_path / 'run')
  shutil.copytree(base, workdir)
  damage(os.path.join(workdir, 'checkpoints', '60'))
  caplog.set_level('INFO')
  train_and_evaluate(_config(80), workdir)
  warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING and 'unreadable' in r.getMessage()]
  assert len(warnings) == 1 and len(warnings[0].splitlines()) == 1, warnings
  assert re.match(r'Checkpoint at step 60 in .* is unreadable \(.+\); set aside; resuming from step 40$', warnings[0])
  if damage is _change_one_bit:
    assert 'differs from the fingerprint saved with it' in warnings[0]
  assert 'Resuming from the checkpoint at step 40' in [r.getMessage() for r in caplog.records]
  assert _without_perf(read_metrics(workdir)) == reference
  names = os.listdir(os.path.join(workdir, 'checkpoints'))
  assert {'40', '60', '80'} <= set(names)  # step 60 saved again
  assert [n for n in names if n.startswith('60.unreadable-')]


def test_with_no_intact_checkpoint_the_command_says_so_in_one_line(saved, tmp_path):
  workdir = str(tmp_path / 'run')
  shutil.copytree(saved[0], workdir)
  for step in (20, 40, 60):
    _empty(os.path.join(workdir, 'checkpoints', str(step)))
  result = run_main(f'--workdir={workdir}', '--config.total_steps=80', '--config.checkpoint.every=20')
  assert result.returncode == 1
  last = result.stderr.strip().splitlines()[-1]
  assert last.startswith('lamina: cannot resume: no intact checkpoint in ') and 'steps [20, 40, 60]' in last
  assert len([line for line in result.stderr.splitlines() if 'is unreadable' in line]) == 3
  assert 'Traceback' not in result.stderr and 'never retrieved' not in result.stderr


def test_a_checkpoint_of_another_model_is_a_config_error_and_is_kept(saved, tmp_path):
  workdir = str(tmp_path / 'run')
  shutil.copytree(saved[0], workdir)
  config = _config(80)
  config.model.hidden = (64,)
  with pytest.raises(ConfigError, match=r'holds another train state than this config makes \(opt_state/.*/mu/head/kernel: '
                                        r'\(128, 10\) saved, \(64, 10\) here\); resume with the config that wrote it'):
    train_and_evaluate(config, workdir)
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == ['20', '40', '60']
