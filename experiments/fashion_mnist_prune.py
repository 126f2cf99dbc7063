r"""The Fashion-MNIST ResNet (experiments/fashion_mnist_resnet.py) pruned to 90% sparsity or to 2:4,
fine-tuned from its trained dense run.

  # 90% of the pruned kernels' weights zero, by magnitude on Zhu & Gupta's gradual schedule:
  python -m train_lib.main --config=experiments/fashion_mnist_prune.py:sparsity=0.9 --workdir=/tmp/lamina/fmnist_prune90
  # 2 of every 4 input weights zero (NVIDIA's 2:4 layout), pruned once at the start as ASP does:
  python -m train_lib.main --config=experiments/fashion_mnist_prune.py:method=n_m --workdir=/tmp/lamina/fmnist_prune24

Args: method=magnitude|n_m, sparsity=F (magnitude's target), scope=global|per_layer (magnitude),
source=WORKDIR (the dense run to start from, default /tmp/lamina/fmnist_resnet), epochs=N
(default 6), tiny=True (from scratch, so a smoke test needs no source run). Every conv of the
residual stages is pruned; the stem conv (one input channel, 288 weights) and the classifier
stay dense, as is usual: they are small and each weight matters. Evaluator 'sparsity' writes
each pruned kernel's fraction of zeros. Target: test accuracy within 1 point of the dense
run's, at 90% and at 2:4; docs/edge.md has the figures.
"""

import ml_collections

from experiments import common, fashion_mnist_resnet

METHODS = ('magnitude', 'n_m')


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = common.parse_arg(arg, method='magnitude', sparsity=0.9, scope='global', source='/tmp/lamina/fmnist_resnet',
                         epochs=6.0, tiny=False)
  common.choose('fashion_mnist_prune', 'method', arg.method, dict.fromkeys(METHODS))
  config = fashion_mnist_resnet.get_config(f'epochs={arg.epochs},tiny={arg.tiny}')
  config.init_from.workdir = '' if arg.tiny else arg.source
  # Fine-tuning a converged network: a fifth of its peak learning rate, no warmup.
  config.optimizer.update({'learning_rate': 0.02, 'warmup_steps': 0})
  config.optimizer.pruning.update({'method': arg.method, 'sparsity': arg.sparsity, 'scope': arg.scope,
                                   'params': '(?!stem_conv/|head/).*kernel'})
  config.evals.sparsity = {'type': 'sparsity'}
  return config
