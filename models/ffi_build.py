"""Compile a C++ XLA FFI library on first use and cache it, like torch.utils.cpp_extension.

The cache key is the source text, the compile command and the jaxlib version (its FFI
headers), so an edit or an upgrade rebuilds. The library is written under a temporary
name and renamed into place: an interrupted build never leaves a file that looks built.
"""

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile

import jax
import jaxlib

__all__ = ['BuildError', 'cache_dir', 'load']


class BuildError(RuntimeError):
  """The compiler is missing or failed; the message says which and how to fix it."""


def cache_dir() -> str:
  """$LAMINA_KERNEL_CACHE, else ~/.cache/lamina/kernels."""
  return os.environ.get('LAMINA_KERNEL_CACHE') or os.path.join(os.path.expanduser('~'), '.cache', 'lamina', 'kernels')


def load(source: str, *, include_dirs: list[str], library_dirs: list[str], libraries: list[str]) -> ctypes.CDLL:
  """The shared library built from the C++ file `source`, compiling it if no cached build matches."""
  compiler = os.environ.get('CXX', 'g++')
  if shutil.which(compiler) is None:
    raise BuildError(f'no C++ compiler {compiler!r} on PATH (apt-get install g++, or set CXX)')
  flags = ['-O2', '-std=c++17', '-shared', '-fPIC', '-w', f'-I{jax.ffi.include_dir()}']
  flags += [f'-I{d}' for d in include_dirs]
  flags += [f'-L{d}' for d in library_dirs] + [f'-Wl,-rpath,{d}' for d in library_dirs]
  # The libraries come after the source, where the linker resolves them.
  command = [compiler, *flags, source, *[f'-l{name}' for name in libraries]]
  with open(source, 'rb') as f:
    text = f.read()
  key = hashlib.sha256(b'\0'.join([text, ' '.join(command).encode(), jaxlib.__version__.encode()]))
  stem = os.path.splitext(os.path.basename(source))[0]
  target = os.path.join(cache_dir(), f'{stem}-{key.hexdigest()[:16]}.so')
  if not os.path.exists(target):
    _compile(command, source, target)
  return ctypes.CDLL(target)


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
