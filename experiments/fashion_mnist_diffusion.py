r"""A class-conditional diffusion model of Fashion-MNIST with classifier-free guidance, scored by
the Fashion-MNIST ResNet (offline).

  python -m train_lib.main --config=experiments/fashion_mnist_resnet.py --workdir=/tmp/lamina/fmnist_resnet
  python -m train_lib.main --config=experiments/fashion_mnist_diffusion.py --workdir=/tmp/lamina/fmnist_diffusion
  python -m train_lib.sample --workdir=/tmp/lamina/fmnist_diffusion --num=100 --guidance=3.0 --out=grid.png

Args: classifier=WORKDIR (a fashion_mnist_resnet run; '' for grids only), guidance=S (the
evaluators' scale), prediction=epsilon|v, schedule=cosine|linear, epochs=N, tiny=True.

A U-Net (widths 16, 32, 32 at 28, 14 and 7 pixels; 4 GroupNorm groups; attention at 7x7) predicts the noise at
T = 1000; 10% of the labels are dropped in training, so the one network also predicts
unconditionally. Every evaluation draws 1,000 samples, classes 0..9 in turn, with DDIM in 50
steps at guidance 3, and scores them against the 10,000 test images: fd_fmnist_resnet, its
floor (1,000 training images) and class_match, the share the ResNet puts in the class asked for.
Target: class_match >= 0.85; docs/generative.md has the measured figures and training time.
"""

import ml_collections

from experiments import common, common_generative


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = common.parse_arg(arg, classifier='/tmp/lamina/fmnist_resnet', guidance=3.0, prediction='epsilon',
                         schedule='cosine', epochs=5.0, tiny=False)
  config = common_generative.base('fashion_mnist', 'value_range(0, 1)|random_flip_lr', 'value_range(0, 1)',
                                  arg.classifier, 'fmnist_resnet')
  unet = {'channels': 16, 'channel_mult': (1, 2, 2), 'num_res_blocks': 2, 'attention_levels': (2,), 'groups': 4,
          'dropout': 0.1}
  common_generative.diffusion(config, unet, schedule=arg.schedule, prediction=arg.prediction, conditional=True)
  config.compute_dtype = 'auto'
  config.batch_size = 64
  config.num_epochs = arg.epochs
  config.evals.eval.split = 'test[:2000]'
  config.evals.ddim50 = common_generative.samples(
      config, every=5000, batch_size=500, sampler={'name': 'ddim', 'steps': 50, 'guidance': arg.guidance})
  if arg.tiny:
    common_generative.shrink_for_tiny(config)
    config.model.update({'channels': 8, 'groups': 4, 'num_res_blocks': 1})
    config.evals.eval.split = 'test[:64]'
  return config
