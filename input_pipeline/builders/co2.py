"""Monthly Mauna Loa CO2 (statsmodels' `co2` data set) as an offline forecasting data set."""

import numpy as np

from input_pipeline.builders import in_memory, series

SEASON = 12  # months
CONTEXT = 36
HORIZON = 12
NUM_TEST = 120  # the last ten years, 1992-01 to 2001-12


def monthly_co2() -> np.ndarray:
  """Monthly means (ppm) of the weekly Mauna Loa record, 1958-03 to 2001-12: 526 values.

  Five months have no weekly reading (1958-06, 1958-10, 1964-02..04); they are
  interpolated linearly from their neighbours, all inside the train period.
  """
  from statsmodels.datasets import co2  # pylint: disable=g-import-not-at-top
  weekly = co2.load_pandas().data['co2']
  return weekly.resample('MS').mean().interpolate('linear').to_numpy(np.float64)


class LaminaCo2(in_memory.InMemoryBuilder, skip_registration=True):
  """Windows of monthly CO2: 36 past months (`context`) -> the next 12 (`label`), in ppm.

  Split (fixed, chronological; `series.split_origins`): test windows forecast months
  inside 1992-01..2001-12 (109 windows, one per origin month), train windows forecast
  months before 1992 (359 windows). Values are raw ppm: the task normalizes each window
  by its own context, so no statistic of the test period reaches the model.
  """

  RELEASE_NOTES = {'1.0.0': 'Monthly means, context 36, horizon 12, last 120 months test.'}
  INPUT_KEY = 'context'
  INPUT_SHAPE = (CONTEXT,)
  INPUT_DTYPE = np.float32
  LABEL_SHAPE = (HORIZON,)
  HOMEPAGE = 'https://www.statsmodels.org/stable/datasets/generated/co2.html'

  def _split_arrays(self):
    values = monthly_co2()
    train, test = series.split_origins(len(values), context=CONTEXT, horizon=HORIZON, num_test=NUM_TEST)
    return {name: series.windows(values, origins, context=CONTEXT, horizon=HORIZON)
            for name, origins in (('train', train), ('test', test))}
