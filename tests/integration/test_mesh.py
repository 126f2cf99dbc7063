"""The same run on 8 forced CPU devices under different meshes: equal losses, sharded params."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import REPO


def _probe(tmp_path, mesh_arg: str, experiment: str = 'digits', devices: int = 8) -> dict:
  workdir = str(tmp_path / mesh_arg.replace(',', '_').replace('=', ''))
  result = subprocess.run(
      [sys.executable, os.path.join(REPO, 'tests', 'mesh_probe.py'), workdir, mesh_arg, experiment], cwd=REPO,
      capture_output=True, text=True, timeout=600,
      env={**os.environ, 'PYTHONPATH': REPO, 'XLA_FLAGS': f'--xla_force_host_platform_device_count={devices}'})
  assert result.returncode == 0, result.stderr[-3000:]
  return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope='module')
def single_device_losses(tmp_path_factory):
  """The reference: one device, no mesh to speak of."""
  workdir = str(tmp_path_factory.mktemp('one'))
  result = subprocess.run([sys.executable, os.path.join(REPO, 'tests', 'mesh_probe.py'), workdir, 'data=1'],
                          cwd=REPO, capture_output=True, text=True, timeout=600, env={**os.environ, 'PYTHONPATH': REPO})
  assert result.returncode == 0, result.stderr[-3000:]
  probe = json.loads(result.stdout.strip().splitlines()[-1])
  assert probe['devices'] == 1
  return probe['losses']


@pytest.mark.parametrize('mesh_arg, sharded_over', [
    ('data=8', ()),
    ('fsdp=8', ('fsdp',)),
    ('data=2,fsdp=2,tensor=2', ('fsdp', 'tensor')),
])
def test_losses_match_one_device_and_params_are_sharded(tmp_path, single_device_losses, mesh_arg, sharded_over):
  probe = _probe(tmp_path, mesh_arg)
  assert probe['devices'] == 8
  assert len(probe['losses']) == 20
  np.testing.assert_allclose(probe['losses'], single_device_losses, rtol=1e-5)
  split = {path: p['spec'] for path, p in probe['params'].items() if p['shard_shape'] != p['shape']}
  for axis in sharded_over:
    assert any(axis in spec for spec in split.values()), probe['params']
  if not sharded_over:
    assert not split, split  # pure data parallelism replicates every parameter


@pytest.mark.slow
def test_gpt_losses_match_one_device_under_fsdp_and_tensor_parallelism(tmp_path):
  one = _probe(tmp_path / 'one', 'data=1', 'gpt', devices=1)
  probe = _probe(tmp_path, 'fsdp=4,tensor=2', 'gpt')
  assert probe['devices'] == 8 and len(probe['losses']) == 20
  np.testing.assert_allclose(probe['losses'], one['losses'], rtol=1e-5)
  split = {path: p['spec'] for path, p in probe['params'].items() if p['shard_shape'] != p['shape']}
  # FSDP splits the width of every matrix; tensor parallelism splits heads and the MLP.
  assert any("'token_embedding'" in path and 'fsdp' in spec for path, spec in split.items()), split
  assert any('qkv_kernel' in path and "'fsdp', 'tensor'" in spec for path, spec in split.items()), split
  assert any("'up'" in path and "'fsdp', 'tensor'" in spec for path, spec in split.items()), split
