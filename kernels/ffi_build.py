"""Compile a C++ XLA FFI library on first use and cache it, like torch.utils.cpp_extension.

The cache key is the source text and that of the headers it includes from its own folder,
the compile command and the jaxlib version (its FFI headers), so an edit or an upgrade
rebuilds. The library is written under a temporary name and renamed into place: an
interrupted build never leaves a file that looks built.

Kernels built on kernels/ffi_vector.h hold an AVX-512, an AVX2 (with FMA) and a baseline build
and run the best one the CPU has; $LAMINA_MAX_CPU_ISA (one of ISAS) caps the choice, as
oneDNN's ONEDNN_MAX_CPU_ISA does, so that one machine can test every build it can run.
"""

import ctypes
import functools
import hashlib
import os
import platform
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence

import jax
import jaxlib

__all__ = ['ISAS', 'MAX_ISA_VARIABLE', 'BuildError', 'cache_dir', 'cpu_flags', 'isa', 'load', 'placement_reason', 'register']

ISAS = ('baseline', 'avx2', 'avx512')  # kernels/ffi_vector.h's lamina::Isa, in order
MAX_ISA_VARIABLE = 'LAMINA_MAX_CPU_ISA'


class BuildError(RuntimeError):
  """The compiler is missing or failed; the message says which and how to fix it."""


def cache_dir() -> str:
  """$LAMINA_KERNEL_CACHE, else ~/.cache/lamina/kernels."""
  return os.environ.get('LAMINA_KERNEL_CACHE') or os.path.join(os.path.expanduser('~'), '.cache', 'lamina', 'kernels')


def load(source: str, *, include_dirs: Sequence[str] = (), library_dirs: Sequence[str] = (),
         libraries: Sequence[str] = ()) -> ctypes.CDLL:
  """The shared library built from the C++ file `source`, compiling it if no cached build matches."""
  compiler = os.environ.get('CXX', 'g++')
  if shutil.which(compiler) is None:
    raise BuildError(f'no C++ compiler {compiler!r} on PATH (apt-get install g++, or set CXX)')
  flags = ['-O2', '-std=c++17', '-shared', '-fPIC', '-w', f'-I{jax.ffi.include_dir()}']
  flags += [f'-I{d}' for d in include_dirs]
  flags += [f'-L{d}' for d in library_dirs] + [f'-Wl,-rpath,{d}' for d in library_dirs]
  # The libraries come after the source, where the linker resolves them.
  command = [compiler, *flags, source, *[f'-l{name}' for name in libraries]]
  texts = [_read(source)] + [_read(header) for header in _local_headers(source)]
  key = hashlib.sha256(b'\0'.join([*texts, ' '.join(command).encode(), jaxlib.__version__.encode()]))
  stem = os.path.splitext(os.path.basename(source))[0]
  target = os.path.join(cache_dir(), f'{stem}-{key.hexdigest()[:16]}.so')
  if not os.path.exists(target):
    _compile(command, source, target)
  return ctypes.CDLL(target)


def register(targets: dict[str, str], library: Callable[[], ctypes.CDLL]) -> str | None:
  """Registers the handlers of `library()` (built on first use) with XLA on CPU, FFI target name
  -> symbol. Returns None once they are registered, else why they cannot be, in a few words.
  A $LAMINA_MAX_CPU_ISA that names no build is a one-line ValueError."""
  if platform.system() != 'Linux':
    return f'built for Linux only, not {platform.system()}'
  cap = os.environ.get(MAX_ISA_VARIABLE)
  if cap is not None and cap not in ISAS:
    raise ValueError(f'{MAX_ISA_VARIABLE}={cap!r} names no build of the CPU kernels; use one of {list(ISAS)} '
                     'or unset it')
  try:
    handlers = library()
  except (BuildError, OSError) as e:
    return str(e)
  for target, symbol in targets.items():
    jax.ffi.register_ffi_target(target, jax.ffi.pycapsule(getattr(handlers, symbol)), platform='cpu')
  return None


@functools.cache
def cpu_flags() -> frozenset[str]:
  """The CPU's feature flags from /proc/cpuinfo (empty where there is none)."""
  try:
    with open('/proc/cpuinfo') as f:
      return frozenset(next((line.split(':', 1)[1].split() for line in f if line.startswith('flags')), []))
  except OSError:
    return frozenset()


def isa(library: ctypes.CDLL) -> str:
  """The build (one of ISAS) that a kernel library built on kernels/ffi_vector.h runs on this CPU."""
  return ISAS[library.LaminaBestIsa()]


def placement_reason() -> str | None:
  """Why this run's arrays cannot go to a CPU FFI kernel (None where they can): XLA does
  not partition an FFI call, so it needs a CPU backend with a single device."""
  if jax.default_backend() != 'cpu':
    return f'the backend is {jax.default_backend()}, not cpu'
  if jax.device_count() != 1:
    return f'XLA cannot partition an FFI call over the {jax.device_count()} devices of this run'
  return None


def _read(path: str) -> bytes:
  with open(path, 'rb') as f:
    return f.read()


def _local_headers(source: str) -> list[str]:
  """The files `source` includes with "quotes" that lie in its own folder."""
  folder = os.path.dirname(os.path.abspath(source))
  names = re.findall(rb'^\s*#include\s+"([^"]+)"', _read(source), flags=re.MULTILINE)
  paths = [os.path.join(folder, name.decode()) for name in names]
  return [path for path in paths if os.path.exists(path)]


def _compile(command: list[str], source: str, target: str) -> None:
  os.makedirs(os.path.dirname(target), exist_ok=True)
  fd, partial = tempfile.mkstemp(suffix='.so.partial', dir=os.path.dirname(target))
  os.close(fd)
  try:
    result = subprocess.run([*command, '-o', partial], capture_output=True, text=True)
    if result.returncode != 0:
      lines = result.stderr.strip().splitlines() or ['(no output)']
      first_error = next((line for line in lines if 'error' in line), lines[-1])
      raise BuildError(f'compiling {os.path.basename(source)} failed: {first_error.strip()}')
    os.replace(partial, target)
  finally:
    if os.path.exists(partial):
      os.remove(partial)
