"""Mixture-of-Experts runs: expert parallelism on 4 forced CPU devices equals one device, a
resumed run equals an uninterrupted one, and the tiny Shakespeare MoE samples from the command line."""

import subprocess
import sys

import numpy as np
import pytest

from experiments import shakespeare_moe
from tests.conftest import REPO
from tests.integration.test_mesh import _probe
from train_lib import train_and_evaluate
from train_lib.metric_writer import read_metrics


@pytest.mark.parametrize('experiment', ['moe', 'moe_dropless'])
def test_expert_parallel_losses_match_one_device(tmp_path, experiment):
  one = _probe(tmp_path / 'one', experiment, 'data=1', devices=1)['data=1']
  probes = _probe(tmp_path / 'four', experiment, 'expert=4', 'data=2,expert=2', devices=4)
  for mesh_arg, probe in probes.items():
    assert probe['devices'] == 4 and len(probe['losses']) == 10
    np.testing.assert_allclose(probe['losses'], one['losses'], rtol=1e-5)
    experts = int(mesh_arg.split('expert=')[1])
    for name in ('up', 'down'):
      param = probe['params'][f"['block_0']['mlp']['{name}']"]
      assert param['shape'][0] == 4 and param['shard_shape'][0] == 4 // experts, param
      assert "'expert'" in param['spec']


def _config(total_steps):
  config = shakespeare_moe.get_config('tiny=True,experts=4')
  config.model.moe.router_noise = 0.1  # randomness that must repeat after a resume
  config.optimizer.schedule = 'constant'  # the same rate whatever total_steps says
  config.optimizer.warmup_steps = 0
  config.update({'total_steps': total_steps, 'log_every': 2})
  config.checkpoint.every = 4
  return config


def test_resumed_moe_run_equals_uninterrupted(tmp_path):
  train_and_evaluate(_config(8), str(tmp_path / 'whole'))
  train_and_evaluate(_config(4), str(tmp_path / 'resumed'))
  train_and_evaluate(_config(8), str(tmp_path / 'resumed'))
  whole, resumed = (read_metrics(str(tmp_path / name)) for name in ('whole', 'resumed'))
  # The first part's end-of-run evaluation at step 4 is all that differs.
  def comparable(records):
    return [{k: v for k, v in r.items() if not k.startswith('perf/') and not (r['step'] == 4 and k.startswith('eval/'))}
            for r in records]
  assert comparable(resumed) == comparable(whole)


def test_tiny_moe_samples_from_the_command_line(tmp_path):
  workdir = str(tmp_path)
  train_and_evaluate(shakespeare_moe.get_config('tiny=True,top_k=1,dispatch=dropless'), workdir)
  sample = subprocess.run([sys.executable, '-m', 'train_lib.sample', f'--workdir={workdir}', '--prompt=ROMEO:',
                           '--max_new_tokens=40', '--temperature=0.8'],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
  assert sample.returncode == 0, sample.stderr[-2000:]
  assert sample.stdout.startswith('ROMEO:') and len(sample.stdout) > len('ROMEO:') + 30
