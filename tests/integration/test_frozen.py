"""Frozen parts: a network restored read-only from another run (here a digits CNN teaching a
logistic regression through the distillation task) is never changed, never saved with this run,
and restored again on resume. The probing evaluator is defined here, not in the trainer."""

import os

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from tests.conftest import small_digits_config
from train_lib import evaluators, train_and_evaluate
from train_lib.errors import ConfigError
from train_lib.metric_writer import read_metrics


class FrozenProbe(evaluators.Evaluator):
  """Keeps a host copy of the frozen parts each time it runs."""

  seen: list = []

  def run(self, state):
    FrozenProbe.seen.append(jax.tree.map(np.asarray, state.frozen))
    return evaluators.Result()


@pytest.fixture(scope='module')
def teacher(tmp_path_factory) -> str:
  workdir = str(tmp_path_factory.mktemp('teacher'))
  train_and_evaluate(small_digits_config(), workdir)
  return workdir


@pytest.fixture
def imitate(monkeypatch, teacher):
  """Configs of a logistic regression trained on the teacher's predicted distribution alone."""
  monkeypatch.setitem(evaluators.EVALUATORS, 'frozen_probe', FrozenProbe)
  monkeypatch.setattr(FrozenProbe, 'seen', [])

  def config(total_steps: int):
    c = small_digits_config(total_steps=total_steps, log_every=5, eval_every=10, **{'checkpoint.every': 10})
    c.task = {'name': 'distillation', 'alpha': 1.0, 'temperature': 1.0}
    c.model = {'name': 'logreg'}
    c.frozen.teacher = {'workdir': teacher}
    c.evals.probe = {'type': 'frozen_probe'}
    c.optimizer.update({'schedule': 'constant', 'warmup_steps': 0, 'learning_rate': 0.03})  # steps as total_steps
    return c

  return config


def _teacher_params(teacher: str):
  return ocp.StandardCheckpointer().restore(os.path.join(teacher, 'checkpoints', '40', 'state'))['params']


def _bit_identical(a, b) -> bool:
  return jax.tree.structure(a) == jax.tree.structure(b) and jax.tree.all(jax.tree.map(np.array_equal, a, b))


def test_a_frozen_network_is_unchanged_unsaved_and_reattached_on_resume(imitate, teacher, tmp_path):
  whole = str(tmp_path / 'whole')
  train_and_evaluate(imitate(20), whole)
  losses = [r['train/loss'] for r in read_metrics(whole) if 'train/loss' in r]
  assert losses[-1] < 0.5 * losses[0]  # the student learns the teacher's predictions
  assert len(FrozenProbe.seen) == 2 and all(_bit_identical(seen['teacher']['params'], _teacher_params(teacher))
                                            for seen in FrozenProbe.seen)  # after 10 and 20 steps
  metadata = ocp.StandardCheckpointer().metadata(os.path.join(whole, 'checkpoints', '20', 'state')).item_metadata
  tree = metadata.tree if hasattr(metadata, 'tree') else metadata
  assert tree['frozen'] is None and list(tree['params']) == ['head']  # the student's alone

  resumed = str(tmp_path / 'resumed')
  train_and_evaluate(imitate(10), resumed)
  FrozenProbe.seen.clear()
  train_and_evaluate(imitate(20), resumed)  # continues from the checkpoint at step 10
  assert len(FrozenProbe.seen) == 1 and _bit_identical(FrozenProbe.seen[0]['teacher']['params'],
                                                       _teacher_params(teacher))
  timeless = lambda records: [{k: v for k, v in r.items() if not k.startswith('perf/')} for r in records]
  assert timeless(read_metrics(resumed)) == timeless(read_metrics(whole))  # losses and evaluations


@pytest.mark.parametrize('frozen_cfg, message', [
    ({'workdir': '/nonexistent/run'}, r'frozen.teacher.workdir: no checkpoint in /nonexistent/run/checkpoints'),
    ({'workdir': None}, r'frozen.teacher.workdir is missing'),
    ({'workdir': 'TEACHER', 'step': 7}, r'frozen.teacher.workdir: no checkpoint at step 7 in .*; its steps are '
                                        r'\[20, 40\]'),
    ({'workdir': 'TEACHER', 'ema': True}, r'frozen.teacher.ema: the run in .* kept no EMA'),
    ({'workdir': 'TEACHER', 'stepp': 7}, r"frozen.teacher: unknown key\(s\) \['stepp'\]"),
])
def test_a_missing_or_mismatched_source_is_one_line(imitate, teacher, frozen_cfg, message, tmp_path):
  config = imitate(20)
  config.frozen.teacher = {k: teacher if v == 'TEACHER' else v for k, v in frozen_cfg.items()}
  with pytest.raises(ConfigError, match=message) as error:
    train_and_evaluate(config, str(tmp_path / 'run'))
  assert '\n' not in str(error.value) and not os.path.exists(tmp_path / 'run')


def test_a_task_asking_for_a_part_the_config_lacks_is_one_line(imitate, tmp_path):
  config = imitate(20)
  del config.frozen['teacher']
  with pytest.raises(ConfigError, match=r"config.frozen has no part 'teacher'; add config.frozen.teacher"):
    train_and_evaluate(config, str(tmp_path / 'run'))
