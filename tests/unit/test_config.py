"""Experiment args, config checks, the mesh from config, and the metrics file."""

import json
import os
import re

import jax
import pytest

from experiments import common
from train_lib import config_check, mesh, precision, workdir
from train_lib.config_defaults import base_config
from train_lib.errors import ConfigError
from train_lib.metric_writer import MetricWriter, read_metrics


def test_parse_arg_types_and_bare_flags():
  arg = common.parse_arg('model=mlp,seed=3,lr=0.5,tiny', model='cnn', seed=0, lr=1.0, tiny=False)
  assert (arg.model, arg.seed, arg.lr, arg.tiny) == ('mlp', 3, 0.5, True)
  assert common.parse_arg(None, seed=0).seed == 0


@pytest.mark.parametrize('text, message', [
    ('sed=1', "unknown config arg 'sed'; valid args are ['seed']"),
    ('seed=1.5', "config arg 'seed' must be int, got '1.5'"),
    ('seed=x', "config arg 'seed' must be int"),
])
def test_parse_arg_errors(text, message):
  with pytest.raises(ConfigError, match=message.replace('[', r'\[').replace(']', r'\]')):
    common.parse_arg(text, seed=0)


def test_tiny_shrinks_every_knob():
  config = base_config()
  config.steps_per_call = 2
  common.shrink_for_tiny(config)
  assert config.total_steps == 12 and config.log_every == 2 and config.checkpoint.every == 0
  config_check.validate(config)


def test_base_config_is_valid():
  config_check.validate(base_config())


def test_batch_layout_errors():
  config = base_config()
  config.batch_size = 12
  with pytest.raises(ConfigError, match='batch_size=12 is not divisible by the 8 data-parallel devices'):
    config_check.validate_batch_layout(config, data_parallel=8, process_count=1)
  config.batch_size, config.grad_accum_steps = 16, 4
  with pytest.raises(ConfigError, match=r'per-device batch \(2\) is not divisible by grad_accum_steps=4'):
    config_check.validate_batch_layout(config, data_parallel=8, process_count=1)


def _mesh_cfg(**sizes):
  cfg = base_config().mesh
  cfg.update(sizes)
  return cfg


def test_mesh_axis_sizes_fill_and_errors():
  assert mesh.axis_sizes(_mesh_cfg(), 8) == (8, 1, 1, 1)
  assert mesh.axis_sizes(_mesh_cfg(data=2, fsdp=-1, tensor=2), 8) == (2, 2, 2, 1)
  with pytest.raises(ConfigError, match='at most one axis may be -1'):
    mesh.axis_sizes(_mesh_cfg(fsdp=-1), 8)
  with pytest.raises(ConfigError, match='needs 16 devices but 8 exist'):
    mesh.axis_sizes(_mesh_cfg(data=16), 8)
  with pytest.raises(ConfigError, match='does not divide the 8 available'):
    mesh.axis_sizes(_mesh_cfg(tensor=3), 8)


def test_mesh_and_batch_sharding_on_this_host():
  m = mesh.make_mesh(_mesh_cfg())
  assert m.axis_names == mesh.MESH_AXES
  assert mesh.data_parallel_size(m, mesh.DEFAULT_RULES) == len(jax.devices())
  assert mesh.batch_sharding(m, mesh.DEFAULT_RULES, leading_dims=1).spec == jax.sharding.PartitionSpec(
      None, ('data', 'fsdp', 'expert'))


def test_metric_writer_truncates_records_past_the_resume_step(tmp_path):
  workdir = str(tmp_path)
  writer = MetricWriter(workdir, enabled=True, resume_step=0)
  for step in (10, 20, 30):
    writer.write(step, {'train/loss': float(step)})
  writer.close()
  writer = MetricWriter(workdir, enabled=True, resume_step=20)
  writer.write(30, {'train/loss': 3.0})
  writer.close()
  assert read_metrics(workdir) == [{'step': 10, 'train/loss': 10.0}, {'step': 20, 'train/loss': 20.0},
                                   {'step': 30, 'train/loss': 3.0}]
  with open(os.path.join(workdir, 'metrics.jsonl')) as f:
    assert all(json.loads(line) for line in f)


def test_metric_writer_disabled_writes_nothing(tmp_path):
  writer = MetricWriter(str(tmp_path), enabled=False, resume_step=0)
  writer.write(1, {'a': 1.0})
  writer.close()
  assert os.listdir(tmp_path) == []


def test_readme_has_two_setup_commands_and_ci_runs_the_second():
  import subprocess
  import sys
  from tests.conftest import REPO
  ci = open(os.path.join(REPO, '.ci', 'run')).read()
  assert 'readme_commands.py test' in ci
  commands = [subprocess.run([sys.executable, os.path.join(REPO, '.ci', 'readme_commands.py'), which],
                             capture_output=True, text=True, check=True).stdout.strip() for which in ('run', 'test')]
  assert 'python -m train_lib.main' in commands[0]
  assert 'pytest' in commands[1] and 'dataset-fashion-mnist' in commands[1]
  assert len(open(os.path.join(REPO, 'README.md')).read().splitlines()) <= 200  # for users; numbers go to docs/


def test_epochs_become_a_whole_number_of_device_calls():
  from train_lib.trainer import resolve_total_steps
  config = base_config()
  config.batch_size, config.num_epochs, config.steps_per_call = 100, 1.5, 4
  assert resolve_total_steps(config, 1000) == 16  # 15 steps cover 1.5 epochs; calls hold 4
  config.num_epochs, config.total_steps = None, 10
  with pytest.raises(ConfigError, match='total_steps=10 must be a multiple of steps_per_call=4'):
    resolve_total_steps(config, 1000)


def test_auto_compute_dtype_follows_the_machines_bfloat16_support(monkeypatch):
  for fast, want in ((True, 'bfloat16'), (False, 'float32')):
    monkeypatch.setattr(precision, 'fast_bfloat16', lambda fast=fast: fast)
    assert precision.resolve('auto') == want
  assert precision.resolve('float32') == 'float32'
  with pytest.raises(ConfigError, match=r"unknown dtype 'float8'.*'auto'"):
    precision.resolve('float8')
  cpu_flags = open('/proc/cpuinfo').read()
  monkeypatch.undo()
  precision.fast_bfloat16.cache_clear()
  assert precision.fast_bfloat16() == (jax.default_backend() != 'cpu' or 'avx512_bf16' in cpu_flags
                                       or 'amx_bf16' in cpu_flags)


@pytest.mark.parametrize('location, message', [
    ('s3://bucket/run', 'orbax-checkpoint writes checkpoints to local paths and gs:// only'),
    ('hdfs://cluster/run', 'unknown storage scheme; use a local path or gs://BUCKET/PATH'),
])
def test_workdirs_lamina_cannot_checkpoint_to_are_one_line(location, message):
  with pytest.raises(ConfigError, match=f'workdir {location}: {re.escape(message)}'):
    workdir.resolve(location)


def test_local_workdirs_resolve_absolute_and_buckets_as_they_are(monkeypatch, tmp_path):
  monkeypatch.chdir(tmp_path)
  assert str(workdir.resolve('runs/a')) == str(tmp_path / 'runs' / 'a')
  assert str(workdir.resolve('gs://bucket/runs/a')) == 'gs://bucket/runs/a'
