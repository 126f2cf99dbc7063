"""Starting from another run (config.init_from) and training part of a model (optimizer.trainable),
on a tiny digits ResNet whose BatchNorm statistics travel with its weights."""

import json
import os
import re
import shutil
import subprocess
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from tests.conftest import REPO, small_digits_config
from train_lib import train_and_evaluate
from train_lib.errors import ConfigError
from train_lib.metric_writer import read_metrics

RESNET = {'name': 'resnet', 'stage_sizes': (1, 1), 'width': 8, 'stem': 'cifar'}


def _config(**overrides):
  config = small_digits_config(**overrides)
  config.model = dict(RESNET)
  return config


def _state(workdir: str, step: int) -> dict:
  return ocp.StandardCheckpointer().restore(os.path.join(workdir, 'checkpoints', str(step), 'state'))


def _flat(tree) -> dict:
  return {jax.tree_util.keystr(path): np.asarray(leaf) for path, leaf in jax.tree_util.tree_leaves_with_path(tree)}


@pytest.fixture(scope='module')
def source(tmp_path_factory) -> str:
  """A 40-step digits ResNet: the run the others start from."""
  workdir = str(tmp_path_factory.mktemp('source'))
  train_and_evaluate(_config(), workdir)
  return workdir


def _fine_tune(source: str, **init_from):
  config = _config(total_steps=20, **{'checkpoint.every': 20})
  config.init_from.update({'workdir': source, **init_from})
  return config


def test_loaded_parameters_equal_the_source_and_the_rest_start_fresh(source, tmp_path):
  # A zero learning rate keeps the parameters as loaded; BatchNorm statistics still move in training.
  config = _fine_tune(source, params='(?!head/).*')
  config.optimizer.learning_rate = 0.0
  train_and_evaluate(config, str(tmp_path / 'tuned'))
  scratch = _config(total_steps=20, **{'checkpoint.every': 20})
  scratch.optimizer.learning_rate = 0.0
  train_and_evaluate(scratch, str(tmp_path / 'scratch'))

  loaded, fresh, original = (_state(str(tmp_path / 'tuned'), 20), _state(str(tmp_path / 'scratch'), 20),
                             _state(source, 40))
  for key, value in _flat(loaded['params']).items():
    expected = fresh['params'] if key.startswith("['head']") else original['params']
    np.testing.assert_array_equal(value, _flat(expected)[key], err_msg=key)
  assert any(not np.array_equal(v, _flat(fresh['params'])[k]) for k, v in _flat(loaded['params']).items())


def test_batch_norm_statistics_load_with_their_layer_and_a_frozen_backbone_never_moves(source, tmp_path):
  config = _fine_tune(source)
  config.optimizer.trainable = 'head/.*'
  config.optimizer.weight_decay = 0.1  # never applied to what is frozen
  workdir = str(tmp_path / 'probe')
  train_and_evaluate(config, workdir)
  tuned, original = _state(workdir, 20), _state(source, 40)

  for key, value in _flat(tuned['params']).items():
    if "['head']" in key:
      assert not np.array_equal(value, _flat(original['params'])[key]), f'{key} did not train'
    else:
      np.testing.assert_array_equal(value, _flat(original['params'])[key], err_msg=key)
  # BatchNorm's running statistics started from the source's and follow this run's batches.
  tuned_stats, original_stats = _flat(tuned['model_state']), _flat(original['model_state'])
  assert tuned_stats.keys() == original_stats.keys()
  assert all(not np.array_equal(v, original_stats[k]) for k, v in tuned_stats.items())
  # Optimizer state only for the head: Adam's two moments of its kernel and bias, and a step count.
  head_sizes = sorted(v.size for k, v in _flat(tuned['params']).items() if "['head']" in k)
  moment_sizes = sorted(v.size for v in _flat(tuned['opt_state']).values() if v.size > 1 or v.ndim > 0)
  assert moment_sizes == sorted(head_sizes * 2)


def test_a_mismatched_shape_is_one_line_before_anything_is_written(source, tmp_path):
  config = _fine_tune(source)
  config.model.width = 16
  workdir = tmp_path / 'wider'
  with pytest.raises(ConfigError, match=r"init_from: head/kernel is float32\[16, 10\] in .*checkpoints/40 but "
                                        r"float32\[32, 10\] here \(and 18 more differ\); leave it out of "
                                        r"init_from.params \(e.g. '\(\?!\(head\|stage1_block1\|stage2_block1\|"
                                        r"stem_bn\|stem_conv\)/\)\.\*'\) to start it fresh"):
    train_and_evaluate(config, str(workdir))
  assert not workdir.exists()


