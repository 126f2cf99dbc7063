"""Masked-autoencoder pretraining of a ViT (He et al. 2022): hide most patches, rebuild their pixels.

Each step every image keeps a random `1 - mask_ratio` of its patches (the first K of a
per-example random permutation drawn from the step's key). The ViT encodes only those
(`ViT(num_classes=None)(x, keep=...)`), models/mae.py's light decoder puts a mask token in
every hidden place and predicts all patches' pixels, and the loss is the mean squared error
over the hidden patches only; with `norm_pix_loss` each target patch is standardised by its
own pixels' mean and variance, as in the paper.

Parameter layout, the contract a fine-tune relies on:
  {the classifier ViT's parameters from the same config.model, minus 'head'} + {'mae_decoder': ...}
so a classification run started from this one (init_from) finds the encoder under the same
paths and starts only its head fresh. 'mae_decoder' also names the decoder's optimizer group
(config.optimizer.groups.mae_decoder = {...} gives it settings of its own).

Task fields: input_key ('image'), mask_ratio (0.75), norm_pix_loss (True), and the decoder's
decoder_width (64), decoder_layers (2), decoder_heads (4).
"""

import math

import jax
import jax.numpy as jnp
import ml_collections

from models import layers
from models.mae import MAEDecoder
from models.vit import ViT, patchify
from train_lib import precision
from train_lib.errors import ConfigError
from train_lib.tasks import base
from train_lib.tasks.classification import build_backbone

DECODER = 'mae_decoder'
# Eval draws its masks from one constant key: every evaluation hides the same patches (those of
# a row of the batch), so eval/loss moves only with the model.
_EVAL_KEY = 0


def num_kept(num_patches: int, mask_ratio: float) -> int:
  """How many of `num_patches` stay visible; at least one hidden and one visible, or a ConfigError."""
  keep = round(num_patches * (1 - mask_ratio))
  if not 0 < keep < num_patches:
    raise ConfigError(f'task.mask_ratio={mask_ratio} keeps {keep} of {num_patches} patches; choose a ratio that '
                      f'keeps between 1 and {num_patches - 1}')
  return keep


def random_keep(rng: jax.Array, batch_size: int, num_patches: int, num_keep: int) -> jax.Array:
  """[B, K] int32: the patches each example keeps, the first K of its own random permutation."""
  noise = jax.random.uniform(rng, (batch_size, num_patches))
  return jnp.argsort(noise, axis=1)[:, :num_keep].astype(jnp.int32)


def normalize_patches(patches: jax.Array, eps: float = 1e-6) -> jax.Array:
  """Each patch [..., D] standardised by its own mean and variance (the paper's norm_pix_loss)."""
  mean = patches.mean(-1, keepdims=True)
  var = patches.var(-1, keepdims=True)
  return (patches - mean) / jnp.sqrt(var + eps)


def masked_patch_loss(predicted: jax.Array, target: jax.Array, keep: jax.Array) -> jax.Array:
  """Per-example mean squared error [B] over the patches not in `keep`.

  predicted, target: [B, N, D] patches; keep: [B, K] indices of the visible ones.
  """
  per_patch = jnp.mean((predicted - target) ** 2, axis=-1)
  hidden = 1.0 - jax.nn.one_hot(keep, target.shape[1], dtype=per_patch.dtype).sum(axis=1)
  return (per_patch * hidden).sum(-1) / hidden.sum(-1)


class MAETask(base.Task):
  config_fields = {'input_key': 'image', 'mask_ratio': 0.75, 'norm_pix_loss': True,
                   'decoder_width': 64, 'decoder_layers': 2, 'decoder_heads': 4}

  def __init__(self, config: ml_collections.ConfigDict, data_info: dict):
    super().__init__(config, data_info)
    self.input_key = self.arg('input_key')
    self.mask_ratio = self.arg('mask_ratio')
    self.norm_pix_loss = self.arg('norm_pix_loss')
    if not 0.0 < self.mask_ratio < 1.0:
      raise ConfigError(f'task.mask_ratio must be in (0, 1), got {self.mask_ratio}')
    self.encoder = build_backbone(config, ViT, 'mae')
    try:
      self.decoder = MAEDecoder(
          width=self.arg('decoder_width'), num_layers=self.arg('decoder_layers'),
          num_heads=self.arg('decoder_heads'), dtype=precision.dtype(config.compute_dtype),
          param_dtype=precision.dtype(config.param_dtype))
    except ValueError as e:
      raise ConfigError(f'task: decoder: {e}') from e

  def _geometry(self, images: jax.Array) -> tuple[tuple[int, ...], int, int]:
    """(patch size, patches per image, pixels per patch) of images [B, *spatial, C]."""
    patch = layers.ntuple(self.encoder.patch_size, images.ndim - 2, 'model.patch_size')
    num_patches = math.prod(size // p for size, p in zip(images.shape[1:-1], patch))
    return patch, num_patches, math.prod(patch) * images.shape[-1]

  def init_variables(self, rng: jax.Array, batch: dict) -> dict:
    images = batch[self.input_key]
    _, num_patches, patch_dim = self._geometry(images)
    mask_rng, encoder_rng, decoder_rng = jax.random.split(rng, 3)
    keep = random_keep(mask_rng, images.shape[0], num_patches, num_kept(num_patches, self.mask_ratio))
    encoded, encoder_vars = self.encoder.init_with_output(encoder_rng, images, keep=keep, train=False)
    decoder_vars = self.decoder.init(decoder_rng, encoded, keep, num_patches=num_patches, patch_dim=patch_dim,
                                     train=False)
    return {'params': {**encoder_vars['params'], DECODER: decoder_vars['params']}}

  def _losses(self, params: dict, images: jax.Array, rng: jax.Array, *, train: bool) -> jax.Array:
    """Per-example loss [B] over the patches hidden by the mask that `rng` draws."""
    patch, num_patches, patch_dim = self._geometry(images)
    mask_rng, encoder_rng, decoder_rng = jax.random.split(rng, 3)
    keep = random_keep(mask_rng, images.shape[0], num_patches, num_kept(num_patches, self.mask_ratio))
    encoder_params = {name: value for name, value in params.items() if name != DECODER}
    encoded = self.encoder.apply({'params': encoder_params}, images, keep=keep, train=train,
                                 rngs={'dropout': encoder_rng})
    predicted = self.decoder.apply({'params': params[DECODER]}, encoded, keep, num_patches=num_patches,
                                   patch_dim=patch_dim, train=train, rngs={'dropout': decoder_rng})
    target = patchify(images.astype(jnp.float32), patch)
    if self.norm_pix_loss:
      target = normalize_patches(target)
    return masked_patch_loss(predicted, target, keep)

  def loss(self, params, state, batch, rng):
    return self._losses(params, batch[self.input_key], rng, train=True).mean(), (state.model_state, {})

  def eval_metrics(self, params, state, batch):
    return {'loss': self._losses(params, batch[self.input_key], jax.random.key(_EVAL_KEY), train=False)}
