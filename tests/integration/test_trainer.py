"""The trainer end to end: metrics, checkpoints, equivalences and numerical guards."""

import json
import os

import jax
import numpy as np
import pytest
from flax import linen as nn

from experiments import digits_cnn
from tests.conftest import small_digits_config
from train_lib import state_init, train_and_evaluate
from train_lib.errors import NonFiniteLossError
from train_lib.metric_writer import read_metrics


def _train_records(records):
  return [r for r in records if 'train/loss' in r]


def test_run_writes_metrics_config_tensorboard_and_checkpoints(workdir):
  final = train_and_evaluate(small_digits_config(), workdir)
  records = read_metrics(workdir)
  assert [r['step'] for r in records] == [10, 20, 30, 40]
  assert records[-1]['eval/num_examples'] == 360  # every test image, once
  assert 0.0 <= final['eval/accuracy'] <= 1.0
  assert final['eval/accuracy'] == records[-1]['eval/accuracy']
  assert records[0]['perf/examples_per_sec'] > 0
  assert json.load(open(os.path.join(workdir, 'config.json')))['data']['name'] == 'digits'
  assert sorted(os.listdir(os.path.join(workdir, 'checkpoints'))) == ['20', '40']
  assert any(f.startswith('events.out.tfevents') for f in os.listdir(os.path.join(workdir, 'tensorboard')))


def test_default_experiment_learns_digits_in_float32_and_bfloat16_alike(tmp_path):
  # One test image is 0.28 points, so single runs differ by more than the half point
  # asked for; the means of three seeds are compared.
  accuracy = {}
  for dtype in ('float32', 'bfloat16'):
    runs = []
    for seed in range(3):
      config = digits_cnn.get_config()
      config.seed = seed
      config.compute_dtype = dtype
      config.eval_every = config.checkpoint.every = 0
      runs.append(train_and_evaluate(config, str(tmp_path / f'{dtype}_{seed}'))['eval/accuracy'])
    accuracy[dtype] = float(np.mean(runs))
  assert accuracy['float32'] >= 0.98, accuracy
  assert accuracy['bfloat16'] >= accuracy['float32'] - 0.005, accuracy  # no worse by more than half a point


def test_finished_run_is_not_retrained(workdir):
  first = train_and_evaluate(small_digits_config(), workdir)
  lines = open(os.path.join(workdir, 'metrics.jsonl')).read()
  again = train_and_evaluate(small_digits_config(), workdir)
  assert again['eval/accuracy'] == first['eval/accuracy']
  assert open(os.path.join(workdir, 'metrics.jsonl')).read() == lines


@pytest.mark.parametrize('eval_batch_size', [7, 1000])
def test_eval_counts_every_example_once(tmp_path, eval_batch_size):
  config = small_digits_config(total_steps=10, eval_every=0, eval_batch_size=eval_batch_size,
                               **{'checkpoint.every': 0})
  final = train_and_evaluate(config, str(tmp_path))
  assert final['eval/num_examples'] == 360


def test_gradient_accumulation_matches_one_big_batch(tmp_path):
  # Without dropout the mean of micro-batch gradients is the full-batch gradient.
  base = {'model.dropout': 0.0, 'total_steps': 20, 'eval_every': 0, 'checkpoint.every': 0}
  one = train_and_evaluate(small_digits_config(**base), str(tmp_path / 'one'))
  four = train_and_evaluate(small_digits_config(grad_accum_steps=4, **base), str(tmp_path / 'four'))
  a, b = _train_records(read_metrics(str(tmp_path / 'one'))), _train_records(read_metrics(str(tmp_path / 'four')))
  np.testing.assert_allclose([r['train/loss'] for r in a], [r['train/loss'] for r in b], rtol=1e-5)
  assert one['eval/accuracy'] == pytest.approx(four['eval/accuracy'], abs=1 / 360)


def test_same_seed_same_run_other_seed_differs(tmp_path):
  kw = {'total_steps': 10, 'eval_every': 0, 'checkpoint.every': 0}
  a = train_and_evaluate(small_digits_config(**kw), str(tmp_path / 'a'))
  b = train_and_evaluate(small_digits_config(**kw), str(tmp_path / 'b'))
  c = train_and_evaluate(small_digits_config(seed=1, **kw), str(tmp_path / 'c'))
  assert a['train/loss'] == b['train/loss']
  assert a['train/loss'] != c['train/loss']


def test_ema_and_bfloat16_compute_run(tmp_path):
  final = train_and_evaluate(
      small_digits_config(total_steps=200, ema_decay=0.9, compute_dtype='bfloat16', eval_every=0,
                          **{'checkpoint.every': 0}), str(tmp_path))
  assert final['eval/accuracy'] > 0.8


def test_nan_loss_stops_the_run_and_names_the_step(workdir):
  config = small_digits_config(**{'optimizer.learning_rate': 1e30, 'optimizer.warmup_steps': 0})
  with pytest.raises(NonFiniteLossError, match=r'non-finite at step \d+'):
    train_and_evaluate(config, workdir)
  assert os.listdir(os.path.join(workdir, 'checkpoints')) == []  # no NaN state was saved


