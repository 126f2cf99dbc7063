"""The task interface: what a model family plugs into the one trainer.

A task owns its model(s), initialisation, loss and evaluation metrics. It knows
nothing about meshes, data loading, checkpoints or the loop. The trainer calls:

  init_variables(rng, batch) -> {'params': ..., other collections ...}  (boxed, logical axes)
  make_optimizer(total_steps) -> optax transformation over all params
  train_step(state, batch, rng, tx, accum_steps) -> (state, metrics)   # one optimizer step
  eval_metrics(params, model_state, batch) -> {name: per-example values}

The default `train_step` differentiates `loss` (through `compute_grads`, over
micro-batches) and applies `tx` once. Families override the piece they need:
a GAN overrides `train_step` to update its discriminator and then its generator,
each with its half of an `optax.multi_transform` optimizer over {'d': ..., 'g': ...};
distillation keeps the frozen teacher in a non-'params' collection, so it is never
differentiated; contrastive and language-model tasks only define `loss`; a diffusion
task's sampler runs in its own evaluator.
"""

import abc
from typing import Any

import jax
import ml_collections
import optax

from train_lib import gradients, optimizers
from train_lib.errors import ConfigError
from train_lib.train_state import TrainState

Metrics = dict[str, jax.Array]


class Task(abc.ABC):
  """Base class; subclasses set `config_fields` to the keys of `config.task` they read."""

  config_fields: dict[str, Any] = {}
  # What one unit of evaluation weight counts (eval/<name> in the metrics).
  eval_count_name = 'num_examples'
  # Sequence tasks set this to their sequence length, so throughput is also in tokens/s.
  tokens_per_example: int | None = None

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

  def eval_weights(self, batch: dict) -> jax.Array | None:
    """Per-example weights of the eval averages ([batch]); None weighs every example 1."""
    del batch
    return None

  def make_optimizer(self, total_steps: int) -> optax.GradientTransformation:
    return optimizers.make_optimizer(self.config.optimizer, total_steps)

  def compute_grads(self, params: Any, model_state: Any, batch: dict, rng: jax.Array) -> tuple[Any, Any, Metrics]:
    grad_fn = jax.value_and_grad(self.loss, has_aux=True)
    (loss, (model_state, metrics)), grads = grad_fn(params, model_state, batch, rng)
    return grads, model_state, {'loss': loss, **metrics}

  def train_step(self, state: TrainState, batch: dict, rng: jax.Array, tx: optax.GradientTransformation,
                 accum_steps: int) -> tuple[TrainState, Metrics]:
    """One optimizer step; the trainer adds the step count and the EMA."""
    grads, model_state, metrics = gradients.accumulate(
        self.compute_grads, accum_steps, state.params, state.model_state, batch, rng)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    new_state = state.replace(params=params, opt_state=opt_state, model_state=model_state)
    return new_state, {**metrics, 'grad_norm': optax.tree.norm(grads)}
