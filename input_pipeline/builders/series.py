"""Forecasting windows from one series, split chronologically with nothing leaking back.

A window at origin t holds the `context` values y[t-context:t] and the `horizon` values
y[t:t+horizon] to forecast. The last `num_test` values form the test period, starting at
b = len(y) - num_test:
  train: every origin whose targets end before b (t + horizon <= b), so no train window
         sees a test value, in its context or its targets;
  test:  every origin t >= b, so each test target lies in the test period; the contexts
         may reach back into the train period (the past is known when forecasting).
Origins with targets on both sides of b belong to neither split.
"""

import numpy as np


def split_origins(length: int, *, context: int, horizon: int, num_test: int) -> tuple[np.ndarray, np.ndarray]:
  """(train, test) window origins for a series of `length` values, each in time order."""
  boundary = length - num_test
  if min(context, horizon) < 1 or num_test < horizon or boundary - horizon < context:
    raise ValueError(f'series of {length} values: cannot make context={context}, horizon={horizon} '
                     f'windows with num_test={num_test} (need num_test >= horizon and '
                     f'length - num_test >= context + horizon)')
  return np.arange(context, boundary - horizon + 1), np.arange(boundary, length - horizon + 1)


def windows(series: np.ndarray, origins: np.ndarray, *, context: int,
            horizon: int) -> tuple[np.ndarray, np.ndarray]:
  """(contexts [N, context], targets [N, horizon]) of `series` at `origins`."""
  return (series[origins[:, None] + np.arange(-context, 0)],
          series[origins[:, None] + np.arange(horizon)])
