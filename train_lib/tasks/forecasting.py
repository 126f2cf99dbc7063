"""Univariate forecasting: a models/ forecaster maps `context` past values to `horizon` future ones.

Each window is standardized by its own context (mean and standard deviation, as in
RevIN, Kim et al. 2022), the model forecasts in those units and the loss is their MSE.
Per-window scaling uses only the past the forecast is made from — no statistic of any
other window, so none of the test period — and lets one model serve a trending series
whose test values lie above everything seen in training.

Eval metrics are in the data's own units, and every one is also reported for the
seasonal-naive forecast of the same windows (`naive_` prefix): y[T+h] = y[T+h-m*ceil(h/m)],
the value one season (m = `season`) before, from the context.
  mae    mean absolute error over the horizon
  mse    mean squared error over the horizon (sqrt(eval/mse) is the RMSE over all points)
  rmse   root of each window's mse, averaged over windows
  mase   mae over the mean absolute seasonal difference |y[t] - y[t-m]| within the
         window's context (Hyndman & Koehler 2006, scaled per window as M4 scales per
         series): below 1 beats the in-sample seasonal-naive forecast. A context without
         seasonal variation (an eval padding row, say) is scaled by 1, not divided by 0.
"""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from train_lib.errors import ConfigError
from train_lib.tasks import base
from train_lib.tasks.classification import build_model


def seasonal_naive_index(context: int, horizon: int, season: int) -> np.ndarray:
  """Context positions the seasonal-naive forecast copies, one per horizon step."""
  return context - season + np.arange(horizon) % season


def forecast_errors(forecast: jax.Array, target: jax.Array, context: jax.Array, season: int) -> base.Metrics:
  """Per-window mae, mse, rmse, mase of `forecast` [B, H] against `target` [B, H]."""
  error = forecast - target
  mse = jnp.mean(error**2, axis=-1)
  mae = jnp.mean(jnp.abs(error), axis=-1)
  scale = jnp.mean(jnp.abs(context[:, season:] - context[:, :-season]), axis=-1)
  return {'mae': mae, 'mse': mse, 'rmse': jnp.sqrt(mse), 'mase': mae / jnp.where(scale > 0, scale, 1.0)}


class ForecastingTask(base.Task):
  config_fields = {'input_key': 'context', 'target_key': 'label', 'season': 12}

  def __init__(self, config: ml_collections.ConfigDict, data_info: dict):
    super().__init__(config, data_info)
    self.input_key = self.arg('input_key')
    self.target_key = self.arg('target_key')
    self.season = self.arg('season')
    context, horizon = (self._series_length(key) for key in (self.input_key, self.target_key))
    if not isinstance(self.season, int) or not 1 <= self.season < context:
      raise ConfigError(f'task.season must be an int in [1, {context}) (the context has {context} '
                        f'values), got {self.season!r}')
    self.naive_index = seasonal_naive_index(context, horizon, self.season)
    self.model = build_model(config.model, config, horizon=horizon)

  def _series_length(self, key: str) -> int:
    features = self.data_info['features']
    if key not in features:
      raise ConfigError(f"forecasting: dataset '{self.data_info['name']}' has no feature '{key}'; "
                        f'its features are {sorted(features)}')
    shape = features[key]['shape']
    if len(shape) != 1:
      raise ConfigError(f"forecasting: feature '{key}' must be one series [length], got shape {shape}")
    return shape[0]

  def _standardize(self, batch: dict) -> tuple[jax.Array, jax.Array, jax.Array]:
    """(context in window units, the windows' means [B, 1], standard deviations [B, 1])."""
    context = batch[self.input_key]
    mean = context.mean(-1, keepdims=True)
    std = context.std(-1, keepdims=True)
    std = jnp.where(std > 0, std, 1.0)  # a flat context: keep its units
    return (context - mean) / std, mean, std

  def init_variables(self, rng: jax.Array, batch: dict) -> dict:
    params_rng, dropout_rng = jax.random.split(rng)
    x, _, _ = self._standardize(batch)
    return self.model.init({'params': params_rng, 'dropout': dropout_rng}, x, train=False)

  def loss(self, params, state, batch, rng):
    x, mean, std = self._standardize(batch)
    forecast, new_state = self.model.apply({'params': params, **state.model_state}, x, train=True,
                                           rngs={'dropout': rng}, mutable=list(state.model_state))
    target = (batch[self.target_key] - mean) / std
    loss = jnp.mean((forecast - target)**2)
    mae = jnp.mean(jnp.abs(forecast - target) * std)
    return loss, (new_state, {'mae': mae})

  def eval_metrics(self, params, state, batch):
    x, mean, std = self._standardize(batch)
    forecast = self.model.apply({'params': params, **state.model_state}, x, train=False)
    context, target = batch[self.input_key], batch[self.target_key]
    naive = context[:, self.naive_index]
    metrics = forecast_errors(forecast * std + mean, target, context, self.season)
    baseline = forecast_errors(naive, target, context, self.season)
    loss = jnp.mean((forecast - (target - mean) / std)**2, axis=-1)
    return {'loss': loss, **metrics, **{f'naive_{k}': v for k, v in baseline.items()}}
