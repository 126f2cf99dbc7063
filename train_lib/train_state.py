"""The one train state every task shares: a pure pytree, checkpointed whole but for its frozen parts."""

from collections.abc import Sequence
from typing import Any

import jax
import optax
from flax import struct


@struct.dataclass
class TrainState:
  """Everything a run needs to continue exactly where it stopped.

  params:      what the optimizer updates (a task with several models keys them by name).
  opt_state:   the optimizer's state for `params`, one part per parameter group.
  model_state: non-trained variable collections the step updates (BatchNorm statistics).
  frozen:      {name: variables} of config.frozen's parts, restored read-only from other runs:
               never differentiated, never checkpointed (train_lib/frozen.py).
  ema_params:  exponential moving average of `params`, or None when disabled.
  rng:         the run's base key; each step folds in its step number.
  """

  step: jax.Array
  params: Any
  opt_state: Any
  model_state: Any
  frozen: Any
  ema_params: Any
  rng: jax.Array

  def apply_gradients(self, tx, grads: Any, groups: Sequence[str] | None = None) -> 'TrainState':
    """The state after one optimizer step on `grads` (train_lib.optimizers.Optimizer `tx`), of the
    parameter groups named by `groups` (default all; the others stay as they are)."""
    updates, opt_state = tx.update(grads, self.opt_state, self.params, groups=groups)
    return self.replace(params=optax.apply_updates(self.params, updates), opt_state=opt_state)
