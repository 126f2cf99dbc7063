"""config.evals: a new evaluator type is one class and a registry entry (added here by the test,
not by the trainer), it may write images, and bad types or keys fail in one line before any
compile."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

import input_pipeline
from tests.conftest import small_digits_config
from train_lib import evaluators, train_and_evaluate, trainer
from train_lib.errors import ConfigError
from train_lib.metric_writer import read_metrics


class PredictionGrid(evaluators.Evaluator):
  """The first `num` images of its split in a grid, each above a bar: green where the task's
  per-example accuracy says the model is right, red where it is wrong."""

  config_fields = {'num': 16}

  def __init__(self, name, cfg, context):
    super().__init__(name, cfg, context)
    self._accuracy = jax.jit(lambda state, batch: context.task.eval_metrics(state.params, state, batch)['accuracy'])

  def run(self, state):
    batch = next(input_pipeline.make_eval_batches(self.data, split=self.data.eval_split,
                                                  global_batch_size=self.arg('num'), process_index=0,
                                                  process_count=1))
    right = np.asarray(self._accuracy(state, jax.tree.map(jnp.asarray, batch)))
    tiles = []
    for image, ok in zip(batch['image'], right):
      tile = np.repeat((np.clip(image, 0, 1) * 255).astype(np.uint8), 3, axis=-1)
      bar = np.zeros((2, tile.shape[1], 3), np.uint8)
      bar[..., 1 if ok else 0] = 255
      tiles.append(np.concatenate([tile, bar]))
    return evaluators.Result(scalars={'right': float(right.sum())}, images={'predictions': np.concatenate(tiles, 1)})


@pytest.fixture
def grid_type(monkeypatch):
  monkeypatch.setitem(evaluators.EVALUATORS, 'grid', PredictionGrid)


def test_a_new_evaluator_type_writes_pngs_and_tensorboard_images(grid_type, workdir):
  config = small_digits_config()
  config.evals.grid = {'type': 'grid', 'num': 8, 'every': 20, 'split': 'train'}
  final = train_and_evaluate(config, workdir)
  for step in (20, 40):
    image = Image.open(os.path.join(workdir, 'samples', f'grid_predictions_{step}.png'))
    assert image.size == (8 * 8, 8 + 2) and image.mode == 'RGB'
  records = read_metrics(workdir)
  assert [r['step'] for r in records if 'grid/right' in r] == [20, 40]
  assert 0 <= final['grid/right'] <= 8
  assert final['eval/num_examples'] == 360  # the per_example evaluator still runs, on the test split
  events = EventAccumulator(os.path.join(workdir, 'tensorboard'), size_guidance={'images': 0}).Reload()
  assert [e.step for e in events.Images('grid/predictions')] == [20, 40]
  assert [e.step for e in events.Scalars('grid/right')] == [20, 40]


def test_an_evaluator_runs_on_its_own_split_preprocessing_and_period(workdir):
  config = small_digits_config()
  config.evals.minitrain = {'type': 'per_example', 'split': 'train[:100]', 'every': 10,
                            'pp': 'value_range(0, 1, in_min=0, in_max=16)', 'batch_size': 32}
  train_and_evaluate(config, workdir)
  records = read_metrics(workdir)
  assert [r['step'] for r in records if 'minitrain/num_examples' in r] == [10, 20, 30, 40]
  assert {r['minitrain/num_examples'] for r in records if 'minitrain/num_examples' in r} == {100}
  assert [r['step'] for r in records if 'eval/num_examples' in r] == [20, 40]


@pytest.mark.parametrize('evals, message', [
    ({'eval': {'type': 'per_exemple'}},
     r"evals.eval.type: unknown evaluator type 'per_exemple'; valid evaluator types are \['captioning', 'per_example', 'retrieval', 'samples', 'sparsity', 'zero_shot'\]"),
    ({'eval': {'kind': 'per_example'}}, r'evals.eval needs a type'),
    ({'eval': {'type': 'per_example', 'num': 3}},
     r"evals.eval: unknown key\(s\) \['num'\]; valid keys are \['batch_size', 'every', 'pp', 'split', 'type'\]"),
    ({'eval': {'type': 'per_example', 'every': 7}}, r'evals.eval.every=7 must be a multiple of steps_per_call=2'),
    ({'eval': {'type': 'per_example', 'split': 'tset'}}, r"evals.eval.split: .*'tset'"),
    ({'eval': {'type': 'per_example', 'pp': 'no_such_op'}}, r'evals.eval.pp: .*no_such_op'),
    ({'train': {'type': 'per_example'}}, r"evals.train: 'train/' holds the trainer's own metrics"),
    ({'ranks': {'type': 'retrieval', 'pairs': (('image', 'text'),)}},
     r"evals.ranks: type 'retrieval' ranks a contrastive task's embeddings; task 'classification' has no towers"),
])
def test_bad_evaluators_are_one_line_before_compiling_and_leave_no_workdir(evals, message, workdir, monkeypatch):
  monkeypatch.setattr(trainer, '_compile', lambda run: pytest.fail('compiled the train step'))
  config = small_digits_config(steps_per_call=2)
  config.evals = evals
  with pytest.raises(ConfigError, match=message) as error:
    train_and_evaluate(config, workdir)
  assert '\n' not in str(error.value)
  assert not os.path.exists(workdir)
