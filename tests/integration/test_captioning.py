"""A tiny captioner trains on caption data, its evaluators decode the held-out split, its checkpoint
carries the data set's tokenizer, and `train_lib.sample --image` captions a picture file."""

import json
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from experiments import common
from tests import caption_data
from tests.conftest import REPO
from train_lib import from_run, image_captioning, train_and_evaluate
from train_lib.errors import ConfigError


def _config(**evals):
  config = common.base_config()
  config.data.name = caption_data.NAME
  config.data.eval_split = 'test'
  config.data.pp_train = config.data.pp_eval = 'value_range(0, 1)'
  config.task = {'name': 'captioning'}
  config.model = {'name': 'captioner', 'width': 32, 'num_heads': 2, 'num_layers': 1, 'max_len': 4,
                  'encoder': {'name': 'vit', 'patch_size': 4, 'width': 16, 'num_heads': 2, 'num_layers': 1}}
  config.compute_dtype = 'float32'
  config.batch_size = 16
  config.eval_batch_size = 8
  config.total_steps = 150
  config.log_every = 50
  config.eval_every = 0
  config.checkpoint.every = 0
  config.optimizer.name = 'adamw'
  config.optimizer.learning_rate = 3e-3
  config.optimizer.warmup_steps = 10
  config.evals = {'eval': {'type': 'per_example'}, 'greedy': {'type': 'captioning'},
                  'beam': {'type': 'captioning', 'beam_size': 3}, **evals}
  return config


@pytest.fixture
def data(monkeypatch, tmp_path):
  """tiny_captions, prepared under this test's TFDS_DATA_DIR (subprocesses inherit it)."""
  caption_data.register(monkeypatch)
  monkeypatch.setenv('TFDS_DATA_DIR', str(tmp_path / 'data'))


def test_captioner_trains_decodes_the_test_split_and_captions_an_image_file(data, tmp_path):
  workdir = str(tmp_path / 'run')
  final = train_and_evaluate(_config(), workdir)
  assert final['eval/num_tokens'] == 12 * 3  # every test caption's two words and EOS, once
  assert final['eval/token_accuracy'] > 0.9
  for name in ('greedy', 'beam'):
    assert final[f'{name}/exact_match'] > 0.9 and final[f'{name}/token_accuracy'] > 0.9
  source = from_run.open_run(workdir, what='--workdir')
  assert from_run.read_json(source, 'tokenizer') == json.loads(
      json.dumps(caption_data.LaminaTinyCaptions.TOKENIZER.to_json()))

  path = str(tmp_path / 'green.png')
  Image.fromarray(np.kron(caption_data.picture('green', 'bottom'), np.ones((4, 4, 1), np.uint8))).save(path)
  run = image_captioning.load(workdir)
  image = image_captioning.read_image(path, run.image_shape)  # 32x32 resized to the data's 8x8
  assert image.shape == (8, 8, 3)
  for beam_size in (1, 3):
    assert image_captioning.caption(run, image[None], beam_size=beam_size) == ['green bottom']
  # The command line, in a process where the test's data set is registered too.
  command = ('import pytest; from tests import caption_data; caption_data.register(pytest.MonkeyPatch()); '
             'from absl import app; from train_lib import sample; app.run(sample.main)')
  result = subprocess.run([sys.executable, '-c', command, f'--workdir={workdir}', f'--image={path}', '--beam_size=3'],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout.strip().splitlines()[-1] == f'{path}: green bottom'


def test_bad_captioning_evaluator_fields_are_one_line(data, tmp_path):
  with pytest.raises(ConfigError, match=r'^evals.bad.beam_size must be an int >= 1 \(1: greedy decoding\), got 0$'):
    train_and_evaluate(_config(bad={'type': 'captioning', 'beam_size': 0}), str(tmp_path / 'run'))
  with pytest.raises(ConfigError, match=r"^evals.bad: unknown key\(s\) \['beams'\]; valid keys are .*'beam_size'"):
    train_and_evaluate(_config(bad={'type': 'captioning', 'beams': 2}), str(tmp_path / 'run'))


@pytest.mark.parametrize('flags,line', [
    (['--image=missing.png'], "lamina: sample: --image: no file 'missing.png'"),
    (['--beam_size=2'], 'lamina: sample: --beam_size apply to captioning an --image only'),
    (['--image=missing.png', '--max_new_tokens=3'], 'lamina: sample: --max_new_tokens do not apply to captioning'),
])
def test_caption_flags_misused_say_why_in_one_line(tmp_path, flags, line):
  result = subprocess.run([sys.executable, '-m', 'train_lib.sample', f'--workdir={tmp_path}', *flags], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
  assert result.returncode != 0
  assert result.stderr.strip().splitlines()[-1].startswith(line)
