"""The peer benchmark: torch mirrors compute what lamina's models compute, and the harness runs end to end."""

import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

torch = pytest.importorskip('torch', reason="the peer benchmark runs PyTorch (pip install -e '.[bench]')")

from benchmarks import peers, torch_train  # pylint: disable=wrong-import-position
from tests.conftest import REPO  # pylint: disable=wrong-import-position
from train_lib import steps  # pylint: disable=wrong-import-position

pytestmark = pytest.mark.needs_torch

TINY_ROWS = ('gpt', 'digits_cnn', 'fashion_mnist_resnet')


@pytest.fixture(autouse=True)
def one_torch_thread():
  """Tiny tensors gain nothing from threads, and OpenMP's spinning ones crawl on a shared CPU."""
  threads = torch.get_num_threads()
  torch.set_num_threads(1)
  yield
  torch.set_num_threads(threads)


def _batches(config, count: int) -> list[dict]:
  batches = peers.train_batches(config)
  return [next(batches) for _ in range(count)]


@pytest.mark.parametrize('row', list(peers.ROWS))
def test_parameter_counts_match(row):
  config = peers.row_config(row)
  lamina = sum(x.size for x in jax.tree.leaves(peers.lamina_start(config, abstract=True)[2].params))
  run = torch_train.TorchRun(config, config.total_steps)
  assert sum(p.numel() for p in run.model.parameters()) == lamina


@pytest.mark.parametrize('row', TINY_ROWS)
def test_from_the_same_init_torch_computes_and_learns_the_same(row):
  """Equal logits at lamina's initial params, then equal losses step after step through lamina's own
  train step: the architecture, optimizer, schedule, clipping and weight decay all agree."""
  config = peers.row_config(row, tiny=True, compute_dtype='float32')
  if 'dropout' in config.model:
    config.model.dropout = 0.0  # dropout masks come from different generators
  config.total_steps = 5
  config.optimizer.warmup_steps = 1  # real updates from the second step on
  batches = _batches(config, config.total_steps)
  task, tx, state = peers.lamina_start(config)
  run = torch_train.TorchRun(config, config.total_steps, params=state.params)

  # Train mode, so the ResNet's BatchNorm normalises by the batch on both sides.
  inputs = batches[0][run.input_key]
  logits, _ = task.model.apply({'params': state.params, **state.model_state}, inputs, train=True,
                               mutable=list(state.model_state))
  with torch.no_grad():
    torch_logits = run.model(torch_train.to_torch({'x': inputs})['x']).numpy()
  # atol: flax's BatchNorm takes the variance as E[x^2] - E[x]^2, torch in two passes.
  np.testing.assert_allclose(torch_logits, np.asarray(logits), rtol=1e-4, atol=1e-4)

  call = jax.jit(steps.make_train_call(task, tx, accum_steps=1, ema_decay=0.0))
  expected = []
  for batch in batches:
    state, metrics = call(state, jax.tree.map(lambda x: x[None], batch))
    expected.append(float(metrics['loss']))
  actual = [float(run.train_step(torch_train.to_torch(b))) for b in batches]
  assert expected[-1] < expected[0]  # it learned: the updates were real
  np.testing.assert_allclose(actual, expected, rtol=2e-4)


def test_bfloat16_autocast_trains():
  config = peers.row_config('gpt', tiny=True)
  run = torch_train.TorchRun(config, config.total_steps, dtype='bfloat16')
  losses = [float(run.train_step(torch_train.to_torch(b))) for b in _batches(config, 2)]
  assert np.isfinite(losses).all()
  assert np.isfinite(list(run.evaluate().values())).all()


def test_on_an_accelerator_rows_train_in_bfloat16_with_larger_batches(monkeypatch):
  cpu = peers.row_config('gpt_wide')
  monkeypatch.setattr(peers, 'on_accelerator', lambda: True)
  gpu = peers.row_config('gpt_wide')
  assert (cpu.batch_size, gpu.batch_size) == (32, 256)
  assert gpu.compute_dtype == 'bfloat16' and gpu.model.width == cpu.model.width == 512
  assert peers.row_config('gpt_wide', tiny=True).batch_size == peers.row_config('gpt', tiny=True).batch_size


def test_gpt2_small_row_is_gpt2_small():
  config = peers.row_config('gpt2_small')
  params = peers.lamina_start(config, abstract=True)[2].params
  assert sum(x.size for x in jax.tree.leaves(params)) == 124_337_664  # GPT-2 small, biasless
  assert (config.data.seq_len, config.model.width, config.model.num_layers) == (1024, 768, 12)
  assert 'gpt2_small' not in peers.DEFAULT_ROWS  # 28 TFLOP a step: for accelerators


