"""Runs lamina's processes under tcmalloc where the machine has it (Debian: libtcmalloc-minimal4).

XLA:CPU allocates each call's buffers afresh. glibc hands large freed blocks back to
the kernel, so the next call touches new pages, tens of thousands of page faults a step.
tcmalloc keeps freed pages for reuse (docs/kernels.md has what it saved); PyTorch gains about
as much. A preload can only take
effect at process start, so `python -m train_lib.main` re-executes itself once with
LD_PRELOAD set. LAMINA_SYSTEM_MALLOC=1 keeps the system allocator.
"""

import os
import sys

LIBRARIES = ('libtcmalloc_minimal.so.4', 'libtcmalloc.so.4')
SEARCH_PATH = ('/usr/lib/x86_64-linux-gnu', '/usr/lib/aarch64-linux-gnu', '/usr/lib64', '/usr/lib')
OPT_OUT = 'LAMINA_SYSTEM_MALLOC'


def find_tcmalloc() -> str | None:
  """The first tcmalloc library on the system's library path, or None."""
  for directory in SEARCH_PATH:
    for name in LIBRARIES:
      path = os.path.join(directory, name)
      if os.path.exists(path):
        return path
  return None


def in_use() -> bool:
  """Whether tcmalloc is mapped into this process."""
  try:
    with open('/proc/self/maps') as maps:
      return 'tcmalloc' in maps.read()
  except OSError:  # not Linux
    return False


def environment(env: dict[str, str] | None = None) -> dict[str, str]:
  """A copy of `env` (default: this process's) that preloads tcmalloc, unless it is absent or opted out."""
  env = dict(os.environ if env is None else env)
  library = find_tcmalloc()
  preload = env.get('LD_PRELOAD', '')
  if library and not env.get(OPT_OUT) and 'tcmalloc' not in preload:
    env['LD_PRELOAD'] = f'{library}:{preload}' if preload else library
  return env


def reexec_under_tcmalloc() -> None:
  """Replaces this process by itself under tcmalloc, once; returns where that is not possible or done."""
  env = environment()
  if in_use() or env.get('LD_PRELOAD') == os.environ.get('LD_PRELOAD'):
    return  # loaded, absent, opted out, or a preload that did not take: carry on as is
  sys.stdout.flush()
  sys.stderr.flush()
  os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)