# 20 steps, evaluated and saved at the end only: the run the variants below are compared with.
TWENTY_STEPS = {'total_steps': 20, 'eval_every': 0, 'checkpoint.every': 0}


@pytest.fixture(scope='module')
def twenty_steps(tmp_path_factory):
  """(workdir, final metrics) of small_digits_config(**TWENTY_STEPS), trained once for the tests that read it."""
  workdir = str(tmp_path_factory.mktemp('twenty_steps'))
  return workdir, train_and_evaluate(small_digits_config(**TWENTY_STEPS), workdir)


def test_several_steps_per_call_equal_single_steps(tmp_path, twenty_steps):
  workdir, single = twenty_steps
  fused = train_and_evaluate(small_digits_config(steps_per_call=5, **TWENTY_STEPS), str(tmp_path / 'k5'))
  a, b = read_metrics(workdir), read_metrics(str(tmp_path / 'k5'))
  assert [r['step'] for r in a] == [r['step'] for r in b] == [10, 20]
  np.testing.assert_allclose([r['train/loss'] for r in a], [r['train/loss'] for r in b], rtol=1e-5)
  assert single['eval/accuracy'] == pytest.approx(fused['eval/accuracy'], abs=1 / 360)


def test_grain_worker_processes_feed_the_same_batches(tmp_path, twenty_steps):
  train_and_evaluate(small_digits_config(**{'data.worker_count': 1}, **TWENTY_STEPS), str(tmp_path / 'worker'))
  inline, worker = read_metrics(twenty_steps[0]), read_metrics(str(tmp_path / 'worker'))
  assert [r['train/loss'] for r in inline] == [r['train/loss'] for r in worker]


def test_dry_run_compiles_reports_and_trains_nothing(workdir, caplog):
  caplog.set_level('INFO')
  final = train_and_evaluate(small_digits_config(dry_run=True), workdir)
  messages = [r.getMessage() for r in caplog.records]
  report = next(m for m in messages if m.startswith('Dry run'))
  assert final['perf/model_flops_per_step'] > 1e7  # the digits CNN: ~1e8 per step of 64
  assert "['hidden_0']['kernel'] (256, 128)" in report and 'MiB per device' in report
  assert not os.path.exists(os.path.join(workdir, 'checkpoints'))
  assert not os.path.exists(os.path.join(workdir, 'metrics.jsonl'))


def test_mfu_is_logged(twenty_steps):
  workdir, _ = twenty_steps
  record = read_metrics(workdir)[-1]
  assert 0 < record['perf/mfu'] < 1
  assert record['perf/model_flops_per_step'] > 1e7
  assert os.path.exists(os.path.join(workdir, 'peak_flops.json'))


def test_profiler_writes_a_trace_of_the_chosen_steps(workdir):
  train_and_evaluate(small_digits_config(total_steps=10, eval_every=0, log_every=5, **{'checkpoint.every': 0,
                                         'profile.first_step': 2, 'profile.num_steps': 3}), workdir)
  traces = [f for _, _, files in os.walk(os.path.join(workdir, 'profile')) for f in files]
  assert any(f.endswith(('.xplane.pb', '.trace.json.gz')) for f in traces), traces


def test_nothing_recompiles_after_the_first_step(tmp_path):
  """More steps, logs and evaluations must not mean more compilations."""
  compiles = []  # JAX times a program loaded from the persistent cache as a compilation too
  jax.monitoring.register_event_duration_secs_listener(
      lambda event, duration, **kw: compiles.append(event) if event.endswith('backend_compile_duration') else None)

  def count(total_steps, name):
    start = len(compiles)
    train_and_evaluate(small_digits_config(total_steps=total_steps, steps_per_call=2, log_every=2, eval_every=10),
                       str(tmp_path / name))
    return len(compiles) - start

  count(10, 'warm')  # first use of the data and of jax's own helpers
  assert count(10, 'short') == count(40, 'long') > 0


def test_unoptimised_init_compile_gives_the_optimised_values_up_to_rounding():
  def create(rng):
    keys = jax.random.split(rng, 3)
    return {'conv': nn.initializers.lecun_normal()(keys[0], (3, 3, 32, 64)),
            'embed': nn.initializers.normal(0.02)(keys[1], (512, 64)),
            'dense': nn.initializers.xavier_uniform()(keys[2], (64, 256))}

  rng = jax.random.PRNGKey(0)
  sharding = jax.sharding.SingleDeviceSharding(jax.devices()[0])
  shardings = jax.tree.map(lambda _: sharding, jax.eval_shape(create, rng))
  optimised = jax.jit(create)(rng)
  for name, value in state_init.init_state(create, rng, shardings).items():
    expected = np.asarray(optimised[name])
    # Rounding only (a few float32 ulps), far below any init's scale.
    np.testing.assert_allclose(np.asarray(value), expected, rtol=0, atol=1e-6 * np.abs(expected).max())
