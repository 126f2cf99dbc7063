"""Generative adversarial networks on the one trainer: each train step updates the discriminator,
then the generator, each through its own optimizer group.

  config.model.generator = {'name': 'dcgan_generator', ...}        (models/gan.py)
  config.model.discriminator = {'name': 'dcgan_discriminator', ...}
  config.optimizer.groups = {'generator': {...}, 'discriminator': {...}}

params, model_state and the optimizer's groups are keyed 'generator' and 'discriminator'.
The discriminator step scores a real batch and a batch of fakes from the current generator;
the generator step draws new latents and scores its fakes with the discriminator just updated.
Losses (task.loss): 'non_saturating' (Goodfellow et al. 2014: D minimises softplus(-D(x)) +
softplus(D(G(z))), G minimises softplus(-D(G(z)))) or 'hinge' (D: relu(1 - D(x)) + relu(1 + D(G(z))),
G: -D(G(z))). `r1_gamma` > 0 adds gamma/2 E||grad_x D(x)||^2 on real images (Mescheder et al. 2018),
which differentiates the discriminator twice: run it with kernels='xla' (the CPU library
convolutions' custom gradients differentiate once).
A class-conditional GAN (task.conditional) makes fakes of the real batch's labels.
The generator's EMA is the trainer's (config.ema_decay), and sampling uses it. Its BatchNorm
layers normalise each batch of samples by that batch's own statistics: the running statistics
belong to the live generator, not to the averaged weights (BigGAN recomputes "standing"
statistics for its EMA generator for the same reason; a digits DCGAN's Fréchet distance went from
38.9 with the running ones to 25.6, the live generator's being 24.2).

Eval metrics, per test image: d_real, the discriminator's logit on it, and d_fake, its logit
on a fake drawn from one constant key (the EMA generator's when there is one).
"""

import jax
import jax.numpy as jnp
import ml_collections
import optax

from train_lib import trainable
from train_lib.errors import ConfigError
from train_lib.tasks import generative
from train_lib.tasks.classification import build_model

NETWORKS = ('generator', 'discriminator')
LOSSES = ('non_saturating', 'hinge')
_EVAL_KEY = 0


def discriminator_loss(kind: str, real: jax.Array, fake: jax.Array) -> jax.Array:
  """[B] losses of the discriminator's logits on real and fake images."""
  if kind == 'hinge':
    return jax.nn.relu(1 - real) + jax.nn.relu(1 + fake)
  return jax.nn.softplus(-real) + jax.nn.softplus(fake)


def generator_loss(kind: str, fake: jax.Array) -> jax.Array:
  """[B] losses of the generator, given the discriminator's logits on its fakes."""
  return -fake if kind == 'hinge' else jax.nn.softplus(-fake)


def _of(network: str, tree: dict) -> dict:
  """One network's part of a {collection: {network: ...}} tree."""
  return {c: v[network] for c, v in tree.items() if network in v}


