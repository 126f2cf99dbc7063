"""Supervised classification: any models/ classifier, softmax cross-entropy, accuracy."""

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import optax

import models
from train_lib import precision, quantization
from train_lib.errors import ConfigError
from train_lib.tasks import base


class ClassificationTask(base.Task):
  config_fields = {'input_key': 'image', 'label_key': 'label', 'label_smoothing': 0.0}

  def __init__(self, config: ml_collections.ConfigDict, data_info: dict):
    super().__init__(config, data_info)
    self.input_key = self.arg('input_key')
    self.label_key = self.arg('label_key')
    self.num_classes = data_info['num_classes']
    self.label_smoothing = self.arg('label_smoothing')
    if not 0.0 <= self.label_smoothing < 1.0:
      raise ConfigError(f'task.label_smoothing must be in [0, 1), got {self.label_smoothing}')
    self.model = build_model(config.model, config, num_classes=self.num_classes)

  def init_variables(self, rng: jax.Array, batch: dict) -> dict:
    params_rng, dropout_rng = jax.random.split(rng)
    return self.model.init({'params': params_rng, 'dropout': dropout_rng}, batch[self.input_key], train=False)

  def _targets(self, labels: jax.Array) -> jax.Array:
    # Labels arrive as integers, or already one-hot when the pp string says so.
    onehot = labels if labels.ndim == 2 else jax.nn.one_hot(labels, self.num_classes)
    return optax.smooth_labels(onehot, self.label_smoothing) if self.label_smoothing else onehot

  def inputs(self, batch: dict) -> jax.Array:
    """What the model reads."""
    return batch[self.input_key]

  def logits(self, params, model_state, batch, *, train: bool, rng: jax.Array | None = None):
    """(logits [B, classes], updated model_state) of the model on the batch's inputs."""
    if not train:
      return self.model.apply({'params': params, **model_state}, self.inputs(batch), train=False), model_state
    return self.model.apply({'params': params, **model_state}, self.inputs(batch), train=True,
                            rngs={'dropout': rng}, mutable=list(model_state))

  def logit_weights(self, batch: dict) -> jax.Array:
    """How much each row of `logits` counts in a training loss: every image once."""
    return jnp.ones(batch[self.label_key].shape[:1], jnp.float32)

  def supervised_loss(self, logits: jax.Array, batch: dict) -> tuple[jax.Array, base.Metrics]:
    """(mean cross-entropy against the labels, {'accuracy'})."""
    labels = batch[self.label_key]
    loss = optax.softmax_cross_entropy(logits, self._targets(labels)).mean()
    return loss, {'accuracy': _accuracy(logits, labels).mean()}

  def loss(self, params, state, batch, rng):
    logits, new_state = self.logits(params, state.model_state, batch, train=True, rng=rng)
    loss, metrics = self.supervised_loss(logits, batch)
    return loss, (new_state, metrics)

  def eval_metrics(self, params, state, batch):
    logits, _ = self.logits(params, state.model_state, batch, train=False)
    labels = batch[self.label_key]
    return {
        'loss': optax.softmax_cross_entropy(logits, self._targets(labels)),
        'accuracy': _accuracy(logits, labels),
    }


def _accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
  labels = labels.argmax(-1) if labels.ndim == 2 else labels
  return (logits.argmax(-1) == labels).astype(jnp.float32)


def build_backbone(config: ml_collections.ConfigDict, model_type: type, task: str):
  """config.model without its head (num_classes=None: its features), which must be a `model_type`;
  otherwise one ConfigError line naming the models that are."""
  model = build_model(config.model, config, num_classes=None)
  if not isinstance(model, model_type):
    raise ConfigError(f"task '{task}' pretrains a {model_type.__name__}; model.name '{config.model.name}' is a "
                      f"{type(model).__name__} (use {', '.join(models.names(of=model_type))})")
  return model


def build_model(model_cfg: ml_collections.ConfigDict, config: ml_collections.ConfigDict, **extra: Any):
  """models.get with the config's precision and quantization; registry errors become ConfigErrors."""
  kwargs = {k: v for k, v in model_cfg.items() if k != 'name'}
  try:
    model = models.get(model_cfg.name, dtype=precision.dtype(config.compute_dtype),
                       param_dtype=precision.dtype(config.param_dtype), **extra, **kwargs)
  except ConfigError:
    raise
  except (ValueError, TypeError) as e:
    raise ConfigError(f'model: {e}') from e
  return quantization.wrap(model, config)
