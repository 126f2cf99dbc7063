"""Keeps the console readable: libraries' INFO chatter stays out, their warnings stay in."""

import logging
import sys

from absl import logging as absl_logging

# orbax logs every save step at INFO through absl; grain logs each worker start.
_CHATTY = ('/orbax/', '/grain/', '/tensorflow_datasets/', '/jax2onnx/')


# orbax warns that a checkpoint directory opened read-only is read-only: runs read others' that way.
_READ_ONLY_NOTICES = ('CheckpointManagerOptions.read_only=True', 'Given directory is read only')


class _LibraryInfoFilter(logging.Filter):

  def filter(self, record: logging.LogRecord) -> bool:
    if '/orbax/' in record.pathname and record.getMessage().startswith(_READ_ONLY_NOTICES):
      return False
    return record.levelno >= logging.WARNING or not any(part in record.pathname for part in _CHATTY)


_restore_failed = False


def restore_failed() -> None:
  """Called once a checkpoint restore has failed (and been reported in one line): its echoes,
  which arrive later and from other threads, are dropped from then on.

  When one read fails, orbax closes its event loop with the other reads in flight: each then
  completes into the closed loop ("Event loop is closed"), and its futures and coroutines are
  garbage-collected unretrieved; each of those prints a traceback.
  """
  global _restore_failed
  _restore_failed = True


def _is_restore_echo(unraisable) -> bool:
  if unraisable.object is None:
    return isinstance(unraisable.exc_value, RuntimeError) and str(unraisable.exc_value) == 'Event loop is closed'
  code = getattr(unraisable.object, 'cr_code', None)
  return code is not None and '/orbax/' in code.co_filename


def _skip_restore_echoes(previous):
  def hook(unraisable):
    if not (_restore_failed and _is_restore_echo(unraisable)):
      previous(unraisable)
  hook.skips_restore_echoes = True
  return hook


class _RestoreEchoLog(logging.Filter):
  """asyncio's "exception was never retrieved" for the reads of a failed restore."""

  def filter(self, record: logging.LogRecord) -> bool:
    return not (_restore_failed and 'exception was never retrieved' in record.getMessage())


def quiet_library_info() -> None:
  # gcsfs, fsspec: a line per file opened in a bucket; jax: each backend it did not find (TPU, everywhere).
  for chatty in ('gcsfs', 'fsspec', 'jax._src.xla_bridge'):
    logging.getLogger(chatty).setLevel(logging.WARNING)
  asyncio_logger = logging.getLogger('asyncio')
  if not any(isinstance(f, _RestoreEchoLog) for f in asyncio_logger.filters):
    asyncio_logger.addFilter(_RestoreEchoLog())
  if not getattr(sys.unraisablehook, 'skips_restore_echoes', False):
    sys.unraisablehook = _skip_restore_echoes(sys.unraisablehook)
  logger = absl_logging.get_absl_logger()
  if not any(isinstance(f, _LibraryInfoFilter) for f in logger.filters):
    logger.addFilter(_LibraryInfoFilter())
