"""The task interface: what a model family plugs into the one trainer.

A task owns its model(s), initialisation, loss and evaluation metrics. It knows
nothing about meshes, data loading, checkpoints or the loop. The trainer calls:

  init_variables(rng, batch) -> {'params': ..., other collections ...}  (boxed, logical axes)
  make_optimizer(total_steps) -> train_lib.optimizers.Optimizer over all params, by group
  train_step(state, batch, rng, tx, accum_steps) -> (state, metrics)   # one optimizer step
  eval_metrics(params, state, batch) -> {name: per-example values}     # the per_example evaluator's

The default `train_step` differentiates `loss` (through `compute_grads`, over
micro-batches) and applies `tx` to every parameter group. A task with several models
keys their params by model name ({'generator': ..., 'discriminator': ...}), which names
their optimizer groups (config.optimizer.groups), and may override `train_step` to step
the groups in sequence with `state.apply_gradients(tx, grads, groups=[...])`. Networks
restored read-only from other runs (a teacher) are frozen parts: `frozen.part(config,
name)` gives the model, `state.frozen[name]` its variables.
"""

import abc
from typing import Any

import jax
import ml_collections
import optax

from train_lib import gradients, optimizers, registry, trainable
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
    registry.check_keys(config.task.keys(), [*self.config_fields, 'name'], where=f"task '{config.task.name}'")

  def arg(self, key: str) -> Any:
    """A `config.task` field, or the task's default for it."""
    return self.config.task.get(key, self.config_fields[key])

  @abc.abstractmethod
  def init_variables(self, rng: jax.Array, batch: dict) -> dict:
    """All variables of the task's models, still boxed with their logical axes."""

  def loss(self, params: Any, state: TrainState, batch: dict, rng: jax.Array) -> tuple[jax.Array, tuple[Any, Metrics]]:
    """(scalar loss, (new model_state, metrics)) for one training batch; `params` are differentiated,
    `state` gives the rest (model_state, frozen parts, step). What the default train_step minimises:
    a task that overrides train_step with losses of its own (a GAN's two) leaves it out."""
    raise NotImplementedError(f'{type(self).__name__} defines neither loss nor its own train_step')

  @abc.abstractmethod
  def eval_metrics(self, params: Any, state: TrainState, batch: dict) -> Metrics:
    """Per-example metric values of shape [batch]; the evaluator masks padding and averages."""

  def eval_weights(self, batch: dict) -> jax.Array | None:
    """Per-example weights of the eval averages ([batch]); None weighs every example 1."""
    del batch
    return None

  def make_optimizer(self, total_steps: int) -> optimizers.Optimizer:
    return optimizers.make_optimizer(self.config.optimizer, total_steps)

  def compute_grads(self, params: Any, state: TrainState, batch: dict, rng: jax.Array) -> tuple[Any, Any, Metrics]:
    """Gradients of `loss`, exactly zero (and never computed) for parameters outside optimizer.trainable."""
    optimizer = self.config.optimizer
    grad_fn = jax.value_and_grad(lambda p, *args: self.loss(trainable.stop_frozen(optimizer, p), *args), has_aux=True)
    (loss, (model_state, metrics)), grads = grad_fn(params, state, batch, rng)
    return grads, model_state, {'loss': loss, **metrics}

  def train_step(self, state: TrainState, batch: dict, rng: jax.Array, tx: optimizers.Optimizer,
                 accum_steps: int) -> tuple[TrainState, Metrics]:
    """One optimizer step; the trainer adds the step count and the EMA."""
    grads, model_state, metrics = gradients.accumulate(self.compute_grads, accum_steps, state, batch, rng)
    new_state = state.replace(model_state=model_state).apply_gradients(tx, grads)
    return new_state, {**metrics, 'grad_norm': optax.tree.norm(grads)}