def test_unmirrored_fields_fail_loudly():
  config = peers.row_config('gpt', tiny=True)
  config.model.positions = 'rotary'
  with pytest.raises(ValueError, match='positions'):
    torch_train.TorchRun(config, config.total_steps)


@pytest.mark.slow
def test_benchmark_runs_end_to_end(tmp_path):
  """The GPT row on its tiny config, each side in its own process (every child costs ~10 s, so one row)."""
  out = tmp_path / 'peers.json'
  result = subprocess.run(
      [sys.executable, '-m', 'benchmarks.peers', '--tiny', '--steps=2', '--warmup=1', '--models=gpt', f'--json={out}'],
      cwd=REPO, capture_output=True, text=True, timeout=300,
      env={**os.environ, 'OMP_WAIT_POLICY': 'PASSIVE'})  # torch's spinning threads crawl on a shared CPU
  assert result.returncode == 0, result.stderr[-3000:]
  [row] = json.loads(out.read_text())['rows']
  assert row['model'] == 'gpt' and row['unit'] == 'tokens/s'
  assert row['lamina_params'] == row['torch_params'] > 0
  assert row['lamina_rate'] > 0 and row['torch_rate'] > 0 and row['flops_per_step'] > 0 and row['ratio_bound'] > 0
  # Tiny GPT: 2 steps per device call, so a warm-up of 1 step rounds up to one call, and 2 timed steps to one more.
  assert (row['warmup'], row['steps']) == (2, 2)
  assert np.isfinite([row[f'{side}_{key}'] for side in ('lamina', 'torch')
                      for key in ('train_loss', 'eval_loss', 'mfu_float32', 'mfu_bfloat16')]).all()
  assert row['ratios'] == [row['ratio']]
  assert 'lamina/torch' in result.stdout and 'Machine:' in result.stdout


def _measured(steps_per_sec: float, loss: float = 1.0, dtype: str = 'float32') -> dict:
  """One side's measurement as peers' child processes report it: 1e8 FLOPs a step."""
  return {'params': 7, 'dtype': dtype, 'examples_per_step': 4, 'tokens_per_example': None, 'warmup': 1,
          'steps': 2, 'flops_per_step': 1e8, 'steps_per_sec': steps_per_sec, 'train_loss': loss,
          'eval_loss': loss, 'eval_accuracy': 0.5}


def test_repeated_runs_pair_each_lamina_run_with_the_next_torch_run():
  laminas = [_measured(10.0, 1.0), _measured(12.0, 1.0), _measured(30.0, 1.0)]
  torches = [_measured(5.0, 2.0), _measured(12.0, 2.0), _measured(10.0, 2.0)]
  row = peers._row('digits_cnn', laminas, torches, {'ceilings': {'float32': {'ceiling': 1e9}}})
  assert row['ratios'] == [2.0, 1.0, 3.0] and row['ratio'] == 2.0  # not 12 / 10: each pair is back to back
  assert (row['lamina_steps_per_sec'], row['torch_steps_per_sec']) == (12.0, 10.0)
  assert (row['lamina_rate'], row['torch_rate']) == (48.0, 40.0)
  assert row['lamina_mfu_float32'] == pytest.approx(1.2)
  assert row['ratio_bound'] == pytest.approx(1.0)  # torch already at the 1e9 ceiling: no room above 1x
  assert (row['lamina_train_loss'], row['torch_train_loss']) == (1.0, 2.0)


def test_the_bound_is_the_ratio_at_lamina_dtypes_ceiling():
  ceilings = {'ceilings': {'float32': {'ceiling': 4e9}, 'bfloat16': {'ceiling': 8e9}}}
  # torch at 2 steps/s runs 2e8 FLOP/s: 5% of the f32 ceiling, 2.5% of the bf16 one.
  f32 = peers._row('gpt', [_measured(10.0)], [_measured(2.0)], ceilings)
  bf16 = peers._row('gpt', [_measured(10.0, dtype='bfloat16')], [_measured(2.0)], ceilings)
  assert (f32['ratio_bound'], bf16['ratio_bound']) == (pytest.approx(20.0), pytest.approx(40.0))
  assert '20.00' in peers._table([f32])
  f16 = peers._row('gpt', [_measured(10.0, dtype='float16')], [_measured(2.0)], ceilings)  # no float16 ceiling measured
  assert f16['ratio_bound'] is None and f16['ratio'] == 5.0
  header, line = peers._table([f16]).splitlines()
  assert line[header.index('bound'):].split()[0] == '-'


def test_missing_torch_says_how_to_install(monkeypatch):
  real = peers.importlib.util.find_spec
  monkeypatch.setattr(peers.importlib.util, 'find_spec', lambda name: None if name == 'torch' else real(name))
  with pytest.raises(SystemExit, match=r"pip install -e '\.\[bench\]'"):
    peers.main([])
