"""The run's directory, on a local disk or in a bucket: resolved, checked writable, given its config.json."""

import contextlib
import json
import os
import uuid
from collections.abc import Iterator

import ml_collections
from etils import epath

from train_lib import storage
from train_lib.errors import ConfigError


def resolve(workdir: str | os.PathLike) -> epath.Path:
  """`workdir` as an epath; a URL scheme lamina cannot checkpoint to is one ConfigError line."""
  location = os.fspath(workdir)
  if location.startswith(storage.UNSUPPORTED_SCHEMES):
    raise ConfigError(f'workdir {location}: orbax-checkpoint writes checkpoints to local paths and gs:// only; '
                      'use a gs:// bucket, or mount the bucket (e.g. mountpoint-s3) and pass its local path')
  if '://' in location and not storage.is_remote(location):
    raise ConfigError(f'workdir {location}: unknown storage scheme; use a local path or gs://BUCKET/PATH')
  return storage.path(location)


def prepare(workdir: str | os.PathLike) -> epath.Path:
  """Creates `workdir` if needed and proves it writable with a probe file it removes again."""
  path = resolve(workdir)
  probe = path / f'.write_check.{uuid.uuid4().hex}'
  with one_line_errors(path, 'writable'):
    path.mkdir(parents=True, exist_ok=True)
    probe.write_text('')
    probe.unlink()
  return path


@contextlib.contextmanager
def one_line_errors(path: epath.Path, what: str) -> Iterator[None]:
  """Storage client errors inside become one ConfigError line: 'workdir PATH is not WHAT: reason and fix'."""
  try:
    with storage.quiet_client_logs():
      yield
  except ConfigError:
    raise
  except Exception as e:  # pylint: disable=broad-except  # every client error is one line here
    raise ConfigError(f'workdir {path} is not {what}: {_reason(e, path)}') from e


def _reason(error: Exception, path: epath.Path) -> str:
  """What went wrong, and the fix, from the storage client's exception."""
  lines = [line.strip() for line in str(error).splitlines() if line.strip()] or [type(error).__name__]
  if not storage.is_remote(path):
    return f'{getattr(error, "strerror", None) or lines[0]}; choose another --workdir'
  bucket = str(path).split('/')[2]
  text = lines[-1]  # gcsfs puts the service's own message last
  if isinstance(error, FileNotFoundError):
    return f'bucket gs://{bucket} does not exist; create it (gcloud storage buckets create gs://{bucket})'
  if (getattr(error, 'code', None) in (401, 403) or isinstance(error, PermissionError)
      or lines[0].startswith('Forbidden')):
    return (f'no permission to write to gs://{bucket} ({text}); sign in (gcloud auth application-default login) '
            'or set GOOGLE_APPLICATION_CREDENTIALS to a service account that may write there')
  if 'connect' in text.lower() or isinstance(error, (ConnectionError, TimeoutError)):
    return f'cannot reach the storage service ({text}); check the network (or STORAGE_EMULATOR_HOST)'
  return f'{type(error).__name__}: {text}'


def write_config(workdir: epath.Path, config: ml_collections.ConfigDict) -> None:
  storage.write_atomically(workdir / 'config.json', json.dumps(
      json.loads(config.to_json_best_effort()), indent=2, sort_keys=True))
