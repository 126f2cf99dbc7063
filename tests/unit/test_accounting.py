"""FLOPs from XLA's cost analysis, the peak used for MFU, and the console line."""

import json
import os

import jax
import jax.numpy as jnp
import pytest

from train_lib import accounting
from train_lib.progress import Progress


def test_matmul_flops_count_a_scan_body_once_per_iteration():
  x = jax.ShapeDtypeStruct((64, 32), jnp.float32)
  w = jax.ShapeDtypeStruct((32, 16), jnp.float32)
  assert accounting.matmul_flops(jnp.dot, x, w) == 2 * 64 * 32 * 16

  def scanned(x, w):
    return jax.lax.scan(lambda c, _: (jnp.tanh(c @ w), None), x, None, length=10)[0]
  square = jax.ShapeDtypeStruct((32, 32), jnp.float32)
  assert accounting.matmul_flops(scanned, x, square) == 10 * 2 * 64 * 32 * 32
  # XLA's own cost analysis counts the loop body once: why lamina counts from the jaxpr.
  xla = jax.jit(scanned).lower(x, square).compile().cost_analysis()
  assert xla['flops'] < 2 * (2 * 64 * 32 * 32)


def test_conv_flops_and_its_gradients():
  x = jax.ShapeDtypeStruct((4, 8, 8, 3), jnp.float32)
  w = jax.ShapeDtypeStruct((3, 3, 3, 16), jnp.float32)

  def conv(x, w):
    return jax.lax.conv_general_dilated(x, w, (1, 1), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  forward = 2 * (4 * 8 * 8 * 16) * (3 * 3 * 3)
  assert accounting.matmul_flops(conv, x, w) == forward
  # Forward, input gradient and weight gradient: three convolutions of equal cost.
  both = jax.value_and_grad(lambda x, w: conv(x, w).sum(), argnums=(0, 1))
  assert accounting.matmul_flops(both, x, w) == 3 * forward
  # Without the loss value the forward convolution is dead code, which XLA drops too.
  assert accounting.matmul_flops(jax.grad(lambda x, w: conv(x, w).sum(), argnums=(0, 1)), x, w) == 2 * forward


def test_cpu_peak_is_measured_once_and_cached(tmp_path, monkeypatch):
  calls = []
  monkeypatch.setattr(accounting, '_measure_matmul_flops', lambda dtype: calls.append(dtype) or 5e10)
  peak, source = accounting.peak_flops_per_device('float32', str(tmp_path))
  again, _ = accounting.peak_flops_per_device('float32', str(tmp_path))
  assert peak == again == 5e10 / jax.local_device_count()
  assert calls == ['float32'] and 'measured' in source
  assert list(json.load(open(os.path.join(tmp_path, 'peak_flops.json'))).values()) == [5e10]


@pytest.mark.parametrize('durations, expected_calls, expected_best', [
    ([0.3, 0.2, 0.25, 0.1, 0.4, 0.3], 6, 0.1),  # warm-up + all 5 timed calls within the budget
    ([9.0, 3.0, 2.5, 0.1], 2, 3.0),  # one slow timed call spends the budget
    ([0.5, 0.9, 0.8, 0.7, 0.1], 4, 0.7),  # stops once the timed calls add up to 2 s
])
def test_best_seconds_is_the_fastest_timed_call_within_the_budget(monkeypatch, durations, expected_calls,
                                                                   expected_best):
  clock, calls = [0.0], []
  monkeypatch.setattr(accounting.time, 'perf_counter', lambda: clock[0])

  def run():
    clock[0] += durations[len(calls)]
    calls.append(None)

  assert accounting.best_seconds(run, repeats=5, budget_s=2.0) == pytest.approx(expected_best)
  assert len(calls) == expected_calls


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


# The default experiment's train step at batch 64: conv 1->32 on 8x8 and 32->64 on 4x4 (3x3),
# dense 256->128->10. Forward once, weight gradients of all, input gradients of all but conv 1.
_CONV1, _CONV2 = 2 * 64 * 64 * 32 * 9, 2 * 64 * 16 * 64 * 32 * 9
_DENSE = 2 * 64 * (256 * 128 + 128 * 10)
DIGITS_CNN_STEP_FLOPS = (_CONV1 + _CONV2 + _DENSE) + (_CONV1 + 2 * _CONV2 + 2 * _DENSE)