@pytest.mark.parametrize('init_from, message', [
    ({'params': 'decoder/.*'}, r"init_from.params: 'decoder/.\*' matches no parameter that .* holds; its parameter "
                               r'paths look like'),
    ({'params': 'head/(kernel'}, r'init_from.params is not a regex'),
    ({'ema': True}, r'init_from.ema: the run in .* kept no EMA \(ema_decay=0\); set ema=False'),
    ({'step': 7}, r'init_from.workdir: no checkpoint at step 7 in .*; its steps are \[20, 40\]'),
])
def test_bad_init_from_is_one_line(source, tmp_path, init_from, message):
  with pytest.raises(ConfigError, match=message):
    train_and_evaluate(_fine_tune(source, **init_from), str(tmp_path / 'run'))


def test_the_ema_weights_load_when_asked(tmp_path):
  source = str(tmp_path / 'ema_source')
  train_and_evaluate(_config(ema_decay=0.9), source)
  config = _fine_tune(source, ema=True)
  config.optimizer.learning_rate = 0.0
  train_and_evaluate(config, str(tmp_path / 'tuned'))
  tuned, original = _state(str(tmp_path / 'tuned'), 20), _state(source, 40)
  for key, value in _flat(original['ema_params']).items():
    np.testing.assert_array_equal(_flat(tuned['params'])[key], value, err_msg=key)


def test_a_restarted_fine_tune_resumes_its_own_checkpoint_not_the_source(source, tmp_path):
  own_source = str(tmp_path / 'source')
  shutil.copytree(source, own_source)
  config = _fine_tune(own_source)
  config.update({'total_steps': 40, 'log_every': 10})
  config.checkpoint.every = 20
  workdir = str(tmp_path / 'tuned')
  uninterrupted = train_and_evaluate(config, workdir)
  # As if killed after the step-20 checkpoint; the source is gone, so only the run's own checkpoint can serve.
  shutil.rmtree(os.path.join(workdir, 'checkpoints', '40'))
  shutil.rmtree(own_source)
  resumed = train_and_evaluate(config, workdir)
  assert resumed['eval/loss'] == uninterrupted['eval/loss']
  assert [r['step'] for r in read_metrics(workdir) if 'train/loss' in r] == [10, 20, 30, 40]


# Fine-tunes the source for 20 steps on the mesh argv[3] names (data=1,fsdp=4) and prints its train losses.
_PROBE = """
import json, sys
from absl import logging
from tests.integration.test_init_from import _fine_tune
from train_lib import train_and_evaluate
from train_lib.metric_writer import read_metrics
logging.set_verbosity('info')
source, workdir, mesh = sys.argv[1:]
config = _fine_tune(source, params='(?!head/).*')
config.update({'log_every': 1, 'eval_every': 0})
config.checkpoint.every = 0
config.mesh.update({axis: int(size) for axis, size in (item.split('=') for item in mesh.split(','))})
train_and_evaluate(config, workdir)
print(json.dumps([r['train/loss'] for r in read_metrics(workdir) if 'train/loss' in r]))
"""


def test_init_from_onto_four_devices_gives_the_one_device_losses(source, tmp_path):
  """The source trained on one device; the fine-tune runs on a 4-device FSDP mesh and on one."""
  losses = {}
  for devices, mesh in ((1, 'data=1'), (4, 'data=1,fsdp=4')):
    result = subprocess.run([sys.executable, '-c', _PROBE, source, str(tmp_path / f'devices{devices}'), mesh],
                            cwd=REPO, capture_output=True, text=True, timeout=600,
                            env={**os.environ, 'PYTHONPATH': REPO,
                                 'XLA_FLAGS': f'--xla_force_host_platform_device_count={devices}'})
    assert result.returncode == 0, result.stderr[-3000:]
    assert re.search(r'init_from: loaded 18 of 20 parameters \(and 12 non-trained variables\) from .*; '
                     r'initialised fresh: head/bias, head/kernel', result.stderr), result.stderr[-3000:]
    losses[devices] = json.loads(result.stdout.strip().splitlines()[-1])
  assert len(losses[1]) == 20
  np.testing.assert_allclose(losses[4], losses[1], rtol=2e-5)


def test_a_language_model_starts_from_one_with_its_tokenizer_only(tmp_path):
  from experiments import shakespeare_gpt
  source = str(tmp_path / 'lm')
  train_and_evaluate(shakespeare_gpt.get_config('tiny=True'), source)
  tuned = shakespeare_gpt.get_config('tiny=True')
  tuned.init_from.workdir = source
  tuned.optimizer.learning_rate = 0.0
  train_and_evaluate(tuned, str(tmp_path / 'tuned'))
  last = tuned.total_steps
  for key, value in _flat(_state(source, last)['params']).items():
    np.testing.assert_array_equal(_flat(_state(str(tmp_path / 'tuned'), last)['params'])[key], value, err_msg=key)

  tuned.data.name = 'synthetic_text'
  with pytest.raises(ConfigError, match=r"init_from: the source's tokenizer \(char on shakespeare_tiny\) is not this "
                                        r"run's \(char on synthetic_text\), so its token ids would mean other text"):
    train_and_evaluate(tuned, str(tmp_path / 'other_text'))
