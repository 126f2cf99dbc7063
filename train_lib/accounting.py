"""Model FLOPs per step (counted from the step's jaxpr) and the devices' peak, for MFU.

Peak FLOP/s comes from a table for known accelerators; on CPU, where no datasheet
applies, it is the machine's practical ceiling: a large timed matmul in the compute
dtype (bf16 inputs accumulate in f32), measured once and cached in the workdir.
"""

import json
import os
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from etils import epath
from jax._src.interpreters import partial_eval as pe  # dce_jaxpr has no public name

import kernels
from train_lib import storage

# Dense peak FLOP/s per chip (bf16, and f32 where the vendor quotes it; TF32 on NVIDIA).
PEAK_FLOPS = {
    'TPU v4': {'bfloat16': 275e12, 'float32': 275e12},
    'TPU v5 lite': {'bfloat16': 197e12, 'float32': 197e12},
    'TPU v5e': {'bfloat16': 197e12, 'float32': 197e12},
    'TPU v5p': {'bfloat16': 459e12, 'float32': 459e12},
    'TPU v6 lite': {'bfloat16': 918e12, 'float32': 918e12},
    'TPU v6e': {'bfloat16': 918e12, 'float32': 918e12},
    'NVIDIA A100-SXM4-40GB': {'bfloat16': 312e12, 'float32': 156e12},
    'NVIDIA A100-SXM4-80GB': {'bfloat16': 312e12, 'float32': 156e12},
    'NVIDIA H100 80GB HBM3': {'bfloat16': 989e12, 'float32': 495e12},
    'NVIDIA H100': {'bfloat16': 989e12, 'float32': 495e12},
    'NVIDIA H200': {'bfloat16': 989e12, 'float32': 495e12},
}

_MATMUL_SIZE = 1024  # ~2 GFLOP: long enough to time, short enough for every run's start


def matmul_flops(fn, *args) -> float:
  """FLOPs of the matmuls and convolutions `fn(*args)` runs, counted from its jaxpr.

  This is the FLOP count MFU is defined by (PaLM, appendix B). XLA's cost analysis
  counts a loop's body once, so it under-counts scanned steps, micro-batches and
  recurrent layers; here a scan's body counts `length` times. A while loop (unknown
  trip count) counts once. `args` may be abstract (jax.ShapeDtypeStruct).
  """
  jaxpr = jax.make_jaxpr(fn)(*args).jaxpr
  # Drop what no output needs, as XLA will: a custom gradient (kernels/onednn_conv.py)
  # computes every input's cotangent, the image's included.
  jaxpr, _ = pe.dce_jaxpr(jaxpr, [True] * len(jaxpr.outvars))
  return _jaxpr_flops(jaxpr)


def _jaxpr_flops(jaxpr) -> float:
  total = 0.0
  for eqn in jaxpr.eqns:
    name = eqn.primitive.name
    if name == 'dot_general':
      (_, rhs_contract), (_, rhs_batch) = eqn.params['dimension_numbers']
      lhs, rhs = (v.aval.shape for v in eqn.invars)
      shared = np.prod([rhs[d] for d in (*rhs_contract, *rhs_batch)])
      total += 2.0 * np.prod(lhs) * np.prod(rhs) / shared
    elif name == 'ragged_dot_general':
      # A grouped matmul (MoE dropless dispatch): each row meets one group's matrix, so it
      # counts the products of the rows' own groups, not every group's (what it would cost dense).
      dims = eqn.params['ragged_dot_dimension_numbers']
      (_, rhs_contract), (_, rhs_batch) = dims.dot_dimension_numbers
      lhs, rhs = (v.aval.shape for v in eqn.invars[:2])
      shared = np.prod([rhs[d] for d in (*rhs_contract, *rhs_batch, *dims.rhs_group_dimensions)])
      total += 2.0 * np.prod(lhs) * np.prod(rhs) / shared
    elif name == 'conv_general_dilated':
      rhs = eqn.invars[1].aval.shape
      rhs_spec = eqn.params['dimension_numbers'].rhs_spec  # (out features, in features, *spatial)
      per_output = np.prod([rhs[d] for d in rhs_spec[1:]])
      # An input-dilated convolution (a strided one's input gradient) multiplies the
      # inserted zeros too: count only the products its forward convolution has.
      dilation = np.prod(eqn.params['lhs_dilation'])
      total += 2.0 * np.prod(eqn.outvars[0].aval.shape) * per_output / dilation
    elif (kernel_flops := kernels.ffi_flops(eqn)) is not None:
      total += kernel_flops
    else:
      inner = [_jaxpr_flops(j) for j in _sub_jaxprs(eqn.params)]
      if inner:
        repeat = eqn.params['length'] if name == 'scan' else 1
        total += repeat * (max(inner) if name == 'cond' else sum(inner))
  return total


