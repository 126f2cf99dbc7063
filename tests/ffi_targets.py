"""Which FFI kernels a function calls: the ffi_call targets of its jaxpr, nested ones included."""

import jax

from train_lib import accounting


def ffi_targets(fn, *args) -> list[str]:
  """The target names of every ffi_call in `fn(*args)`'s jaxpr, in order, repeats kept."""
  return [e.params['target_name'] for e in _equations(jax.make_jaxpr(fn)(*args).jaxpr) if e.primitive.name == 'ffi_call']


def _equations(jaxpr):
  for eqn in jaxpr.eqns:
    yield eqn
    for sub in accounting._sub_jaxprs(eqn.params):
      yield from _equations(sub)
