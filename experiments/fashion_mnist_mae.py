r"""Masked-autoencoder pretraining (He et al. 2022) of fashion_mnist_vit's ViT on Fashion-MNIST's 60k training images.

  python -m train_lib.main --config=experiments/fashion_mnist_mae.py --workdir=/tmp/lamina/fmnist_mae

Args: epochs=N (default 16), tiny=True. The checkpoint is for what follows: its parameters are
the ViT encoder of experiments/fashion_mnist_vit.py under the same paths (the same VIT_MODEL) plus
'mae_decoder', so a classification run with config.init_from pointing at this workdir starts from
the pretrained encoder and a fresh head (fine-tuning, or a linear probe training the head alone).
No labels are used; eval/loss is the masked-patch loss on the test images with a fixed mask.

75% of the 16 patches (7x7) hidden per image, per-patch normalised pixel targets, a decoder of
width 64 with 2 blocks, AdamW (b2 = 0.95, weight decay 0.05, as the paper's) with warmup +
cosine. The encoder sees 4 tokens a step, so a step costs far less than the classifier's.
Predicting each hidden patch's own mean scores an eval/loss of 0.81 (17% of the patches are
blank). A linear probe of the checkpoint on Fashion-MNIST, against a random encoder:

  python -m train_lib.main --config=experiments/mnist_finetune.py:model=vit,probe=True,data=fashion_mnist,labels=0,steps=2000,source=/tmp/lamina/fmnist_mae \
      --workdir=/tmp/lamina/fmnist_mae_probe

Measured losses, probes and times: docs/finetuning.md.
"""

import ml_collections

from experiments import common, fashion_mnist_vit


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = common.parse_arg(arg, epochs=16.0, tiny=False)
  # The classifier's network, data and schedule (so its checkpoint fits that classifier); MAE's task.
  config = fashion_mnist_vit.get_config(f'epochs={arg.epochs}')
  config.task = ml_collections.ConfigDict({'name': 'mae', 'mask_ratio': 0.75, 'norm_pix_loss': True})
  config.optimizer.b2 = 0.95
  if arg.tiny:
    common.shrink_for_tiny(config, eval_split='test[:1000]')
  return config