def _sub_jaxprs(params: dict):
  for value in params.values():
    for item in value if isinstance(value, (tuple, list)) else (value,):
      if hasattr(item, 'eqns'):
        yield item
      elif hasattr(item, 'jaxpr') and hasattr(item.jaxpr, 'eqns'):
        yield item.jaxpr


def _measure_matmul_flops(dtype: str) -> float:
  """FLOP/s of all local devices together, each multiplying its own large matrices (the fastest of a few).

  Forced host devices share the machine's cores, so they are timed together: one
  device alone may use every core, or far fewer, depending on how XLA split them.
  """
  devices = jax.local_devices()
  mesh = jax.sharding.Mesh(np.array(devices), ('d',))
  sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec('d'))
  shape = (len(devices), _MATMUL_SIZE, _MATMUL_SIZE)
  # This process's devices only, whatever (multi-process) mesh the caller has set.
  with jax.set_mesh(mesh):
    x = jax.device_put(np.random.default_rng(0).standard_normal(shape).astype(jnp.dtype(dtype)), sharding)
    matmul = jax.jit(lambda a, b: jnp.einsum('dij,djk->dik', a, b, preferred_element_type=jnp.float32),
                     out_shardings=sharding)
    best = best_seconds(lambda: matmul(x, x).block_until_ready())
  return len(devices) * 2 * _MATMUL_SIZE**3 / best


def best_seconds(run: Callable[[], Any], repeats: int = 20, budget_s: float = 2.0) -> float:
  """The fastest of up to `repeats` timed calls of `run` after one untimed warm-up.

  A shared VM's speed drifts, and a 1024^3 bf16 product takes about a millisecond on an
  AMX CPU, so a few samples scatter widely. Timing stops early once the timed calls have
  taken `budget_s`: where one
  product takes seconds (bf16 on a CPU without bf16 units), more samples add nothing but time.
  """
  run()
  best, spent = float('inf'), 0.0
  for _ in range(repeats):
    start = time.perf_counter()
    run()
    elapsed = time.perf_counter() - start
    best, spent = min(best, elapsed), spent + elapsed
    if spent >= budget_s:
      break
  return best


def peak_flops_per_device(dtype: str, workdir: str | epath.Path | None = None) -> tuple[float, str]:
  """(peak FLOP/s of one device in `dtype`, where the number came from)."""
  device = jax.local_devices()[0]
  for kind, peaks in PEAK_FLOPS.items():
    if device.device_kind.startswith(kind):
      return peaks[dtype if dtype in peaks else 'float32'], f'datasheet ({device.device_kind})'
  cache = storage.path(workdir) / 'peak_flops.json' if workdir else None
  key = f'{device.platform}:{device.device_kind}:{jax.local_device_count()}:{dtype}'
  cached = json.loads((cache and storage.read_text(cache)) or '{}')
  if key not in cached:
    cached[key] = _measure_matmul_flops(dtype)
    if cache and jax.process_index() == 0:
      storage.write_atomically(cache, json.dumps(cached, indent=2))
  return (cached[key] / jax.local_device_count(),
          f'measured {_MATMUL_SIZE}x{_MATMUL_SIZE} {dtype} matmul ({device.device_kind}, {os.cpu_count()} cores)')
