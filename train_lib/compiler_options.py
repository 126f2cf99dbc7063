"""XLA compiler options for a run's compiled calls: `config.compiler_options`.

Keys are XLA DebugOptions fields (`XLA_FLAGS=--helpfull` lists them), values as XLA
parses them, enums by their full names, e.g.

  config.compiler_options.xla_cpu_experimental_ynn_fusion_type = 'LIBRARY_FUSION_TYPE_DOT,LIBRARY_FUSION_TYPE_REDUCE'

Unlike `XLA_FLAGS`, which is read once per process, they apply to this run's train and
eval calls alone, so one process (a test, a notebook) can run experiments tuned
differently. Options for another backend are inert: a GPU compile ignores `xla_cpu_*`.
"""

import jax
import jax.numpy as jnp
import ml_collections

from train_lib.errors import ConfigError

Options = dict[str, str | bool | int | float]


def from_config(config: ml_collections.ConfigDict) -> Options:
  return dict(config.compiler_options.items())


def validate(options: Options) -> None:
  """Compiles a scalar add with the options, so a bad name or value is one line before the real compile."""
  if not options:
    return
  for name, value in options.items():
    if not isinstance(value, (str, bool, int, float)):
      raise ConfigError(f'compiler_options.{name} must be a string, bool or number, got {value!r}')
  try:
    jax.jit(lambda x: x + 1, compiler_options=options).lower(jnp.zeros((), jnp.float32)).compile()
  except jax.errors.JaxRuntimeError as e:
    reason = str(e).strip().splitlines()[0]
    raise ConfigError(f'compiler_options: XLA rejected them ({reason}); names are XLA DebugOptions fields '
                      '(XLA_FLAGS=--helpfull lists them), enum values take full names like LIBRARY_FUSION_TYPE_DOT'
                      ) from None
