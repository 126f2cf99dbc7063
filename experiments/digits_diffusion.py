r"""A diffusion model of scikit-learn's 8x8 digits, scored by the digits CNN (offline).

  # The feature classifier first (the default experiment), then the diffusion model:
  python -m train_lib.main --config=experiments/digits_cnn.py --workdir=/tmp/lamina/digits
  python -m train_lib.main --config=experiments/digits_diffusion.py --workdir=/tmp/lamina/digits_diffusion
  # More samples later, from the command line:
  python -m train_lib.sample --workdir=/tmp/lamina/digits_diffusion --num=64 --sampler=ddim --steps=50 --out=grid.png

Args: classifier=WORKDIR (a digits_cnn run: the Fréchet distance's feature space; '' for grids
only), conditional=True (class-conditional, sampled with classifier-free guidance 2),
prediction=epsilon|v, schedule=cosine|linear, steps=N, tiny=True.

A U-Net (widths 16, 32; 4 GroupNorm groups; attention at 4x4) learns to predict the noise at T = 1000 steps.
Every 5,000 steps 1,000 samples are drawn with DDIM in 50 steps; at the end also with DDPM's
1,000 steps and DDIM's 10 (evals ddim50, ddpm1000, ddim10), each scored against the 360 test
digits: fd_digits_cnn, and fd_digits_cnn_floor for 1,000 training digits.
Target: DDPM-1000 within 3x the floor, DDIM-50 within 1.2x of DDPM-1000, DDIM-10 worse than
DDIM-50; docs/generative.md has the measured figures.
"""

import ml_collections

from experiments import common, common_generative

PIXELS = 'value_range(0, 1, in_min=0, in_max=16)'  # as experiments/digits_cnn.py reads them


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = common.parse_arg(arg, classifier='/tmp/lamina/digits', conditional=False, prediction='epsilon',
                         schedule='cosine', steps=10000, tiny=False)
  config = common_generative.base('digits', PIXELS, PIXELS, arg.classifier, 'digits_cnn')
  unet = {'channels': 16, 'channel_mult': (1, 2), 'num_res_blocks': 2, 'attention_levels': (1,), 'groups': 4,
          'dropout': 0.1}
  common_generative.diffusion(config, unet, schedule=arg.schedule, prediction=arg.prediction,
                              conditional=arg.conditional)
  config.kernels = 'xla'  # 8x8 images: library calls cost more than they save (as digits_cnn)
  config.batch_size = 128
  config.total_steps = arg.steps
  guidance = {'guidance': 2.0} if arg.conditional else {}
  samples = lambda name, steps, **kw: common_generative.samples(
      config, sampler={'name': name, 'steps': steps, **guidance}, **kw)
  config.evals.ddim50 = samples('ddim', 50, every=5000)
  config.evals.ddpm1000 = samples('ddpm', 1000, every=0)
  config.evals.ddim10 = samples('ddim', 10, every=0, grid=0)
  if arg.tiny:
    common_generative.shrink_for_tiny(config)
  return config
