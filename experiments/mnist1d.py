r"""MNIST-1D (Greydanus 2020, "Scaling down deep learning"): the paper's models and recipe.

  python -m train_lib.main --config=experiments/mnist1d.py:model=cnn --workdir=/tmp/lamina/mnist1d_cnn

Args: model=logreg|mlp|cnn|gru, seed=N, tiny=True.
Paper test accuracy: logistic 32%, MLP 68%, CNN 94%, GRU 91%. The recipe is the paper's: Adam,
learning rate 1e-2, batch 100, 6,000 steps, no weight decay, raw (unscaled) signals.
"""

import ml_collections

from experiments import common

# lamina registry names of the paper's models (models/registry.py).
PAPER_MODELS = {'logreg': 'logreg', 'mlp': 'mnist1d_mlp', 'cnn': 'mnist1d_cnn', 'gru': 'mnist1d_gru'}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = common.parse_arg(arg, model='cnn', seed=0, tiny=False)
  config = common.base_config()
  config.seed = arg.seed
  config.data.name = 'mnist1d'
  config.task.input_key = 'signal'
  config.model = ml_collections.ConfigDict({'name': common.choose('mnist1d', 'model', arg.model, PAPER_MODELS)})
  config.batch_size = 100
  config.compiler_options.update(common.CPU_LIBRARY_FUSIONS)
  config.eval_batch_size = 500
  config.total_steps = 6000
  config.optimizer.name = 'adam'
  config.optimizer.learning_rate = 1e-2
  config.log_every = 250
  config.eval_every = 1000
  config.checkpoint.every = 2000
  if arg.tiny:
    common.shrink_for_tiny(config)
  return config
