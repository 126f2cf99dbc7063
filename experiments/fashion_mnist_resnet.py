r"""A small ResNet on the full Fashion-MNIST (60k train / 10k test), offline.

  python -m train_lib.main --config=experiments/fashion_mnist_resnet.py --workdir=/tmp/lamina/fmnist_resnet

Args: epochs=N (default 12), compute_dtype=auto|float32|bfloat16, tiny=True. Target: >= 92%
test accuracy (anchors: a 2-layer CNN 91.6%, ResNet-18 94.9%), in bf16 as in f32. The stem
pools 28x28 to 14x14 before the residual stages because XLA:CPU's convolution weight-gradients
are slow at full resolution with few channels; see the closing note of the foundation issue
for timings. Convolutions run through oneDNN where it can (kernels=auto: one CPU device;
kernels/onednn_conv.py), in bf16 where the CPU multiplies it fast (compute_dtype=auto: AMX or
AVX-512 BF16), else in f32.
"""

import ml_collections

from experiments import common

# The network, shared with experiments/fashion_mnist_simclr.py, whose pretrained backbone this
# classifier can start from (config.init_from).
RESNET = {'name': 'resnet', 'stage_sizes': (2, 2), 'width': 32, 'stem': 'small', 'block': 'basic'}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = common.parse_arg(arg, epochs=12.0, compute_dtype='auto', tiny=False)
  config = common.base_config()
  config.data.name = 'fashion_mnist'
  config.data.pp_train = 'value_range(0, 1)|random_crop(pad=2)|random_flip_lr'
  config.data.pp_eval = 'value_range(0, 1)'
  config.model = ml_collections.ConfigDict(RESNET)
  config.batch_size = 128
  # 10 steps a device call: dispatch and the per-call host work paid once per 10 steps.
  config.steps_per_call = 10
  config.compute_dtype = arg.compute_dtype
  config.compiler_options.update(common.CPU_LIBRARY_FUSIONS)
  config.eval_batch_size = 1000
  config.num_epochs = arg.epochs
  config.optimizer.name = 'momentum'
  config.optimizer.nesterov = True
  config.optimizer.learning_rate = 0.1
  config.optimizer.weight_decay = 5e-4
  config.optimizer.schedule = 'cosine'
  config.optimizer.warmup_steps = 200
  config.log_every = 100
  config.eval_every = 1000
  config.checkpoint.every = 1000
  if arg.tiny:
    config.steps_per_call = 1
    # 1,000 of the 10,000 test images: evaluating all took 5 of the tiny ResNet's 14 s.
    common.shrink_for_tiny(config, eval_split='test[:1000]')
  return config
