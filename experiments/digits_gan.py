r"""A GAN of scikit-learn's 8x8 digits, scored by the digits CNN (offline).

  python -m train_lib.main --config=experiments/digits_cnn.py --workdir=/tmp/lamina/digits
  python -m train_lib.main --config=experiments/digits_gan.py --workdir=/tmp/lamina/digits_gan
  python -m train_lib.sample --workdir=/tmp/lamina/digits_gan --num=64 --out=grid.png

Args: classifier=WORKDIR (a digits_cnn run: the Fréchet distance's feature space; '' for grids
only), model=dcgan|mlp, loss=non_saturating|hinge, r1=GAMMA (0: none), spectral_norm=True,
conditional=True, steps=N, tiny=True.

Each step updates the discriminator and then the generator, each with its own Adam; the
generator's EMA (decay 0.999) draws the samples. Every 2,000 steps 1,000 samples are scored
against the 360 test digits: fd_digits_cnn, its floor (1,000 training digits) and,
unconditionally, the rarest and commonest class's share.
Target: Fréchet distance within 5x the floor, every class at least 5% of the samples;
docs/generative.md has the measured figures.
"""

import ml_collections

from experiments import common, common_generative
from experiments.digits_diffusion import PIXELS

NETWORKS = {
    'dcgan': ({'name': 'dcgan_generator', 'latent_dim': 64, 'channels': 32, 'num_upsamples': 2},
              {'name': 'dcgan_discriminator', 'channels': 32, 'num_downsamples': 2}),
    'mlp': ({'name': 'mlp_generator', 'latent_dim': 64, 'hidden': (256, 256)},
            {'name': 'mlp_discriminator', 'hidden': (256, 256)}),
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = common.parse_arg(arg, classifier='/tmp/lamina/digits', model='dcgan', loss='non_saturating', r1=1.0,
                         spectral_norm=False, conditional=False, steps=10000, tiny=False)
  config = common_generative.base('digits', PIXELS, PIXELS, arg.classifier, 'digits_cnn')
  generator, discriminator = common.choose('digits_gan', 'model', arg.model, NETWORKS)
  common_generative.gan(config, generator, {**discriminator, 'spectral_norm': arg.spectral_norm}, loss=arg.loss,
                        r1=arg.r1, conditional=arg.conditional)
  config.kernels = 'xla'
  config.batch_size = 64
  config.total_steps = arg.steps
  config.evals.samples = common_generative.samples(config, every=2000)
  if arg.tiny:
    common_generative.shrink_for_tiny(config)
  return config
