"""benchmarks.throughput: both tables, their JSON rows and the digits CNN's counted FLOPs."""

import json
import subprocess
import sys

import pytest

from tests.conftest import REPO
from tests.unit.test_accounting import DIGITS_CNN_STEP_FLOPS


@pytest.mark.slow
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
    assert row['flops_per_step'] == pytest.approx(DIGITS_CNN_STEP_FLOPS)
