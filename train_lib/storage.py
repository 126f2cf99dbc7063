"""Where a run's files live: a local disk or a bucket (gs://), through one path type, etils.epath.

orbax writes checkpoints through the same type (and tensorstore); everything else lamina reads
or writes under a workdir goes through the helpers here. Object stores have no appends and no
renames, so a file is written whole, in one request, which a bucket makes atomic.
"""

import concurrent.futures
import contextlib
import logging
import os
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

from etils import epath

REMOTE_SCHEMES = ('gs://',)
# orbax-checkpoint (0.12) builds tensorstore specs for local paths and gs:// only.
UNSUPPORTED_SCHEMES = ('s3://',)


def path(location: str | os.PathLike) -> epath.Path:
  """`location` as an epath: a bucket URL as it is, a local path absolute with `~` expanded."""
  location = os.fspath(location)
  if is_remote(location):
    return epath.Path(location)
  return epath.Path(os.path.abspath(os.path.expanduser(location)))


def is_remote(location: str | os.PathLike) -> bool:
  return os.fspath(location).startswith(REMOTE_SCHEMES)


def write_atomically(target: epath.Path, data: str | bytes) -> None:
  """Writes `target` whole: readers see the old file or the new one, never a part."""
  if is_remote(target):
    target.write_bytes(data.encode() if isinstance(data, str) else data)  # one request: atomic
    return
  target.parent.mkdir(parents=True, exist_ok=True)
  fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=f'.{target.name}.')
  with os.fdopen(fd, 'wb') as f:
    f.write(data.encode() if isinstance(data, str) else data)
  os.replace(temporary, target)


def read_text(target: epath.Path) -> str | None:
  """The file's text as it is now, or None where it does not exist."""
  forget_listings(target)
  try:
    return target.read_text()
  except FileNotFoundError:
    return None


def forget_listings(target: epath.Path) -> None:
  """Drops this process's cached listings of `target`'s bucket (fsspec caches them, sizes
  included), so what other processes wrote since is seen."""
  if is_remote(target):
    epath.backend.fsspec_backend.fs(os.fspath(target)).invalidate_cache()


def copy_tree(source: str, target: epath.Path) -> None:
  """Copies the local directory `source` into `target` (which may be a bucket)."""
  for root, _, files in os.walk(source):
    for name in files:
      local = os.path.join(root, name)
      write_atomically(target / os.path.relpath(local, source), epath.Path(local).read_bytes())


@contextlib.contextmanager
def quiet_client_logs() -> Iterator[None]:
  """gcsfs logs a traceback for every request it gives up on; the caller reports the error itself."""
  logger = logging.getLogger('gcsfs')
  level = logger.level
  logger.setLevel(logging.CRITICAL)
  try:
    yield
  finally:
    logger.setLevel(level)


class BackgroundWriter:
  """Writes to a workdir in order on one thread, off the train step's critical path.

  A failed write is raised by `wait` or `close`, so a run never loses files silently.
  """

  def __init__(self):
    self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix='lamina-writer')
    self._pending: list[concurrent.futures.Future] = []

  def submit(self, fn: Callable[..., Any], *args: Any) -> concurrent.futures.Future:
    self._pending = [f for f in self._pending if not f.done() or f.exception()]
    future = self._executor.submit(fn, *args)
    self._pending.append(future)
    return future

  def wait(self) -> None:
    """Returns once every write submitted so far is done; raises the first that failed."""
    pending, self._pending = self._pending, []
    for future in pending:
      future.result()

  def close(self) -> None:
    try:
      self.wait()
    finally:
      self._executor.shutdown(wait=True)
