r"""The default experiment: a small CNN on scikit-learn's 8x8 digits (offline, ~1 minute).

  python -m train_lib.main --config=experiments/digits_cnn.py --workdir=/tmp/lamina/digits

Args (after ':'): tiny=True shrinks it to a few steps, e.g. experiments/digits_cnn.py:tiny=True.
Target: eval/accuracy >= 0.98 on the 360-image test split.
"""

import ml_collections

from experiments import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = common.parse_arg(arg, tiny=False)
  config = common.base_config()
  config.data.name = 'digits'
  # Pixels are 0..16. A one-pixel random shift is the augmentation digits tolerate.
  config.data.pp_train = 'value_range(0, 1, in_min=0, in_max=16)|random_crop(pad=1)'
  config.data.pp_eval = 'value_range(0, 1, in_min=0, in_max=16)'
  config.model = ml_collections.ConfigDict({
      'name': 'cnn', 'features': (32, 64), 'kernel_size': 3, 'pool': 'max', 'hidden': (128,), 'dropout': 0.25})
  # Plain XLA: oneDNN's calls cost more than they save on 8x8 images, and the custom-gradient
  # forms gain nothing here (docs/kernels.md).
  config.kernels = 'xla'
  config.batch_size = 64
  config.compiler_options.update(common.CPU_LIBRARY_FUSIONS)
  config.total_steps = 1500
  config.optimizer.name = 'adamw'
  config.optimizer.learning_rate = 3e-3
  config.optimizer.weight_decay = 1e-4
  config.optimizer.schedule = 'cosine'
  config.optimizer.warmup_steps = 100
  config.log_every = 100
  config.eval_every = 500
  config.checkpoint.every = 500
  if arg.tiny:
    common.shrink_for_tiny(config)
  return config
