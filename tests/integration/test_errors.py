"""Bad input: one clear line, a non-zero exit, before any compile, nothing half-written."""

import os
import re

import pytest

from tests.conftest import run_main, small_digits_config
from train_lib import train_and_evaluate
from train_lib.errors import ConfigError

CASES = {
    'unknown model': ({'model.name': 'resnet9000'}, r"unknown model 'resnet9000'.*cnn"),
    'unknown model field': ({'model.widht': 3}, r"no field 'widht'.*features"),
    'unknown dataset': ({'data.name': 'digitz'}, r'digitz.*digits'),
    'unprepared tfds dataset': ({'data.name': 'cifar10'}, r'cifar10.*tfds build'),
    'unknown task': ({'task.name': 'regression'}, r"unknown task 'regression'.*classification"),
    'unknown optimizer': ({'optimizer.name': 'adamm'}, r"unknown 'adamm'.*adamw"),
    'unknown schedule': ({'optimizer.schedule': 'exp'}, r"unknown 'exp'.*cosine"),
    'unknown pp op': ({'data.pp_train': 'value_range(0, 1)|blur'}, r'blur.*value_range'),
    'negative batch size': ({'batch_size': -8}, r'batch_size must be > 0, got -8'),
    'zero steps': ({'total_steps': 0}, r'total_steps must be > 0'),
    'micro-batches do not divide': ({'grad_accum_steps': 5}, r'not divisible by grad_accum_steps=5'),
    'log not multiple of K': ({'steps_per_call': 3}, r'must be a multiple of steps_per_call=3'),
    'unknown dtype': ({'compute_dtype': 'float8'}, r"unknown dtype 'float8'.*bfloat16"),
    'mesh asks for devices that do not exist': ({'mesh.data': 4}, r'needs 4 devices but 1 exist'),
    'unknown task key': ({'task.label_smoothin': 0.1}, r"unknown key.*label_smoothin.*label_smoothing"),
    'bad compiler option value': ({'compiler_options.xla_cpu_experimental_ynn_fusion_type': 'dot'},
                                  r"compiler_options: XLA rejected.*'dot'.*LIBRARY_FUSION_TYPE_DOT"),
    'unknown compiler option': ({'compiler_options.xla_cpu_no_such_option': True},
                                r'compiler_options: XLA rejected.*xla_cpu_no_such_option'),
}


@pytest.mark.parametrize('case', sorted(CASES))
def test_bad_config_is_one_line_before_anything_is_written(case, workdir):
  overrides, message = CASES[case]
  config = small_digits_config()
  config.unlock()
  for key, value in overrides.items():
    section, _, leaf = key.rpartition('.')
    target = config[section] if section else config
    target[leaf] = value
  with pytest.raises(ConfigError, match=message) as error:
    train_and_evaluate(config, workdir)
  assert '\n' not in str(error.value)
  assert not os.path.exists(workdir)  # checked before anything was created


def test_unknown_top_level_key(workdir):
  config = small_digits_config()
  config.unlock()
  config.batchsize = 3
  with pytest.raises(ConfigError, match=r"unknown config key 'batchsize'.*batch_size"):
    train_and_evaluate(config, workdir)


def test_unwritable_workdir():
  with pytest.raises(ConfigError, match=r'workdir /etc/hostname/run is not writable'):
    train_and_evaluate(small_digits_config(), '/etc/hostname/run')


def _last_line(result):
  lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
  return lines[-1]


@pytest.mark.parametrize('args, message', [
    (['--config.model.name=resnet9000'], "lamina: config error: model: unknown model 'resnet9000'"),
    (['--config=experiments/digits_cnn.py:tiny=maybe'], "config arg 'tiny' must be true or false"),
    (['--config=experiments/digits_cnn.py:epochs=3'], "unknown config arg 'epochs'; valid args are ['tiny']"),
    (['--config.batch_size=abc'], 'batch_size'),
    (['--config.no_such_key=1'], "unknown config key 'no_such_key' in a --config override"),
    (['--config.optimizer.nme=adam'], "did you mean 'name'?"),
    (['--config=experiments/nope.py'], 'cannot load --config'),
])
def test_command_line_errors_exit_nonzero_with_one_line(args, message, workdir):
  result = run_main(f'--workdir={workdir}', *args)
  assert result.returncode != 0
  assert message in _last_line(result), result.stderr[-3000:]
  assert not os.path.exists(workdir)


def test_batch_not_divisible_by_devices(workdir):
  result = run_main(f'--workdir={workdir}', '--config.batch_size=12',
                    env={'XLA_FLAGS': '--xla_force_host_platform_device_count=8'})
  assert result.returncode != 0
  assert 'batch_size=12 is not divisible by the 8 data-parallel devices' in _last_line(result)


def test_mesh_axis_that_does_not_divide_a_parameter(workdir):
  # MNIST-1D's paper CNN has 25 channels: tensor=2 cannot split them.
  result = run_main(f'--workdir={workdir}', '--config=experiments/mnist1d.py', '--config.mesh.tensor=2',
                    env={'XLA_FLAGS': '--xla_force_host_platform_device_count=8'})
  assert result.returncode != 0
  assert re.search(r"conv_0.*has size 25 in dimension \d, which the mesh axes \('tensor',\) \(2 devices\) do not "
                   'divide', _last_line(result)), result.stderr[-2000:]
  assert not os.path.exists(workdir)
