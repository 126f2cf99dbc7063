"""lamina's fast paths, apart from the models: CPU FFI kernels (fused attention, oneDNN
convolutions, a transpose; C++ built on first use by ffi_build.py) and custom-VJP forms of
matmuls, convolutions and attention.

models/ reaches them only through `kernels.dispatch`, re-exported here, and `use(mode)` picks
them for everything traced inside it: 'auto' (the fastest form each operation has here) or
'xla' (plain JAX, the default outside `use`). train_lib sets it from `config.kernels`.
"""

from kernels.dispatch import (MODES, attention, batch_norm_dtype, check_mode, conv_general_dilated, describe,
                              dot_general, einsum, ffi_flops, mode, use)
from kernels.ffi_build import cpu_flags

__all__ = ['MODES', 'attention', 'batch_norm_dtype', 'check_mode', 'conv_general_dilated', 'cpu_flags', 'describe',
           'dot_general', 'einsum', 'ffi_flops', 'mode', 'use']
