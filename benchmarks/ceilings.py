"""The machine's matmul ceilings, timed in jax and in torch, for MFU against either dtype.

jax's number is train_lib.accounting's own (the peak lamina's console MFU uses);
torch multiplies matrices of the same size, so the two are like for like. Per dtype
the better of the two is the machine's ceiling.
"""

import jax
import torch

from benchmarks import torch_train
from train_lib import accounting

SIZE = accounting._MATMUL_SIZE  # pylint: disable=protected-access  (the same matrices as jax's)
DTYPES = ('float32', 'bfloat16')


def jax_matmul_flops(dtype: str) -> float:
  """FLOP/s of a timed SIZE^3 jax matmul over all local devices (bf16 inputs accumulate in f32)."""
  return accounting.peak_flops_per_device(dtype)[0] * jax.local_device_count()


def torch_matmul_flops(dtype: str) -> float:
  """FLOP/s of a SIZE^3 torch matmul on torch_train's device, timed as jax's is (bf16 products accumulate in f32)."""
  device = torch_train.default_device()
  x = torch.randn(SIZE, SIZE, generator=torch.Generator().manual_seed(0)).to(device, getattr(torch, dtype))

  def product():
    x @ x
    torch_train.synchronize(device)

  return 2 * SIZE**3 / accounting.best_seconds(product)


def measure() -> dict[str, dict[str, float]]:
  """{dtype: {'jax': FLOP/s, 'torch': FLOP/s, 'ceiling': the better}}."""
  result = {}
  for dtype in DTYPES:
    timed = {'jax': jax_matmul_flops(dtype), 'torch': torch_matmul_flops(dtype)}
    result[dtype] = {**timed, 'ceiling': max(timed.values())}
  return result
