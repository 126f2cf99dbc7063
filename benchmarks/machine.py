"""A one-line description of where a benchmark ran, printed with every table."""

import os
import platform

import jax


def describe() -> str:
  cpu = platform.processor() or platform.machine()
  try:
    with open('/proc/cpuinfo') as f:
      cpu = next(line.split(':', 1)[1].strip() for line in f if line.startswith('model name'))
  except (OSError, StopIteration):
    pass
  device = jax.devices()[0]
  return (f'{cpu}, {os.cpu_count()} cores; jax {jax.__version__}, {jax.device_count()} x {device.platform} '
          f'({device.device_kind})')
