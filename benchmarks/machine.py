"""A one-line description of where a benchmark ran, printed with every table."""

import os
import platform

import jax


# CPU flags that decide how fast low-precision products run (int8 dots, bf16 matmuls).
_FAST_PATHS = {'amx_int8': 'AMX int8', 'amx_bf16': 'AMX bf16', 'avx512_vnni': 'AVX-512 VNNI',
               'avx_vnni': 'AVX-VNNI', 'avx512_bf16': 'AVX-512 BF16'}


def describe() -> str:
  cpu, flags = platform.processor() or platform.machine(), set()
  try:
    with open('/proc/cpuinfo') as f:
      lines = f.read().splitlines()
    cpu = next(line.split(':', 1)[1].strip() for line in lines if line.startswith('model name'))
    flags = set(next(line.split(':', 1)[1].split() for line in lines if line.startswith('flags')))
  except (OSError, StopIteration):
    pass
  fast = ', '.join(name for flag, name in _FAST_PATHS.items() if flag in flags) or 'no VNNI, AMX or BF16'
  device = jax.devices()[0]
  return (f'{cpu} ({fast}), {os.cpu_count()} cores; jax {jax.__version__}, {jax.device_count()} x '
          f'{device.platform} ({device.device_kind})')
