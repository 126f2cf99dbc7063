"""Contrastive multimodal training (CLIP, SigLIP): one tower per modality, one embedding space.

Each tower is a models/ network chosen by name that reads one batch key; it is built with
`num_classes=embed_dim`, so its head is the linear projection into the shared space (CLIP's
design). Every listed pair of towers is contrasted over the whole global batch (see
train_lib/contrastive.py): 'clip' is InfoNCE with a learned temperature, 'siglip' the pairwise
sigmoid loss with a learned temperature and bias. Three towers (image, text, speech) make three
pairs by default; the loss is their mean.

Task fields: towers ({name: {'input': batch key, 'model': {'name': ..., fields}}}), loss ('clip'),
embed_dim (64), pairs (() = every pair of towers, in the towers' order), init_log_scale and
init_bias (None: the papers' starts, CLIP's scale 1/0.07, clipped at 100 in use, and SigLIP's
scale 10 with bias -10).
Parameter layout: {tower name: its variables, 'contrastive': {'log_scale'[, 'bias']}}.
Metrics: loss, and per pair and direction '{a}_to_{b}_top1': whether the most similar item of
the other side (in the batch) is the partner. Retrieval over a whole split, by pair or by class,
is the `retrieval` evaluator's.
"""

import itertools
import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
from flax import linen as nn

from train_lib import contrastive
from train_lib.errors import ConfigError
from train_lib.tasks import base
from train_lib.tasks.classification import build_model

LOSSES = ('clip', 'siglip')
SCALARS = 'contrastive'
_INIT = {'clip': (math.log(1 / 0.07), None), 'siglip': (math.log(10.0), -10.0)}
# CLIP clips its learned logit scale at 100 so that training stays stable.
MAX_LOG_SCALE = math.log(100.0)


class Scalars(nn.Module):
  """The loss's learned log temperature and (SigLIP) bias, as replicated scalar params."""

  log_scale: float
  bias: float | None

  @nn.compact
  def __call__(self) -> tuple[jax.Array, jax.Array | None]:
    scalar = lambda name, value: self.param(
        name, nn.with_logical_partitioning(nn.initializers.constant(value), ()), (), jnp.float32)
    return scalar('log_scale', self.log_scale), None if self.bias is None else scalar('bias', self.bias)


