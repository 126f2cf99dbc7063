"""SimCLR (Chen et al. 2020): contrastive self-supervised pretraining of a ResNet.

Each batch holds two augmented views of every image, made by the pp string (for example
`copy(image='image2')`, then random ops on 'image' and on 'image2'). Both go through the
backbone (the ResNet of config.model with num_classes=None: its pooled embedding) and a
projection MLP (models/projection.py); NT-Xent then asks each view to pick its partner out
of the other 2B - 1 views of the step's batch. Labels are never read.

Parameter layout, the contract a fine-tune relies on: params and model_state are
  {the classification task's variables for the same config.model, minus 'head'} + {'simclr_projection': ...}
so a classification run started from this one (config.init_from) finds the backbone under
the same paths and starts only its head fresh; the projector is left behind, as in the paper.

The negatives are the whole global batch: under the trainer's jit the arrays are global,
so the similarity matrix spans every device's examples (and BatchNorm's statistics too,
the paper's "global BN"). With config.grad_accum_steps > 1 each micro-batch contrasts
only within itself.

Task fields: views (('image', 'image2')), temperature (0.2), projection_hidden (128),
projection_dim (64), projection_batch_norm (True).
Metrics: loss (NT-Xent) and top1, the fraction of views whose most similar other view is
their partner; eval reports both per image (the mean over its two views), each view ranked
among the other views of its eval batch, so they depend on eval_batch_size.
"""

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
from flax import linen as nn

from models.projection import ProjectionMLP
from models.resnet import ResNet
from train_lib import precision
from train_lib.errors import ConfigError
from train_lib.tasks import base
from train_lib.tasks.classification import build_backbone

PROJECTION = 'simclr_projection'


def nt_xent(z: jax.Array, temperature: float, valid: jax.Array | None = None) -> tuple[jax.Array, jax.Array]:
  """(NT-Xent loss, top-1 hit) per row of z [2B, D], whose rows 2i and 2i + 1 are the two views of image i.

  Row r's logits are its cosine similarities to every other row over `temperature`; its target
  is its partner r ^ 1. `valid` [B] (0 for eval padding) removes invalid images' rows from the
  other rows' negatives, so padding changes no real example's values.
  """
  z = z.astype(jnp.float32)
  z = z * jax.lax.rsqrt(jnp.maximum(jnp.sum(z * z, axis=-1, keepdims=True), 1e-12))
  logits = z @ z.T / temperature
  rows = jnp.arange(z.shape[0])
  partner = rows ^ 1
  excluded = rows[:, None] == rows[None, :]
  if valid is not None:
    invalid = jnp.repeat(valid == 0, 2)
    excluded |= invalid[None, :] & (rows[None, :] != partner[:, None])
  logits = jnp.where(excluded, -jnp.inf, logits)
  loss = jax.nn.logsumexp(logits, axis=-1) - logits[rows, partner]
  top1 = (jnp.argmax(logits, axis=-1) == partner).astype(jnp.float32)
  return loss, top1


def interleave(a: jax.Array, b: jax.Array) -> jax.Array:
  """[B, ...] x 2 -> [2B, ...] with rows a[0], b[0], a[1], b[1], ...: each device's rows stay on it."""
  return jnp.stack([a, b], axis=1).reshape(-1, *a.shape[1:])


def join(backbone: dict, projection: dict) -> dict:
  """One variable tree: per collection, the backbone's variables and the projector's under PROJECTION."""
  return {c: {**backbone.get(c, {}), **({PROJECTION: projection[c]} if c in projection else {})}
          for c in {**backbone, **projection}}


def split(variables: dict) -> tuple[dict, dict]:
  """join's inverse: (backbone variables, projector variables)."""
  backbone = {c: {k: v for k, v in tree.items() if k != PROJECTION} for c, tree in variables.items()}
  projection = {c: tree[PROJECTION] for c, tree in variables.items() if PROJECTION in tree}
  return backbone, projection


def _apply(module: nn.Module, variables: dict, x: jax.Array, *, train: bool,
           rng: jax.Array | None = None) -> tuple[jax.Array, dict]:
  """module's output and its non-param collections, updated when training."""
  return module.apply(variables, x, train=train, rngs={} if rng is None else {'dropout': rng},
                      mutable=[c for c in variables if c != 'params'])


class SimCLRTask(base.Task):
  config_fields = {'views': ('image', 'image2'), 'temperature': 0.2, 'projection_hidden': 128,
                   'projection_dim': 64, 'projection_batch_norm': True}

  def __init__(self, config: ml_collections.ConfigDict, data_info: dict):
    super().__init__(config, data_info)
    self.views = tuple(self.arg('views'))
    if len(self.views) != 2 or len(set(self.views)) != 2 or not all(isinstance(v, str) for v in self.views):
      raise ConfigError(f"task.views must name two different batch keys, e.g. ('image', 'image2'); got {self.views}")
    self.temperature = self.arg('temperature')
    if not isinstance(self.temperature, (int, float)) or self.temperature <= 0:
      raise ConfigError(f'task.temperature must be a number > 0, got {self.temperature!r}')
    self.backbone = build_backbone(config, ResNet, 'simclr')
    try:
      self.projection = ProjectionMLP(
          hidden=self.arg('projection_hidden'), features=self.arg('projection_dim'),
          batch_norm=self.arg('projection_batch_norm'), dtype=precision.dtype(config.compute_dtype),
          param_dtype=precision.dtype(config.param_dtype))
    except ValueError as e:
      raise ConfigError(f'task: projection: {e}') from e

  def init_variables(self, rng: jax.Array, batch: dict) -> dict:
    backbone_rng, projection_rng = jax.random.split(rng)
    embedding, backbone = self.backbone.init_with_output(backbone_rng, batch[self.views[0]], train=False)
    return join(backbone, self.projection.init(projection_rng, embedding, train=False))

  def _project(self, params: Any, model_state: dict, batch: dict, *, train: bool,
               rng: jax.Array | None = None) -> tuple[jax.Array, dict]:
    """(Projections [2B, D] of both views, interleaved as nt_xent wants; the new model_state)."""
    backbone, projection = split({'params': params, **model_state})
    views = interleave(*(batch[key] for key in self.views))
    embedding, backbone_state = _apply(self.backbone, backbone, views, train=train, rng=rng)
    z, projection_state = _apply(self.projection, projection, embedding, train=train)
    return z, join(backbone_state, projection_state)

  def loss(self, params, state, batch, rng):
    z, model_state = self._project(params, state.model_state, batch, train=True, rng=rng)
    loss, top1 = nt_xent(z, self.temperature)
    return loss.mean(), (model_state, {'top1': top1.mean()})

  def eval_metrics(self, params, state, batch):
    z, _ = self._project(params, state.model_state, batch, train=False)
    # Eval batches are zero-padded at the end of the split: padded images' views are masked out
    # of the negatives (the evaluator then drops their own rows through the same mask).
    loss, top1 = nt_xent(z, self.temperature, valid=batch.get('mask'))
    return {'loss': _per_image(loss), 'top1': _per_image(top1)}


def _per_image(per_view: jax.Array) -> jax.Array:
  """[2B] interleaved per-view values -> [B], the mean of each image's two views."""
  return per_view.reshape(-1, 2).mean(axis=1)
