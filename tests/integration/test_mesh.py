"""The same run on 8 forced CPU devices under different meshes: equal losses, sharded params."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import REPO


def _probe(tmp_path, experiment: str, *mesh_args: str, devices: int = 8) -> dict:
  """mesh_probe.py's runs of `experiment` on each of `mesh_args`, one after the other in one process."""
  result = subprocess.run(
      [sys.executable, os.path.join(REPO, 'tests', 'mesh_probe.py'), str(tmp_path), experiment, *mesh_args], cwd=REPO,
      capture_output=True, text=True, timeout=600,
      env={**os.environ, 'PYTHONPATH': REPO, 'XLA_FLAGS': f'--xla_force_host_platform_device_count={devices}'})
  assert result.returncode == 0, result.stderr[-3000:]
  return json.loads(result.stdout.strip().splitlines()[-1])


MESHES = {'data=8': (), 'fsdp=8': ('fsdp',), 'data=2,fsdp=2,tensor=2': ('fsdp', 'tensor')}


@pytest.fixture(scope='module')
def single_device_losses(tmp_path_factory):
  """The reference: one device, no mesh to speak of."""
  probe = _probe(tmp_path_factory.mktemp('one'), 'digits', 'data=1', devices=1)['data=1']
  assert probe['devices'] == 1
  return probe['losses']


@pytest.fixture(scope='module')
def eight_device_probes(tmp_path_factory):
  """The default experiment on each of MESHES, all in one process of 8 devices."""
  return _probe(tmp_path_factory.mktemp('eight'), 'digits', *MESHES)


@pytest.mark.parametrize('mesh_arg', list(MESHES))
def test_losses_match_one_device_and_params_are_sharded(single_device_losses, eight_device_probes, mesh_arg):
  probe, sharded_over = eight_device_probes[mesh_arg], MESHES[mesh_arg]
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
  one = _probe(tmp_path / 'one', 'gpt', 'data=1', devices=1)['data=1']
  probe = _probe(tmp_path / 'eight', 'gpt', 'fsdp=4,tensor=2')['fsdp=4,tensor=2']
  assert probe['devices'] == 8 and len(probe['losses']) == 20
  np.testing.assert_allclose(probe['losses'], one['losses'], rtol=1e-5)
  split = {path: p['spec'] for path, p in probe['params'].items() if p['shard_shape'] != p['shape']}
  # FSDP splits the width of every matrix; tensor parallelism splits heads and the MLP.
  assert any("'token_embedding'" in path and 'fsdp' in spec for path, spec in split.items()), split
  assert any('qkv_kernel' in path and "'fsdp', 'tensor'" in spec for path, spec in split.items()), split
  assert any("'up'" in path and "'fsdp', 'tensor'" in spec for path, spec in split.items()), split
