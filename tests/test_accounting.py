"""FLOPs from XLA's cost analysis, the peak used for MFU, and the console line."""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

from train_lib import accounting
from train_lib.progress import Progress

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_flops_of_a_compiled_matmul():
  x = jax.ShapeDtypeStruct((64, 32), jnp.float32)
  w = jax.ShapeDtypeStruct((32, 16), jnp.float32)
  compiled = jax.jit(jnp.dot).lower(x, w).compile()
  assert accounting.flops_per_call(compiled) == pytest.approx(2 * 64 * 32 * 16, rel=0.01)


def test_cpu_peak_is_measured_once_and_cached(tmp_path, monkeypatch):
  calls = []
  monkeypatch.setattr(accounting, '_measure_matmul_flops', lambda dtype: calls.append(dtype) or 5e10)
  peak, source = accounting.peak_flops_per_device('float32', str(tmp_path))
  again, _ = accounting.peak_flops_per_device('float32', str(tmp_path))
  assert peak == again == 5e10 / jax.local_device_count()
  assert calls == ['float32'] and 'measured' in source
  assert list(json.load(open(os.path.join(tmp_path, 'peak_flops.json'))).values()) == [5e10]


def test_datasheet_peaks_cover_the_accelerators_named_in_the_design():
  for kind in ('TPU v4', 'TPU v5e', 'TPU v5p', 'TPU v6e', 'NVIDIA A100-SXM4-80GB', 'NVIDIA H100', 'NVIDIA H200'):
    assert accounting.PEAK_FLOPS[kind]['bfloat16'] > 1e14


def test_progress_rates_mfu_and_console_line():
  progress = Progress(total_steps=100, start_step=0, examples_per_step=32, flops_per_step=1e9, peak_flops=1e11)
  rates = progress.rates(10)
  assert rates['perf/examples_per_sec'] == pytest.approx(32 * rates['perf/steps_per_sec'])
  assert rates['perf/mfu'] == pytest.approx(rates['perf/steps_per_sec'] * 1e9 / 1e11)
  line = progress.line(10, {'train/loss': 0.5, **rates})
  assert line.startswith('step 10/100 | train/loss 0.5000 |') and 'examples/s' in line and 'ETA' in line


def test_throughput_benchmark_prints_both_tables_and_json(tmp_path):
  out = tmp_path / 'rows.json'
  result = subprocess.run(
      [sys.executable, '-m', 'benchmarks.throughput', '--configs=digits_cnn', '--steps=4', '--warmup=2',
       '--scaling=digits_cnn', '--devices=2', f'--json={out}'],
      capture_output=True, text=True, cwd=REPO, timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  assert 'Throughput' in result.stdout and 'Scaling' in result.stdout and 'Machine:' in result.stdout
  rows = json.loads(out.read_text())
  (single,), (scaled,) = rows['throughput'], rows['scaling']
  assert single['config'] == 'digits_cnn' and single['devices'] == 1 and single['global_batch'] == 64
  assert scaled['devices'] == 2 and scaled['mesh'] == 'data=2'
  for row in (single, scaled):
    assert row['steps_per_sec'] > 0 and 0 < row['mfu'] < 1
    assert row['examples_per_sec'] == pytest.approx(64 * row['steps_per_sec'])
    assert row['flops_per_step'] == pytest.approx(1.0e8, rel=0.2)  # the digits CNN's fwd+bwd at batch 64
