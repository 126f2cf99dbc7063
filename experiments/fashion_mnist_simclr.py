r"""SimCLR pretraining (Chen et al. 2020) of the Fashion-MNIST ResNet, without labels.

  python -m train_lib.main --config=experiments/fashion_mnist_simclr.py --workdir=/tmp/lamina/fmnist_simclr

Args: epochs=N (default 15), compute_dtype=auto|float32|bfloat16, tiny=True. The checkpoint is
for config.init_from of experiments/fashion_mnist_resnet.py's classifier (the same config.model):
its parameters are the classifier's but for the head, plus the projector under
'simclr_projection', which the classifier does not load. Fine-tune all of it, or train a
linear probe on the frozen backbone:

  python -m train_lib.main --config=experiments/mnist_finetune.py:probe=True,data=fashion_mnist,labels=0,steps=2000,source=/tmp/lamina/fmnist_simclr \
      --workdir=/tmp/lamina/fmnist_simclr_probe

Each image gets two views: a random resized crop (20-100% of the area), a left-right flip and
a brightness/contrast jitter, drawn independently for 'image' and 'image2'; colour jitter and
blur, the rest of the paper's recipe, mean little on grey 28x28 images. Momentum SGD at the
paper's 0.3 x batch/256 with warmup and cosine stands in for LARS, which pays off at batch
sizes far above this one. eval/loss and eval/top1 rank each test view's partner among the other
views of its eval batch (1,999 candidates, against training's 511), so eval/loss sits above
train/loss. Measured losses, probes and times: docs/finetuning.md.
"""

import ml_collections

from experiments import common, fashion_mnist_resnet


def _augment(key: str) -> str:
  return (f"random_resized_crop(scale=(0.2, 1.0), key='{key}')|random_flip_lr(key='{key}')|"
          f"random_brightness_contrast(0.4, 0.4, key='{key}')")


# Labels are dropped: the task never reads them. Eval views are augmented the same way, from
# a fixed seed per batch, so eval/loss moves only with the model.
VIEWS = f"value_range(0, 1)|copy(image='image2')|{_augment('image')}|{_augment('image2')}|keep('image', 'image2')"


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = common.parse_arg(arg, epochs=15.0, compute_dtype='auto', tiny=False)
  # The supervised experiment's network, precision, schedule and logging; SimCLR's own task, views and rates.
  config = fashion_mnist_resnet.get_config(f'epochs={arg.epochs},compute_dtype={arg.compute_dtype}')
  config.task = ml_collections.ConfigDict({
      'name': 'simclr', 'views': ('image', 'image2'), 'temperature': 0.2,
      'projection_hidden': 128, 'projection_dim': 64})
  config.data.pp_train = VIEWS
  config.data.pp_eval = VIEWS
  # 256 images, 512 views a step: enough negatives for NT-Xent, and a step of well under a second.
  config.batch_size = 256
  config.optimizer.learning_rate = 0.3
  config.optimizer.weight_decay = 1e-4
  if arg.tiny:
    config.steps_per_call = 1
    common.shrink_for_tiny(config, eval_split='test[:1000]')
  return config
