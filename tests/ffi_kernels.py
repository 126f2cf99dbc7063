"""Helpers for the FFI kernels' tests: which kernels a function calls; a run on several devices."""

import os
import subprocess
import sys

import jax

from train_lib import accounting


def ffi_targets(fn, *args) -> list[str]:
  """The target names of every ffi_call in `fn(*args)`'s jaxpr, in order, repeats kept."""
  equations = _equations(jax.make_jaxpr(fn)(*args).jaxpr)
  return [e.params['target_name'] for e in equations if e.primitive.name == 'ffi_call']


def _equations(jaxpr):
  for eqn in jaxpr.eqns:
    yield eqn
    for sub in accounting._sub_jaxprs(eqn.params):
      yield from _equations(sub)


def python_on_devices(code: str, devices: int) -> str:
  """The stdout of `python -c code` in a fresh process with `devices` forced CPU devices (asserts it exits 0)."""
  env = {**os.environ, 'XLA_FLAGS': f'--xla_force_host_platform_device_count={devices}', 'JAX_PLATFORMS': 'cpu'}
  repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  result = subprocess.run([sys.executable, '-c', code], cwd=repo, env=env, capture_output=True, text=True, timeout=120)
  assert result.returncode == 0, result.stderr[-2000:]
  return result.stdout
