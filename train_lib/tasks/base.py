"""The task interface: what a model family plugs into the one trainer.

A task owns its model(s), initialisation, loss and evaluation metrics. It knows
nothing about meshes, data loading, checkpoints or the loop. The trainer calls:

  init_variables(rng, batch) -> {'params': ..., other collections ...}  (boxed, logical axes)
  make_optimizer(total_steps) -> optax transformation over all params
  compute_grads(params, model_state, batch, rng) -> (grads, new_model_state, metrics)
  eval_metrics(params, model_state, batch) -> {name: per-example values}

The default `compute_grads` differentiates `loss`. Families that need more override it:
a GAN returns the discriminator's and the generator's gradients in one tree and
builds an optimizer per net with `optax.multi_transform`; distillation keeps the
frozen teacher in a non-'params' collection so it is never differentiated; a
diffusion task's sampler runs in its own evaluator.
"""

import abc
from typing import Any

import jax
import ml_collections
import optax

from train_lib import optimizers
from train_lib.errors import ConfigError

Metrics = dict[str, jax.Array]


class Task(abc.ABC):
  """Base class; subclasses set `config_fields` to the keys of `config.task` they read."""

  config_fields: dict[str, Any] = {}

  def __init__(self, config: ml_collections.ConfigDict, data_info: dict):
    self.config = config
    self.data_info = data_info
    unknown = set(config.task.keys()) - set(self.config_fields) - {'name'}
    if unknown:
      raise ConfigError(f"task '{config.task.name}': unknown key(s) {sorted(unknown)}; "
                        f'valid keys are {sorted(self.config_fields)}')

  def arg(self, key: str) -> Any:
    """A `config.task` field, or the task's default for it."""
    return self.config.task.get(key, self.config_fields[key])

  @abc.abstractmethod
  def init_variables(self, rng: jax.Array, batch: dict) -> dict:
    """All variables of the task's models, still boxed with their logical axes."""

  @abc.abstractmethod
  def loss(self, params: Any, model_state: Any, batch: dict, rng: jax.Array) -> tuple[jax.Array, tuple[Any, Metrics]]:
    """(scalar loss, (new model_state, metrics)) for one training batch."""

  @abc.abstractmethod
  def eval_metrics(self, params: Any, model_state: Any, batch: dict) -> Metrics:
    """Per-example metric values of shape [batch]; the trainer masks padding and averages."""

  def examples_in(self, batch: dict) -> int:
    """How many examples a (host-local or global) batch holds, for throughput."""
    return jax.tree.leaves(batch)[0].shape[0]

  def make_optimizer(self, total_steps: int) -> optax.GradientTransformation:
    return optimizers.make_optimizer(self.config.optimizer, total_steps)

  def compute_grads(self, params: Any, model_state: Any, batch: dict, rng: jax.Array) -> tuple[Any, Any, Metrics]:
    grad_fn = jax.value_and_grad(self.loss, has_aux=True)
    (loss, (model_state, metrics)), grads = grad_fn(params, model_state, batch, rng)
    return grads, model_state, {'loss': loss, **metrics}
