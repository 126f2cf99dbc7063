"""What the GAN and diffusion experiments share: the data read as the data set's classifier reads
it, that classifier as the feature space of the sample evaluators, each family's task and
optimizer, and the tiny shrink.

A generator trains on images in [0, 1] through the same pp string as the classifier run named
by `classifier` (experiments/digits_cnn.py, experiments/fashion_mnist_resnet.py), so the
'samples' evaluators can score its samples in that classifier's feature space
(train_lib/evaluators/samples.py); classifier='' leaves only the grids.
"""

import ml_collections

from experiments import common


def base(data: str, pp_train: str, pp_eval: str, classifier: str, part: str) -> ml_collections.ConfigDict:
  """A generator's config on `data`; the classifier run `classifier` ('' for none) as frozen part `part`."""
  config = common.base_config()
  config.data.name = data
  config.data.pp_train = pp_train
  config.data.pp_eval = pp_eval
  config.compiler_options.update(common.CPU_LIBRARY_FUSIONS)
  # One step a device call: XLA:CPU runs convolutions inside a loop of steps several times slower
  # (a digits DCGAN: 7.6 against 29 steps/s; train_lib/steps.py).
  config.steps_per_call = 1
  config.ema_decay = 0.999
  config.eval_batch_size = 500
  config.log_every = 500
  config.checkpoint.every = 2000
  config.evals.eval = {'type': 'per_example', 'every': 2000}
  if classifier:
    config.frozen[part] = {'workdir': classifier}
  return config


def samples(config: ml_collections.ConfigDict, *, every: int, num: int = 1000, batch_size: int = 1000,
            sampler: dict | None = None, grid: int = 64) -> dict:
  """A 'samples' evaluator scored by the config's frozen classifier, if it has one."""
  evaluator = {'type': 'samples', 'every': every, 'num': num, 'batch_size': batch_size, 'grid': grid}
  if sampler is not None:
    evaluator['sampler'] = sampler
  if config.frozen.keys():
    evaluator['features'] = next(iter(config.frozen.keys()))
  return evaluator


def gan(config: ml_collections.ConfigDict, generator: dict, discriminator: dict, *, loss: str, r1: float,
        conditional: bool) -> None:
  """The GAN task, each network with its own Adam (2e-4, betas 0.5 / 0.999, as DCGAN)."""
  config.model = ml_collections.ConfigDict({'generator': generator, 'discriminator': discriminator})
  config.task = ml_collections.ConfigDict({'name': 'gan', 'loss': loss, 'r1_gamma': r1, 'conditional': conditional})
  config.optimizer.update({'name': 'adam', 'learning_rate': 2e-4, 'b1': 0.5, 'b2': 0.999, 'weight_decay': 0.0,
                           'schedule': 'constant', 'warmup_steps': 0})
  # Each network its own group, so its own Adam state; both take the settings above.
  config.optimizer.groups = {'generator': {}, 'discriminator': {}}


def diffusion(config: ml_collections.ConfigDict, unet: dict, *, schedule: str, prediction: str,
              conditional: bool) -> None:
  """The diffusion task at T = 1000 with a U-Net, AdamW 1e-3 with warmup and cosine decay."""
  config.model = ml_collections.ConfigDict({'name': 'unet', **unet})
  config.task = ml_collections.ConfigDict({'name': 'diffusion', 'schedule': schedule, 'num_steps': 1000,
                                           'prediction': prediction, 'conditional': conditional})
  config.optimizer.update({'name': 'adamw', 'learning_rate': 1e-3, 'weight_decay': 0.0, 'schedule': 'cosine',
                           'warmup_steps': 500, 'end_factor': 0.1, 'grad_clip_norm': 1.0})


def shrink_for_tiny(config: ml_collections.ConfigDict) -> None:
  """common.shrink_for_tiny, with 64 samples an evaluator and short samplers."""
  common.shrink_for_tiny(config)
  for evaluator in config.evals.values():
    if evaluator.type == 'samples':
      evaluator.update({'num': 64, 'batch_size': 64, 'grid': min(evaluator.grid, 64)})
      if 'sampler' in evaluator:
        evaluator.sampler.steps = min(evaluator.sampler.steps, 20)
