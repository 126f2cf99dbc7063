"""Every ISA build of the CPU kernels (kernels/ffi_vector.h) that this CPU runs computes the same
numbers, and the best one runs by default: each build is forced in a fresh process by
$LAMINA_MAX_CPU_ISA, so an AVX2 machine checks its AVX2 and baseline builds too."""

import json
import os
import platform
import subprocess
import sys

import pytest

from kernels import cpu_attention, cpu_transpose, ffi_build
from tests.conftest import REPO

pytestmark = [pytest.mark.skipif(platform.system() != 'Linux', reason='the kernels are built for Linux only'),
              pytest.mark.needs_gxx]


# In a fresh process: the build that ran, and the largest error of each check against the reference.
_CHECKS = '''
import json
import jax, jax.numpy as jnp, numpy as np
from kernels import cpu_attention, cpu_transpose
from tests import attention_reference
from tests.integration.test_cpu_attention import _loss, _operands

errors = {}
# nanoGPT's heads, then sizes off every vector and block width with grouped-query heads.
for b, t, s, n, k, h, causal, dtype in [(2, 64, 64, 4, 4, 32, True, jnp.float32), (2, 7, 9, 4, 2, 20, False, jnp.float32),
                                        (1, 33, 33, 2, 1, 70, True, jnp.float32), (2, 16, 16, 4, 2, 32, True, jnp.bfloat16)]:
  (q, key, value), weights = _operands(0, b, t, s, n, k, h, dtype)
  rounded = [x.astype(jnp.float32) for x in (q, key, value)]
  got = [attention_reference.attend(q, key, value, None, causal, 'fused')]
  got += jax.grad(_loss('fused', causal, weights), (0, 1, 2))(q, key, value)
  want = [attention_reference.reference_attention(*rounded, None, causal)]
  want += jax.grad(_loss('reference', causal, weights), (0, 1, 2))(*rounded)
  # The output and each gradient, relative to the reference's largest value.
  errors[f'attention {t}x{s}x{h} {jnp.dtype(dtype).name}'] = max(
      float(jnp.abs(g.astype(jnp.float32) - w).max() / jnp.abs(w).max()) for g, w in zip(got, want))
for shape in [(768, 128), (37, 19), (33, 70)]:
  for dtype in (jnp.float32, jnp.bfloat16):
    x = jnp.asarray(np.random.default_rng(0).normal(size=shape), dtype)
    same = np.array_equal(np.asarray(cpu_transpose.transpose(x)), np.asarray(x).T)
    errors[f'transpose {shape} {jnp.dtype(dtype).name}'] = 0.0 if same else 1.0
print(json.dumps({'builds': [cpu_attention.isa(), cpu_transpose.isa()], 'errors': errors}))
'''


def _runnable_isas() -> list[str]:
  """The builds this CPU can run, from its flags, best last."""
  flags = ffi_build.cpu_flags()
  runnable = ['baseline']
  if platform.machine() == 'x86_64' and {'avx2', 'fma'} <= flags:
    runnable.append('avx2')
  if platform.machine() == 'x86_64' and 'avx512f' in flags:
    runnable.append('avx512')
  return runnable


def _run_checks(cap: str) -> dict:
  env = {**os.environ, ffi_build.MAX_ISA_VARIABLE: cap, 'JAX_PLATFORMS': 'cpu'}
  result = subprocess.run([sys.executable, '-c', _CHECKS], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr[-2000:]
  return json.loads(result.stdout.strip().splitlines()[-1])


def test_the_best_build_this_cpu_has_runs_by_default():
  assert cpu_attention.isa() == cpu_transpose.isa() == _runnable_isas()[-1]


@pytest.mark.parametrize('cap', ffi_build.ISAS)
def test_each_build_equals_the_reference(cap):
  # A cap above what the CPU has runs the best build it has: that case is the default test's.
  isa = cap if cap in _runnable_isas() else _runnable_isas()[-1]
  outcome = _run_checks(cap)
  assert outcome['builds'] == [isa, isa]
  for check, error in outcome['errors'].items():
    limit = 1e-2 if 'bfloat16' in check and 'attention' in check else 0.0 if 'transpose' in check else 2e-5
    assert error <= limit, f'{isa} build, {check}: relative error {error:.2e} > {limit:.0e}'


def test_a_cap_that_names_no_build_is_one_clear_error(monkeypatch):
  monkeypatch.setenv(ffi_build.MAX_ISA_VARIABLE, 'sse4')
  with pytest.raises(ValueError, match=r"LAMINA_MAX_CPU_ISA='sse4' names no build .*\['baseline', 'avx2', 'avx512'\]"):
    ffi_build.register({}, lambda: None)
