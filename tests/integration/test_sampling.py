"""Sampling: cached decoding gives the tokens of full recomputation, and a tiny GPT trains, evaluates
every validation token once and samples from the command line."""

import subprocess
import sys

import jax
import numpy as np
import pytest

from experiments import shakespeare_gpt
from input_pipeline import text_data
from tests.conftest import REPO
from tests.unit.test_language_model import _lm
from train_lib import sampling, train_and_evaluate
from train_lib.metric_writer import read_metrics


@pytest.mark.slow
def test_gpt_tiny_trains_evaluates_every_token_and_samples(tmp_path):
  workdir = str(tmp_path / 'gpt')
  config = shakespeare_gpt.get_config('tiny=True')
  final = train_and_evaluate(config, workdir)
  validation = text_data.token_stream(config.data, 'validation')
  assert final['eval/num_tokens'] == len(validation) - 1
  assert final['eval/loss'] < np.log(67)  # better than uniform after a few steps
  assert read_metrics(workdir)[-1]['perf/tokens_per_sec'] > 0
  sample = subprocess.run(
      [sys.executable, '-m', 'train_lib.sample', f'--workdir={workdir}', '--prompt=ROMEO:', '--prompt=JULIET:',
       '--max_new_tokens=80', '--temperature=0.8', '--top_k=40'],
      cwd=REPO, capture_output=True, text=True, timeout=300)
  assert sample.returncode == 0, sample.stderr[-2000:]
  blocks = sample.stdout.split('-' * 40 + '\n')
  assert blocks[0].startswith('ROMEO:') and blocks[1].startswith('JULIET:')
  alphabet = set(text_data.tokenizer(config.data).characters)
  assert len(blocks[0]) > len('ROMEO:') + 40 and set(blocks[0]) <= alphabet


def test_sampling_without_a_language_model_checkpoint_says_why(tmp_path):
  result = subprocess.run([sys.executable, '-m', 'train_lib.sample', f'--workdir={tmp_path}'], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
  assert result.returncode != 0
  assert result.stderr.strip().splitlines()[-1].startswith('lamina: sample: --workdir: no checkpoint in')


def _recompute(model, params, prompt, count, temperature, seed, row):
  """Every token from a full forward pass over the last max_len tokens: no cache."""
  rng, sequence = jax.random.fold_in(jax.random.PRNGKey(seed), row), list(prompt)
  forward = jax.jit(lambda tokens, positions: model.apply({'params': params}, tokens, positions, train=False))
  for t in range(count):
    window = sequence[-model.max_len:]
    pad = model.max_len - len(window)  # one shape for every call: left padding the model cannot see
    tokens = np.array([[0] * pad + window])
    positions = np.arange(model.max_len)[None] - pad
    logits = forward(tokens, positions)[:, -1]
    key = jax.random.fold_in(rng, t)[None]
    sequence.append(int(sampling.sample_logits(logits, key, temperature, top_k=5)[0]))
  return sequence[len(prompt):]


@pytest.mark.parametrize('positions', ['learned', 'rotary'])
@pytest.mark.parametrize('temperature', [0.0, 1.0])
def test_cached_decoding_gives_the_tokens_of_full_recomputation(positions, temperature):
  model, params = _lm(positions)
  prompts = [np.array([1, 2, 3]), np.array([4, 5, 6, 7, 8, 9]), np.array([10])]
  # 14 new tokens: the cache fills (max_len 10), then the window slides.
  out = sampling.generate(model, params, prompts, max_new_tokens=14, temperature=temperature, top_k=5, seed=3)
  assert out.shape == (3, 14)
  for row, prompt in enumerate(prompts):
    assert out[row].tolist() == _recompute(model, params, prompt, 14, temperature, 3, row)
