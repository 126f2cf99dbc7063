"""Contrastive losses span the global batch: on 8 forced CPU devices, each holding an eighth of
the batch, the loss, its gradient and the eval metrics equal those on one device (SimCLR's
NT-Xent; CLIP over speech, images and text). Both meshes are built in one process, the one-device
mesh from the first of its 8 devices."""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO


def _probe(experiment: str, *device_counts: int) -> list[dict]:
  """The probe on meshes of the first N of 8 forced devices, for each N, in one process."""
  result = subprocess.run(
      [sys.executable, os.path.join(REPO, 'tests', 'contrastive_probe.py'), experiment, *map(str, device_counts)],
      cwd=REPO, capture_output=True, text=True, timeout=600,
      env={**os.environ, 'PYTHONPATH': REPO, 'XLA_FLAGS': '--xla_force_host_platform_device_count=8'})
  assert result.returncode == 0, result.stderr[-3000:]
  probes = json.loads(result.stdout.strip().splitlines()[-1])
  return [probes[str(n)] for n in device_counts]


@pytest.mark.slow
@pytest.mark.parametrize('experiment, keys', [
    ('fashion_mnist_simclr', ('train_loss', 'train_top1', 'grad_norm', 'eval_loss', 'eval_top1')),
    ('spoken_digits_clip', ('train_loss', 'train_speech_to_image_top1', 'grad_norm', 'eval_loss',
                            'eval_speech_to_image_top1', 'eval_text_to_speech_top1')),
])
def test_the_contrastive_loss_is_the_same_on_8_devices_as_on_1(experiment, keys):
  one, eight = _probe(experiment, 1, 8)
  assert (one['devices'], one['batch_devices']) == (1, 1)
  assert (eight['devices'], eight['batch_devices']) == (8, 8)
  # Each device holds 4 of the 32 examples: a loss per device would rank each partner among 4 (or
  # 7 views), not the whole batch, and start near log 4 instead of log 32.
  assert set(eight) == set(one)
  for key in keys:
    assert eight[key] == pytest.approx(one[key], rel=1e-5), key
