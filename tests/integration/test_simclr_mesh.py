"""SimCLR's NT-Xent spans the global batch: on 8 forced CPU devices, each holding an eighth of
the batch, the loss, its gradient and the eval metrics equal those on one device."""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO


def _probe(devices: int) -> dict:
  result = subprocess.run(
      [sys.executable, os.path.join(REPO, 'tests', 'simclr_probe.py')], cwd=REPO, capture_output=True, text=True,
      timeout=600, env={**os.environ, 'PYTHONPATH': REPO, 'XLA_FLAGS': f'--xla_force_host_platform_device_count={devices}'})
  assert result.returncode == 0, result.stderr[-3000:]
  return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_contrastive_loss_is_the_same_on_8_devices_as_on_1():
  one, eight = _probe(1), _probe(8)
  assert (one['devices'], one['batch_devices']) == (1, 1)
  assert (eight['devices'], eight['batch_devices']) == (8, 8)
  # Each device holds 4 of the 32 images: a loss per device would rank each view's partner among 7
  # views, not 63, and start near log 7 instead of log 63.
  for key in ('loss', 'top1', 'grad_norm', 'eval_loss', 'eval_top1'):
    assert eight[key] == pytest.approx(one[key], rel=1e-5), key