class ContrastiveTask(base.Task):
  config_fields = {'towers': {}, 'loss': 'clip', 'embed_dim': 64, 'pairs': (), 'init_log_scale': None,
                   'init_bias': None}

  def __init__(self, config: ml_collections.ConfigDict, data_info: dict):
    super().__init__(config, data_info)
    self.loss_name = self.arg('loss')
    if self.loss_name not in LOSSES:
      raise ConfigError(f"task.loss must be one of {', '.join(LOSSES)}, got {self.loss_name!r}")
    towers = dict(self.arg('towers'))
    if len(towers) < 2:
      raise ConfigError(f'task.towers needs two or more towers ({{name: {{"input": key, "model": {{...}}}}}}), '
                        f'got {sorted(towers)}')
    if SCALARS in towers:
      raise ConfigError(f"task.towers: '{SCALARS}' names the loss's own parameters; rename that tower")
    features = data_info.get('features', {})
    self.input_keys, self.towers = {}, {}
    for name, tower in towers.items():
      if set(tower) != {'input', 'model'}:
        raise ConfigError(f"task.towers.{name} must have exactly 'input' and 'model', got {sorted(tower)}")
      if features and tower['input'] not in features:
        raise ConfigError(f"task.towers.{name}.input: no key {tower['input']!r} in the data "
                          f"(keys: {', '.join(features)})")
      self.input_keys[name] = tower['input']
      self.towers[name] = build_model(ml_collections.ConfigDict(tower['model']), config,
                                      num_classes=self.arg('embed_dim'))
    self.pairs = [tuple(p) for p in self.arg('pairs')] or list(itertools.combinations(towers, 2))
    for a, b in self.pairs:
      if a == b or a not in towers or b not in towers:
        raise ConfigError(f'task.pairs: ({a!r}, {b!r}) must name two different towers of {sorted(towers)}')
    log_scale, bias = _INIT[self.loss_name]
    if self.arg('init_log_scale') is not None:
      log_scale = self.arg('init_log_scale')
    if bias is not None and self.arg('init_bias') is not None:
      bias = self.arg('init_bias')
    self.scalars = Scalars(log_scale=log_scale, bias=bias)

  def init_variables(self, rng: jax.Array, batch: dict) -> dict:
    rngs = dict(zip([*self.towers, SCALARS], jax.random.split(rng, len(self.towers) + 1)))
    per_tower = {name: model.init({'params': rngs[name], 'dropout': rngs[name]}, batch[self.input_keys[name]], train=False)
                 for name, model in self.towers.items()}
    per_tower[SCALARS] = self.scalars.init(rngs[SCALARS])
    return _join(per_tower)

  def embed(self, params: Any, model_state: dict, batch: dict, *, train: bool, rng: jax.Array | None = None,
            towers: Sequence[str] | None = None) -> tuple[dict[str, jax.Array], dict]:
    """({tower: its projections [B, embed_dim]} for `towers` (default all), the new model_state)."""
    variables = {'params': params, **model_state}
    embeddings, new_state = {}, {}
    for i, (name, model) in enumerate(self.towers.items()):
      if towers is not None and name not in towers:
        continue
      tower = {c: tree[name] for c, tree in variables.items() if name in tree}
      mutable = [c for c in tower if c != 'params'] if train else False
      rngs = {'dropout': jax.random.fold_in(rng, i)} if train and rng is not None else {}
      out = model.apply(tower, batch[self.input_keys[name]], train=train, rngs=rngs, mutable=mutable)
      embeddings[name], updates = out if mutable is not False else (out, {})
      for c, tree in updates.items():
        new_state.setdefault(c, {})[name] = tree
    return embeddings, {**model_state, **new_state}

  def _scalars(self, params: Any) -> tuple[jax.Array, jax.Array | None]:
    """(log scale, at most log 100 for CLIP; SigLIP's bias or None)."""
    log_scale, bias = self.scalars.apply({'params': params[SCALARS]})
    return (jnp.minimum(log_scale, MAX_LOG_SCALE) if self.loss_name == 'clip' else log_scale), bias

  def _pair_losses(self, params: Any, embeddings: dict[str, jax.Array],
                   valid: jax.Array | None) -> tuple[jax.Array, base.Metrics]:
    """(per-example loss [B], the mean over pairs; per-example top-1 metrics of each pair)."""
    log_scale, bias = self._scalars(params)
    losses, metrics = [], {}
    for a, b in self.pairs:
      if self.loss_name == 'clip':
        loss, top1 = contrastive.clip_loss(embeddings[a], embeddings[b], log_scale, valid)
      else:
        loss, top1 = contrastive.siglip_loss(embeddings[a], embeddings[b], log_scale, bias, valid)
      losses.append(loss)
      metrics[f'{a}_to_{b}_top1'], metrics[f'{b}_to_{a}_top1'] = top1['a_to_b_top1'], top1['b_to_a_top1']
    return sum(losses) / len(losses), metrics

  def loss(self, params, state, batch, rng):
    embeddings, model_state = self.embed(params, state.model_state, batch, train=True, rng=rng)
    loss, metrics = self._pair_losses(params, embeddings, None)
    log_scale, _ = self._scalars(params)
    return loss.mean(), (model_state, {**{k: v.mean() for k, v in metrics.items()},
                                       'temperature': jnp.exp(-log_scale)})

  def eval_metrics(self, params, state, batch):
    embeddings, _ = self.embed(params, state.model_state, batch, train=False)
    # Eval batches are zero-padded at the end of the split: padding leaves the negatives here, and
    # the evaluator drops its own rows through the same mask.
    loss, metrics = self._pair_losses(params, embeddings, batch.get('mask'))
    return {'loss': loss, **metrics}


def _join(per_tower: dict[str, dict]) -> dict:
  """{tower: {collection: tree}} -> {collection: {tower: tree}}, the trainer's variable layout."""
  joined: dict[str, dict] = {}
  for name, variables in per_tower.items():
    for collection, tree in variables.items():
      joined.setdefault(collection, {})[name] = tree
  return joined
