"""Keeps the console readable: libraries' INFO chatter stays out, their warnings stay in."""

import logging

from absl import logging as absl_logging

# orbax logs every save step at INFO through absl; grain logs each worker start.
_CHATTY = ('/orbax/', '/grain/', '/tensorflow_datasets/')


class _LibraryInfoFilter(logging.Filter):

  def filter(self, record: logging.LogRecord) -> bool:
    return record.levelno >= logging.WARNING or not any(part in record.pathname for part in _CHATTY)


def quiet_library_info() -> None:
  logging.getLogger('gcsfs').setLevel(logging.WARNING)  # a line per file opened in a bucket
  logger = absl_logging.get_absl_logger()
  if not any(isinstance(f, _LibraryInfoFilter) for f in logger.filters):
    logger.addFilter(_LibraryInfoFilter())
