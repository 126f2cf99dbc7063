"""Recurrent models (LSTM/GRU), the co2 forecasting data and the forecasting task.

The scanned layers are checked against a plain Python loop over the equations in
models/recurrent.py's docstring; the seasonal-naive numbers the trainer prints are
checked against a direct computation on the raw series.
"""

import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from jax.sharding import PartitionSpec as P

import models
from experiments import co2_forecast
from input_pipeline.builders import co2, series
from models import recurrent
from train_lib.errors import ConfigError
from train_lib.tasks import forecasting


def _key(seed: int) -> jax.Array:
  return jax.random.key(seed, impl='rbg')


def _normal(shape: tuple[int, ...], seed: int = 0) -> jax.Array:
  return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


def _init(model: nn.Module, x: jax.Array) -> dict:
  return nn.meta.unbox(jax.jit(lambda x: model.init(_key(0), x, train=False))(x))


def _apply(model: nn.Module, variables: dict, x: jax.Array) -> np.ndarray:
  return np.asarray(jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, x))


@pytest.mark.parametrize('model,in_shape,in_dtype,out_shape', [
    (models.get('gru_classifier', num_classes=5, hidden=8), (3, 11), jnp.float32, (3, 5)),
    (models.get('lstm_classifier', num_classes=5, hidden=8, num_layers=2, bidirectional=True),
     (3, 11, 4), jnp.float32, (3, 5)),
    (models.get('mnist1d_gru', num_classes=10), (3, 40, 1), jnp.float32, (3, 10)),
    (models.get('lstm_forecaster', horizon=12, hidden=8), (3, 36), jnp.float32, (3, 12)),
    (models.get('lstm_lm', vocab_size=17, embed_dim=8, hidden=8, num_layers=2), (3, 9), jnp.int32, (3, 9, 17)),
    (models.get('gru_lm', vocab_size=17, embed_dim=8, hidden=8), (3, 9), jnp.int32, (3, 9, 17)),
])
def test_output_shapes(model, in_shape, in_dtype, out_shape):
  out = jax.eval_shape(lambda: model.init_with_output(_key(0), jnp.zeros(in_shape, in_dtype), train=False))[0]
  assert out.shape == out_shape and out.dtype == jnp.float32


def test_mnist1d_gru_is_the_papers_model():
  _, variables = jax.eval_shape(
      lambda: models.get('mnist1d_gru', num_classes=10).init_with_output(_key(0), jnp.zeros((1, 40)), train=False))
  params = nn.meta.unbox(variables['params'])
  # GRUBase: torch.nn.GRU(1, 6, bidirectional=True), then Linear(2 * 6 * 40, 10).
  assert params['head']['kernel'].shape == (480, 10)
  assert sum(p.size for p in jax.tree.leaves(params)) == 5_134


def test_logical_axis_names():
  _, variables = jax.eval_shape(lambda: models.get('lstm_lm', vocab_size=7).init_with_output(
      _key(0), jnp.zeros((1, 3), jnp.int32), train=False))
  specs = nn.get_partition_spec(variables)['params']
  assert specs['embed']['embedding'] == P('vocab', 'embed')
  assert specs['rnn']['layer_0_forward']['input']['kernel'] == P('embed', 'mlp')
  assert specs['rnn']['layer_0_forward']['step']['recurrent']['kernel'] == P('embed', 'mlp')
  assert specs['head']['kernel'] == P('embed', 'vocab')


def _sigmoid(x: np.ndarray) -> np.ndarray:
  return 1 / (1 + np.exp(-x))


def _reference_layer(x: np.ndarray, p: dict, cell: str, reverse: bool) -> np.ndarray:
  """The LSTM/GRU equations, one time step per Python iteration, in float64."""
  w, b = p['input']['kernel'], p['input']['bias']
  u, b_h = p['step']['recurrent']['kernel'], p['step']['recurrent'].get('bias', 0.0)
  batch, steps, _ = x.shape
  h = c = np.zeros((batch, u.shape[0]))
  out = np.zeros((batch, steps, u.shape[0]))
  for t in (reversed(range(steps)) if reverse else range(steps)):
    xt = x[:, t] @ w + b
    if cell == 'lstm':
      i, f, g, o = np.split(xt + h @ u, 4, axis=-1)
      c = _sigmoid(f) * c + _sigmoid(i) * np.tanh(g)
      h = _sigmoid(o) * np.tanh(c)
    else:
      (x_r, x_z, x_n), (u_r, u_z, u_n) = np.split(xt, 3, -1), np.split(h @ u + b_h, 3, -1)
      r, z = _sigmoid(x_r + u_r), _sigmoid(x_z + u_z)
      h = (1 - z) * np.tanh(x_n + r * u_n) + z * h
    out[:, t] = h
  return out


