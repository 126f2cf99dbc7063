"""A run's forward pass as serialized StableHLO (jax.export), its weights inside and its batch
dimension symbolic: one file that any JAX (or XLA) program of a compatible version runs at any
batch size, without lamina or flax.

  data = export_stablehlo.to_stablehlo(exportable.load_run(workdir))
  logits = export_stablehlo.load_stablehlo(data)(images)
"""

from collections.abc import Callable

import jax
import numpy as np

from train_lib.exportable import Exportable


def to_stablehlo(exportable: Exportable) -> bytes:
  """The serialized export of `exportable(x)` for x of the run's input shape with any batch size,
  lowered for this machine's backend."""
  spec = jax.export.symbolic_args_specs(exportable.inputs, 'b, ...')
  return bytes(jax.export.export(jax.jit(exportable))(spec).serialize())


def load_stablehlo(data: bytes) -> Callable[[np.ndarray], jax.Array]:
  """The function `to_stablehlo` serialized: input batch -> logits."""
  return jax.export.deserialize(bytearray(data)).call
