"""GAN generators and discriminators: DCGAN's convolutional pair (Radford et al. 2016) and an
MLP pair for small images (8x8 digits).

  Generator:     latents [B, latent_dim] (, labels [B]) -> images [B, H, W, C] in [-1, 1] (tanh)
  Discriminator: images [B, H, W, C] (, labels [B]) -> logits [B] (float32)

DCGAN: the generator projects the latents to a (H / 2^k, W / 2^k) map of `channels` x 2^k
features, then k stride-2 transposed convolutions, each halving the features, with BatchNorm
and ReLU; a 3x3 conv to C channels and tanh. The discriminator mirrors it: k stride-2 4x4
convs doubling from `channels`, LeakyReLU(0.2), no BatchNorm (it would couple the real and
fake halves of a batch, and R1 wants a per-example function), then a linear logit.

Class-conditional (num_classes set): the generator concatenates a label embedding to the
latents; the discriminator adds the projection term <embed(label), features> to its logit
(Miyato & Koyama 2018). `spectral_norm` divides each discriminator weight by its largest
singular value, estimated by one power iteration a step, whose vectors live in the
'batch_stats' collection (updated when training).
"""

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import linen as nn
from flax.typing import Dtype

from models import layers


def _leaky_relu(x: jax.Array) -> jax.Array:
  return nn.leaky_relu(x, 0.2)


class _Generating(nn.Module):
  """What both generators share: their fields, and the latents joined by the label's embedding."""

  image_shape: Sequence[int]
  latent_dim: int = 64
  num_classes: int | None = None
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  def _inputs(self, latents: jax.Array, labels: jax.Array | None) -> jax.Array:
    """The latents, with the labels' embedding concatenated for a class-conditional generator."""
    if self.num_classes is None:
      return latents
    if labels is None:
      raise ValueError(f'{type(self).__name__} is class-conditional: it needs labels')
    embedding = layers.embed(self.num_classes, latents.shape[-1], dtype=self.dtype, param_dtype=self.param_dtype,
                             name='label')(labels)
    return jnp.concatenate([latents, embedding], -1)


class _Discriminating(nn.Module):
  """What both discriminators share: spectral normalisation and the projection logit."""

  spectral_norm: bool = False
  num_classes: int | None = None
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  def _layer(self, layer: nn.Module, x: jax.Array, train: bool) -> jax.Array:
    if self.spectral_norm:
      return layers.SpectralNorm(layer, name=f'{layer.name}_sn')(x, update_stats=train)
    return layer(x)

  def _logit(self, features: jax.Array, labels: jax.Array | None, train: bool) -> jax.Array:
    kw = {'dtype': self.dtype, 'param_dtype': self.param_dtype}
    logit = self._layer(layers.dense(1, ('embed', 'classes'), name='logit', **kw), features, train)[:, 0]
    if self.num_classes is not None:
      if labels is None:
        raise ValueError(f'{type(self).__name__} is class-conditional: it needs labels')
      projection = layers.embed(self.num_classes, features.shape[-1], name='label', **kw)(labels)
      logit = logit + jnp.sum(projection * features, axis=-1)
    return logit.astype(jnp.float32)


class DCGANGenerator(_Generating):
  channels: int = 64
  num_upsamples: int = 2

  @nn.compact
  def __call__(self, latents: jax.Array, labels: jax.Array | None = None, *, train: bool) -> jax.Array:
    kw = {'dtype': self.dtype, 'param_dtype': self.param_dtype}
    height, width, out_channels = self.image_shape
    k = self.num_upsamples
    start = (math.ceil(height / 2**k), math.ceil(width / 2**k))
    features = self.channels * 2**k
    x = self._inputs(latents, labels)
    x = layers.dense(start[0] * start[1] * features, ('embed', 'mlp'), use_bias=False, name='project', **kw)(x)
    x = layers.batch_norm(train, axis='mlp', name='project_norm', **kw)(x)
    x = nn.relu(x).reshape(x.shape[0], *start, features)
    for i in range(k):
      features //= 2
      x = nn.ConvTranspose(features, (4, 4), strides=(2, 2), padding='SAME', use_bias=False, name=f'up{i}',
                           kernel_init=nn.with_logical_partitioning(nn.initializers.lecun_normal(),
                                                                    (None, None, 'conv_in', 'conv_out')), **kw)(x)
      x = nn.relu(layers.batch_norm(train, name=f'up{i}_norm', **kw)(x))
    x = x[:, :height, :width]  # a size that is not a multiple of 2^k was rounded up
    x = layers.conv(out_channels, (3, 3), name='to_image', **kw)(x)
    return jnp.tanh(x.astype(jnp.float32))


class DCGANDiscriminator(_Discriminating):
  channels: int = 64
  num_downsamples: int = 2

  @nn.compact
  def __call__(self, images: jax.Array, labels: jax.Array | None = None, *, train: bool) -> jax.Array:
    kw = {'dtype': self.dtype, 'param_dtype': self.param_dtype}
    x = images.astype(self.dtype)
    for i in range(self.num_downsamples):
      x = _leaky_relu(self._layer(layers.conv(self.channels * 2**i, (4, 4), strides=2, padding=1, name=f'down{i}',
                                              **kw), x, train))
    return self._logit(layers.flatten(x), labels, train)


class MLPGenerator(_Generating):
  hidden: Sequence[int] = (256, 256)

  @nn.compact
  def __call__(self, latents: jax.Array, labels: jax.Array | None = None, *, train: bool) -> jax.Array:
    kw = {'dtype': self.dtype, 'param_dtype': self.param_dtype}
    x = self._inputs(latents, labels)
    for i, features in enumerate(self.hidden):
      x = layers.dense(features, ('embed', 'mlp') if i == 0 else ('mlp', 'embed'), use_bias=False, name=f'hidden{i}',
                       **kw)(x)
      x = nn.relu(layers.batch_norm(train, axis='mlp' if i == 0 else 'embed', name=f'hidden{i}_norm', **kw)(x))
    x = layers.dense(math.prod(self.image_shape), ('embed', 'mlp'), name='to_image', **kw)(x)
    return jnp.tanh(x.astype(jnp.float32)).reshape(x.shape[0], *self.image_shape)


class MLPDiscriminator(_Discriminating):
  hidden: Sequence[int] = (256, 256)

  @nn.compact
  def __call__(self, images: jax.Array, labels: jax.Array | None = None, *, train: bool) -> jax.Array:
    kw = {'dtype': self.dtype, 'param_dtype': self.param_dtype}
    x = layers.flatten(images.astype(self.dtype))
    for i, features in enumerate(self.hidden):
      x = _leaky_relu(self._layer(layers.dense(features, ('mlp', 'embed') if i else ('embed', 'mlp'),
                                               name=f'hidden{i}', **kw), x, train))
    return self._logit(x, labels, train)