@pytest.mark.parametrize('cell', recurrent.CELLS)
def test_scanned_stack_equals_a_python_loop(cell):
  stack = recurrent.RecurrentStack(cell, hidden=5, num_layers=2, bidirectional=True)
  x = _normal((3, 7, 2))
  variables = _init(stack, x)
  params = jax.tree.map(lambda p: np.asarray(p, np.float64), variables['params'])
  expected = np.asarray(x, np.float64)
  for i in range(2):
    expected = np.concatenate([_reference_layer(expected, params[f'layer_{i}_{d}'], cell, d == 'backward')
                               for d in ('forward', 'backward')], -1)
  np.testing.assert_allclose(_apply(stack, variables, x), expected, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize('bidirectional', [False, True])
def test_only_a_bidirectional_layer_reads_the_future(bidirectional):
  stack = recurrent.RecurrentStack('gru', hidden=4, bidirectional=bidirectional)
  x = _normal((2, 6, 3))
  variables = _init(stack, x)
  changed = np.abs(_apply(stack, variables, x) - _apply(stack, variables, x.at[:, -1].add(1.0))) > 1e-6
  forward = changed[..., :4]
  assert not forward[:, :-1].any() and forward[:, -1].all()
  if bidirectional:
    assert changed[..., 4:].all()  # the backward half reads the last step first


def test_final_readout_is_each_directions_last_state():
  clf = models.get('gru_classifier', num_classes=3, hidden=4, bidirectional=True)
  x = _normal((2, 6))
  variables = _init(clf, x)
  outputs = _apply(recurrent.RecurrentStack('gru', 4, bidirectional=True), {'params': variables['params']['rnn']},
                   x[..., None])
  head = variables['params']['head']
  final = np.concatenate([outputs[:, -1, :4], outputs[:, 0, 4:]], -1)
  np.testing.assert_allclose(_apply(clf, variables, x), final @ head['kernel'] + head['bias'], atol=1e-5)


def test_lm_is_causal():
  lm = models.get('lstm_lm', vocab_size=11, embed_dim=6, hidden=8, num_layers=2)
  tokens = jnp.asarray(np.random.default_rng(0).integers(0, 11, size=(2, 10)), jnp.int32)
  variables = _init(lm, tokens)
  before = _apply(lm, variables, tokens)
  after = _apply(lm, variables, tokens.at[:, 6].set((tokens[:, 6] + 1) % 11))
  np.testing.assert_array_equal(after[:, :6], before[:, :6])
  assert (np.abs(after[:, 6:] - before[:, 6:]).max(-1) > 1e-6).all()


def test_dropout_acts_between_layers_and_only_in_training():
  x = _normal((2, 5, 3))

  def outputs(num_layers):
    stack = recurrent.RecurrentStack('lstm', 4, num_layers=num_layers, dropout=0.5)
    variables = _init(stack, x)
    run = jax.jit(lambda seed, train: stack.apply(variables, x, train=train, rngs={'dropout': _key(seed)}),
                  static_argnums=1)
    return lambda seed, train=True: np.asarray(run(seed, train))

  two, one = outputs(2), outputs(1)
  assert not np.allclose(two(1), two(2))
  np.testing.assert_array_equal(two(1, train=False), two(2, train=False))
  np.testing.assert_array_equal(one(1), one(2))  # no dropout after the last layer


@pytest.mark.parametrize('name,fields,needle', [
    ('gru_classifier', {'num_classes': 2, 'cell': 'rnn'}, "cell='rnn' is not one of \\['lstm', 'gru'\\]"),
    ('gru_classifier', {'num_classes': 2, 'readout': 'mean'}, 'readout'),
    ('lstm_forecaster', {'horizon': 2, 'num_layers': 0}, 'num_layers'),
    ('lstm_lm', {'vocab_size': 5, 'cell': 'rnn'}, 'cell'),
    ('lstm_forecaster', {}, 'horizon'),
])
def test_bad_fields_fail_at_construction(name, fields, needle):
  with pytest.raises(ValueError, match=needle):
    models.get(name, **fields)


def test_chronological_split_never_leaks():
  length, context, horizon, num_test = 100, 8, 3, 20
  train, test = series.split_origins(length, context=context, horizon=horizon, num_test=num_test)
  months = np.arange(length)  # each value is its own time index
  train_x, train_y = series.windows(months, train, context=context, horizon=horizon)
  test_x, test_y = series.windows(months, test, context=context, horizon=horizon)
  boundary = length - num_test
  assert train_x.max() < boundary and train_y.max() < boundary  # train sees no test value
  assert test_y.min() == boundary and test_y.max() == length - 1  # every test month is forecast
  assert (train_y[:, 0] == train_x[:, -1] + 1).all() and (test_y[:, 0] == test_x[:, -1] + 1).all()
  assert (len(train), len(test)) == (boundary - horizon - context + 1, num_test - horizon + 1)
  with pytest.raises(ValueError, match='num_test'):
    series.split_origins(20, context=8, horizon=3, num_test=10)


def test_co2_builder_splits_the_monthly_series(tmp_path):
  values = co2.monthly_co2()
  assert len(values) == 526 and np.isfinite(values).all()
  arrays = co2.LaminaCo2(data_dir=str(tmp_path))._split_arrays()
  (train_x, train_y), (test_x, test_y) = arrays['train'], arrays['test']
  assert train_x.shape == (359, 36) and test_x.shape == (109, 36) and test_y.shape == (109, 12)
  np.testing.assert_array_equal(test_y[-1], values[-12:])
  np.testing.assert_array_equal(train_y[-1], values[526 - 120 - 12:526 - 120])


def test_seasonal_naive_copies_the_value_one_season_back():
  y = np.arange(100.0)
  context, horizon, season, origin = 20, 30, 12, 50
  index = forecasting.seasonal_naive_index(context, horizon, season)
  naive = y[origin - context:origin][index]
  last = origin - 1  # the last observed index: the forecast of step h targets y[last + h]
  direct = [y[last + h - season * int(np.ceil(h / season))] for h in range(1, horizon + 1)]
  np.testing.assert_array_equal(naive, direct)


def _forecasting_task(season: int = 12) -> forecasting.ForecastingTask:
  config = co2_forecast.get_config('tiny=True')
  config.task.season = season
  config.model.hidden = 8
  info = {'name': 'co2', 'features': {'context': {'shape': (36,)}, 'label': {'shape': (12,)}}}
  return forecasting.ForecastingTask(config, info)


def test_forecast_metrics_are_in_data_units():
  task = _forecasting_task()
  rng = np.random.default_rng(0)
  batch = {'context': jnp.asarray(rng.normal(size=(4, 36)), jnp.float32),
           'label': jnp.asarray(rng.normal(size=(4, 12)), jnp.float32)}
  params = nn.meta.unbox(jax.jit(task.init_variables)(_key(0), batch))['params']
  state = types.SimpleNamespace(model_state={})  # all the task reads of the train state
  evaluate = jax.jit(lambda batch: task.eval_metrics(params, state, batch))
  metrics, scaled = evaluate(batch), evaluate(jax.tree.map(lambda v: 3 * v + 100, batch))
  # Each window is standardized by its own context: 3x the data gives 3x the errors.
  for name in ('mae', 'rmse', 'naive_mae', 'naive_rmse'):
    np.testing.assert_allclose(scaled[name], 3 * metrics[name], rtol=1e-3)
  for name in ('mase', 'naive_mase', 'loss'):
    np.testing.assert_allclose(scaled[name], metrics[name], rtol=1e-3)


def test_season_must_fit_in_the_context():
  with pytest.raises(ConfigError, match=r'task.season must be an int in \[1, 36\)'):
    _forecasting_task(season=36)


def test_unknown_variant_is_a_one_line_config_error():
  with pytest.raises(ConfigError, match=r"^co2_forecast: unknown model 'rnn'; valid models are \['gru', 'lstm'\]$"):
    co2_forecast.get_config('model=rnn')
