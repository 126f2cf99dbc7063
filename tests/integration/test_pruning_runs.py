"""Pruning in a run (train_lib/pruning.py): the sparsity evaluator's scalars reach the target in
metrics.jsonl, masks and zeros come back from a checkpoint and a resumed run ends as an
uninterrupted one, and a bad method is one line before anything runs."""

import os
import shutil

import numpy as np
import orbax.checkpoint as ocp
import pytest
from flax import traverse_util

from tests.conftest import small_digits_config
from train_lib import train_and_evaluate
from train_lib.errors import ConfigError
from train_lib.metric_writer import read_metrics

# The digits CNN's kernels: 40 steps, masks every 5 steps up to step 30 (three quarters).
KERNELS = ('conv_0/kernel', 'conv_1/kernel', 'head/kernel', 'hidden_0/kernel')


def _config(**overrides):
  config = small_digits_config(**{'optimizer.pruning.method': 'magnitude', 'optimizer.pruning.sparsity': 0.8,
                                  'optimizer.pruning.every': 5, **overrides})
  config.evals.sparsity = {'type': 'sparsity', 'every': 20}
  return config


def _checkpoint(workdir, step):
  """(flat params, flat masks) of a saved state."""
  state = ocp.StandardCheckpointer().restore(os.path.join(workdir, 'checkpoints', str(step), 'state'))
  masks = state['opt_state']['pruning']['inner_states']['default']['inner_state']['masks']
  return traverse_util.flatten_dict(state['params'], sep='/'), traverse_util.flatten_dict(masks, sep='/')


@pytest.fixture(scope='module')
def uninterrupted(tmp_path_factory):
  workdir = str(tmp_path_factory.mktemp('pruned'))
  train_and_evaluate(_config(), workdir)
  return workdir


def test_the_sparsity_evaluator_writes_each_kernel_and_the_run_reaches_the_target(uninterrupted):
  records = {r['step']: r for r in read_metrics(uninterrupted) if 'sparsity/total' in r}
  assert sorted(records) == [20, 40]
  params, masks = _checkpoint(uninterrupted, 40)
  assert sorted(masks) == sorted(KERNELS)
  size = sum(params[path].size for path in KERNELS)
  # Zhu & Gupta's cubic ramp over steps 0..30: the state after 20 steps holds the masks of step 15,
  # 0.8 (1 - (1 - 15/30)^3).
  assert records[20]['sparsity/total'] == pytest.approx(0.8 * (1 - 0.5 ** 3), abs=1 / size)
  assert records[40]['sparsity/total'] == pytest.approx(0.8, abs=1 / size)
  per_kernel = [records[40][f'sparsity/{path}'] for path in KERNELS]
  assert len(set(per_kernel)) == len(KERNELS)  # one global threshold: layers end up unequally sparse
  all_params = sum(p.size for p in params.values())
  assert records[40]['sparsity/nonzero_params'] == all_params - sum(int((params[p] == 0).sum()) for p in params)
  for path in KERNELS:
    assert np.all(params[path][~masks[path]] == 0.0)
    assert records[40][f'sparsity/{path}'] == (params[path] == 0.0).mean()


def test_masks_and_zeros_survive_a_resume(uninterrupted, tmp_path):
  workdir = str(tmp_path / 'resumed')
  # The run as if stopped after its step-20 checkpoint.
  shutil.copytree(uninterrupted, workdir, ignore=lambda directory, names: ['40'] if directory.endswith('checkpoints')
                  else [])
  params_20, masks_20 = _checkpoint(workdir, 20)
  assert 0 < sum(int((~m).sum()) for m in masks_20.values())
  train_and_evaluate(_config(), workdir)
  params, masks = _checkpoint(workdir, 40)
  expected_params, expected_masks = _checkpoint(uninterrupted, 40)
  for path in KERNELS:
    assert np.all(masks[path] <= masks_20[path])  # no pruned weight came back
    np.testing.assert_array_equal(masks[path], expected_masks[path])
    np.testing.assert_array_equal(params[path], expected_params[path])
    assert np.all(params[path][~masks[path]] == 0.0)


@pytest.mark.parametrize('overrides, message', [
    ({'optimizer.pruning.method': 'random'},
     r"^optimizer.pruning.method: unknown 'random'; valid methods are \['none', 'magnitude', 'n_m'\]$"),
    ({'ema_decay': 0.99}, r'^optimizer.pruning with ema_decay > 0: evaluation would read the EMA weights'),
])
def test_a_bad_setting_is_one_line_before_anything_runs(workdir, overrides, message):
  with pytest.raises(ConfigError, match=message):
    train_and_evaluate(_config(**overrides), workdir)
  assert not os.path.exists(workdir)
