"""The one train state every task shares: a pure pytree, checkpointed whole."""

from typing import Any

import jax
from flax import struct


@struct.dataclass
class TrainState:
  """Everything a run needs to continue exactly where it stopped.

  params:      what the optimizer updates (a GAN keeps both nets here, keyed by name).
  opt_state:   the optax state for `params`.
  model_state: non-trained variable collections (BatchNorm statistics, a frozen teacher).
  ema_params:  exponential moving average of `params`, or None when disabled.
  rng:         the run's base key; each step folds in its step number.
  """

  step: jax.Array
  params: Any
  opt_state: Any
  model_state: Any
  ema_params: Any
  rng: jax.Array
