"""The run's directory: created, checked writable, and given its config.json."""

import json
import os
import tempfile

import ml_collections

from train_lib.errors import ConfigError


def absolute(workdir: str) -> str:
  """`workdir` as an absolute path, `~` expanded."""
  return os.path.abspath(os.path.expanduser(workdir))


def prepare(workdir: str) -> str:
  """Creates `workdir` if needed and proves it writable; returns its absolute path."""
  path = absolute(workdir)
  try:
    os.makedirs(path, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path, prefix='.write_check'):
      pass
  except OSError as e:
    raise ConfigError(f'workdir {path} is not writable ({e.strerror}); choose another --workdir') from e
  return path


def write_config(workdir: str, config: ml_collections.ConfigDict) -> None:
  tmp = os.path.join(workdir, '.config.json.tmp')
  with open(tmp, 'w', encoding='utf-8') as f:
    json.dump(json.loads(config.to_json_best_effort()), f, indent=2, sort_keys=True)
  os.replace(tmp, os.path.join(workdir, 'config.json'))
