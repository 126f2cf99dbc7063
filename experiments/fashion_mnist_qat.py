r"""Quantization-aware fine-tuning of the Fashion-MNIST ResNet (experiments/fashion_mnist_resnet.py).

  python -m train_lib.main --config=experiments/fashion_mnist_qat.py:source=/tmp/lamina/fmnist_resnet \
      --workdir=/tmp/lamina/fmnist_qat
  # Its int8 weights, evaluated (the fake-quantized training's numbers, now in s8 dots):
  python -m train_lib.quantize --workdir=/tmp/lamina/fmnist_qat --out=/tmp/lamina/fmnist_qat_int8 --scheme=int8

Args: source=WORKDIR (the float run to start from; '' trains with quantization from scratch),
scheme=int8|int8_static|int8_weights|int4_weights (train_lib/quantization.py), epochs=N,
tiny=True. Every convolution and dense layer trains through qwix's fake quantization
(straight-through gradients) at a tenth of the float run's learning rate, for half an epoch:
from a converged float run, QAT only has to adapt it to the int8 grid, and its steps are slow on
a CPU (fake-quantized convolutions in plain XLA, where qwix sees them; docs/edge.md has the
rate). Target: within 0.3 points of the float run.
"""

import ml_collections

from experiments import common, fashion_mnist_resnet


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = common.parse_arg(arg, source='/tmp/lamina/fmnist_resnet', scheme='int8', epochs=0.5, tiny=False)
  config = fashion_mnist_resnet.get_config(f'epochs={arg.epochs},compute_dtype=float32,tiny={arg.tiny}')
  config.quantization.update({'mode': 'qat', 'scheme': arg.scheme})
  config.kernels = 'xla'
  if not arg.tiny:
    config.init_from.workdir = arg.source
    config.optimizer.update({'learning_rate': 0.01, 'warmup_steps': 0})
  return config
