r"""Few labels: MNIST (the offline 5,000-digit set) from scratch or from a Fashion-MNIST run.

  # From scratch, 10 labels per class:
  python -m train_lib.main --config=experiments/mnist_finetune.py:labels=10 --workdir=/tmp/lamina/mnist_scratch10
  # Fine-tuning the supervised Fashion-MNIST ResNet (experiments/fashion_mnist_resnet.py):
  python -m train_lib.main --config=experiments/mnist_finetune.py:labels=10,source=/tmp/lamina/fmnist_resnet \
      --workdir=/tmp/lamina/mnist_tuned10
  # A linear probe of the MAE-pretrained ViT (experiments/fashion_mnist_mae.py) on Fashion-MNIST:
  python -m train_lib.main --config=experiments/mnist_finetune.py:model=vit,probe=True,data=fashion_mnist,labels=0,source=/tmp/lamina/fmnist_mae \
      --workdir=/tmp/lamina/fmnist_mae_probe

Args: source=WORKDIR (a run of the same model to start from; '' trains from scratch),
model=resnet|vit (the Fashion-MNIST experiments' networks), labels=N per class (0: the whole
train split), probe=True (train the classifier head only: a linear probe of the frozen
backbone), data=mnist|fashion_mnist, seed=N (the weights' and the label subset's), steps=N,
tiny=True. The classifier head always starts fresh: the source's head answered another
question (or, for a self-supervised source, does not exist). benchmarks/label_efficiency.py
runs the grid of starts, label counts and seeds and prints the table.
"""

import ml_collections

from experiments import common, fashion_mnist_resnet, fashion_mnist_vit

MODELS = {'resnet': fashion_mnist_resnet.RESNET, 'vit': fashion_mnist_vit.VIT_MODEL}
# Digits are not mirror-symmetric: no flips for MNIST.
AUGMENT = {'mnist': 'random_crop(pad=2)', 'fashion_mnist': 'random_crop(pad=2)|random_flip_lr'}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = common.parse_arg(arg, source='', model='resnet', labels=10, probe=False, data='mnist', seed=0, steps=600,
                         tiny=False)
  config = common.base_config()
  config.seed = arg.seed
  config.data.name = arg.data
  common.choose('mnist_finetune', 'data', arg.data, AUGMENT)
  config.data.train_split = f'train_per_class[{arg.labels}]' if arg.labels else 'train'
  config.data.subset_seed = arg.seed
  config.data.pp_train = f'value_range(0, 1)|{AUGMENT[arg.data]}'
  config.data.pp_eval = 'value_range(0, 1)'
  config.model = ml_collections.ConfigDict(common.choose('mnist_finetune', 'model', arg.model, MODELS))
  config.init_from.workdir = arg.source
  config.init_from.params = '(?!head/).*'
  config.batch_size = 64
  config.eval_batch_size = 500
  config.total_steps = arg.steps
  config.steps_per_call = 10
  config.log_every = 100
  config.checkpoint.every = 0
  config.optimizer.update({'schedule': 'cosine', 'warmup_steps': 50})
  if arg.model == 'resnet':
    config.compute_dtype = 'auto'
    config.compiler_options.update(common.CPU_LIBRARY_FUSIONS)
    config.optimizer.update({'name': 'momentum', 'nesterov': True, 'learning_rate': 0.05, 'weight_decay': 5e-4})
  else:
    # Layer-wise decay as the MAE paper fine-tunes its ViTs: blocks near the input move least.
    config.optimizer.update({'name': 'adamw', 'learning_rate': 1e-3, 'weight_decay': 0.05, 'grad_clip_norm': 1.0,
                             'layer_decay': 0.75 if arg.source else 0.0})
  if arg.probe:
    config.optimizer.trainable = 'head/.*'
    config.optimizer.update({'name': 'adam', 'learning_rate': 3e-3, 'weight_decay': 0.0, 'layer_decay': 0.0})
  if arg.tiny:
    config.steps_per_call = 1
    common.shrink_for_tiny(config, eval_split='test[:500]')
  return config
