r"""Monthly Mauna Loa CO2: an LSTM (or GRU) forecasts the next 12 months from the past 36.

  python -m train_lib.main --config=experiments/co2_forecast.py:model=lstm --workdir=/tmp/lamina/co2_lstm

Args: model=lstm|gru, seed=N, tiny=True.
Data: statsmodels' weekly co2 record as monthly means; windows forecasting 1992-2001 are
the test split, windows forecasting earlier months train (input_pipeline/builders/co2.py).
eval/mae, eval/rmse, eval/mase are in ppm (mase unitless) and eval/naive_* are the
seasonal-naive forecast's (each month = the same month a year before) on the same windows.
"""

import ml_collections

from experiments import common

MODELS = {'lstm': 'lstm_forecaster', 'gru': 'gru_forecaster'}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = common.parse_arg(arg, model='lstm', seed=0, tiny=False)
  config = common.base_config()
  config.seed = arg.seed
  config.data.name = 'co2'
  config.task = ml_collections.ConfigDict({'name': 'forecasting', 'season': 12})
  config.model = ml_collections.ConfigDict({'name': common.choose('co2_forecast', 'model', arg.model, MODELS),
                                           'hidden': 64})
  config.batch_size = 32
  config.eval_batch_size = 128
  config.total_steps = 1000
  config.optimizer.name = 'adam'
  config.optimizer.learning_rate = 3e-3
  config.optimizer.schedule = 'cosine'
  config.optimizer.warmup_steps = 100
  config.log_every = 100
  config.eval_every = 250
  config.checkpoint.every = 500
  if arg.tiny:
    common.shrink_for_tiny(config)
  return config