class GANTask(generative.ImageGenerator):
  config_fields = {**generative.ImageGenerator.config_fields, 'loss': 'non_saturating', 'r1_gamma': 0.0}

  def __init__(self, config: ml_collections.ConfigDict, data_info: dict):
    super().__init__(config, data_info)
    missing = [n for n in NETWORKS if n not in config.model or 'name' not in config.model[n]]
    if missing:
      raise ConfigError(f"task 'gan' needs config.model.generator and config.model.discriminator, each with a name "
                        f"(e.g. {{'name': 'dcgan_generator'}}); missing: {missing}")
    groups = config.optimizer.get('groups', {})
    if not all(n in groups for n in NETWORKS):
      raise ConfigError("task 'gan' steps each network through its own optimizer: set "
                        "config.optimizer.groups.generator and config.optimizer.groups.discriminator "
                        f'(it has {sorted(groups)})')
    if config.grad_accum_steps != 1:
      raise ConfigError(f"task 'gan' takes one batch a step (grad_accum_steps=1), got {config.grad_accum_steps}")
    self.loss_kind = self.arg('loss')
    if self.loss_kind not in LOSSES:
      raise ConfigError(f"task.loss: unknown '{self.loss_kind}'; valid: {list(LOSSES)}")
    self.r1_gamma = self.arg('r1_gamma')
    if not isinstance(self.r1_gamma, (int, float)) or self.r1_gamma < 0:
      raise ConfigError(f'task.r1_gamma must be a number >= 0, got {self.r1_gamma!r}')
    classes = self.num_classes if self.conditional else None
    self.generator = build_model(config.model.generator, config, image_shape=self.image_shape, num_classes=classes)
    self.discriminator = build_model(config.model.discriminator, config, num_classes=classes)
    self.latent_dim = self.generator.latent_dim

  def init_variables(self, rng, batch):
    g_rng, d_rng = jax.random.split(rng)
    labels = self.labels(batch)
    images = batch[self.image_key]
    g = self.generator.init(g_rng, jnp.zeros((images.shape[0], self.latent_dim)), labels, train=False)
    d = self.discriminator.init(d_rng, images, labels, train=False)
    return {c: {n: v[c] for n, v in zip(NETWORKS, (g, d)) if c in v} for c in {**g, **d}}

  def _fakes(self, params, model_state, rng, labels, num, *, train):
    """(images in [-1, 1], the generator's new model_state)."""
    latents = jax.random.normal(rng, (num, self.latent_dim))
    variables = {'params': params['generator'], **_of('generator', model_state)}
    return self.generator.apply(variables, latents, labels, train=train, mutable=list(_of('generator', model_state)))

  def _score(self, params, model_state, images, labels, *, train):
    """(the discriminator's [B] logits, its new model_state)."""
    variables = {'params': params['discriminator'], **_of('discriminator', model_state)}
    return self.discriminator.apply(variables, images, labels, train=train,
                                    mutable=list(_of('discriminator', model_state)))

  def _d_loss(self, d_params, params, model_state, real, fake, labels):
    params = trainable.stop_frozen(self.config.optimizer, {**params, 'discriminator': d_params})
    real_logits, d_state = self._score(params, model_state, real, labels, train=True)
    fake_logits, d_state = self._score(params, {**model_state, **_with('discriminator', model_state, d_state)},
                                       fake, labels, train=True)
    loss = discriminator_loss(self.loss_kind, real_logits, fake_logits).mean()
    metrics = {'d_loss': loss, 'd_real': real_logits.mean(), 'd_fake': fake_logits.mean()}
    if self.r1_gamma:
      score = lambda x: self._score(params, model_state, x, labels, train=False)[0].sum()
      r1 = jnp.sum(jax.grad(score)(real) ** 2, axis=range(1, real.ndim)).mean()
      loss = loss + 0.5 * self.r1_gamma * r1
      metrics['r1'] = r1
    return loss, (d_state, metrics)

  def _g_loss(self, g_params, params, model_state, rng, labels, num):
    params = trainable.stop_frozen(self.config.optimizer, {**params, 'generator': g_params})
    fake, g_state = self._fakes(params, model_state, rng, labels, num, train=True)
    logits, _ = self._score(params, model_state, fake, labels, train=False)
    loss = generator_loss(self.loss_kind, logits).mean()
    return loss, (g_state, {'g_loss': loss})

  def train_step(self, state, batch, rng, tx, accum_steps):
    del accum_steps  # 1, checked at construction
    real = self.to_model(batch[self.image_key])
    labels = self.labels(batch)
    d_rng, g_rng = jax.random.split(rng)
    num = real.shape[0]
    fake, _ = self._fakes(state.params, state.model_state, d_rng, labels, num, train=True)
    zeros = jax.tree.map(jnp.zeros_like, state.params)

    d_grad_fn = jax.value_and_grad(self._d_loss, has_aux=True)
    (d_loss, (d_state, d_metrics)), d_grads = d_grad_fn(
        state.params['discriminator'], state.params, state.model_state, real, jax.lax.stop_gradient(fake), labels)
    state = state.replace(model_state={**state.model_state, **_with('discriminator', state.model_state, d_state)})
    state = state.apply_gradients(tx, {**zeros, 'discriminator': d_grads}, groups=['discriminator'])

    g_grad_fn = jax.value_and_grad(self._g_loss, has_aux=True)
    (g_loss, (g_state, g_metrics)), g_grads = g_grad_fn(
        state.params['generator'], state.params, state.model_state, g_rng, labels, num)
    state = state.replace(model_state={**state.model_state, **_with('generator', state.model_state, g_state)})
    state = state.apply_gradients(tx, {**zeros, 'generator': g_grads}, groups=['generator'])
    metrics = {**d_metrics, **g_metrics, 'loss': d_loss + g_loss,
               'd_grad_norm': optax.tree.norm(d_grads), 'g_grad_norm': optax.tree.norm(g_grads)}
    return state, metrics

  def eval_metrics(self, params, state, batch):
    real = self.to_model(batch[self.image_key])
    labels = self.labels(batch)
    fake = self._samples(params, state, jax.random.PRNGKey(_EVAL_KEY), labels, real.shape[0])
    real_logits, _ = self._score(params, state.model_state, real, labels, train=False)
    fake_logits, _ = self._score(params, state.model_state, fake, labels, train=False)
    return {'d_real': real_logits, 'd_fake': fake_logits}

  def _samples(self, params, state, rng, labels, num):
    """Fakes in [-1, 1], each batch normalised by its own statistics (see the module docstring)."""
    return self._fakes(params, state.model_state, rng, labels, num, train=True)[0]

  def generate(self, params, state, rng, labels, num, sampler):
    del sampler  # one pass of the generator
    return self.from_model(self._samples(params, state, rng, labels, num))


def _with(network: str, model_state: dict, new: dict) -> dict:
  """model_state's collections with `network`'s part replaced by `new` ({collection: variables})."""
  return {c: {**model_state[c], network: v} for c, v in new.items()}
