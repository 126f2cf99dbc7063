"""A tiny co2 forecasting run reports the seasonal-naive baseline as computed from the raw series."""

import numpy as np

from experiments import co2_forecast
from input_pipeline.builders import co2
from train_lib import train_and_evaluate


def test_co2_tiny_run_reports_the_seasonal_naive_baseline(tmp_path):
  final = train_and_evaluate(co2_forecast.get_config('tiny=True'), str(tmp_path))
  values = co2.monthly_co2()
  errors, scales = [], []
  for origin in range(526 - 120, 526 - 12 + 1):  # the test windows, computed from the raw series
    naive = [values[origin - 1 + h - 12 * int(np.ceil(h / 12))] for h in range(1, 13)]
    errors.append(np.asarray(naive) - values[origin:origin + 12])
    past = values[origin - 36:origin]
    scales.append(np.abs(past[12:] - past[:-12]).mean())
  errors, scales = np.asarray(errors), np.asarray(scales)
  assert final['eval/num_examples'] == 109
  np.testing.assert_allclose(final['eval/naive_mae'], np.abs(errors).mean(), rtol=1e-5)
  np.testing.assert_allclose(final['eval/naive_mse'], (errors**2).mean(), rtol=1e-5)
  np.testing.assert_allclose(final['eval/naive_rmse'], np.sqrt((errors**2).mean(-1)).mean(), rtol=1e-5)
  np.testing.assert_allclose(final['eval/naive_mase'], (np.abs(errors).mean(-1) / scales).mean(), rtol=1e-5)
  assert np.isfinite(final['eval/mae']) and final['eval/mae'] > 0
