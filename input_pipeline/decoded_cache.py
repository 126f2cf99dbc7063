"""Decoded in-memory splits, cached on disk so a new process skips tfds's decoder.

tfds decodes record by record in Python, seconds for Fashion-MNIST's 70,000 examples in
every process, while reading the same arrays back from an .npz takes well under a second. The key is the dataset's files (their bytes, hashed), the split
spec and the decoded feature spec, so a rebuilt or different dataset never hits a
stale entry and copies of one dataset in several data_dirs share one entry.
"""

import hashlib
import os
import tempfile
from collections.abc import Callable

import numpy as np
from absl import logging

__all__ = ['cache_dir', 'load_or_decode']

Arrays = dict[str, np.ndarray]
_HASH_CHUNK = 1 << 22


def cache_dir() -> str:
  """$LAMINA_DECODED_CACHE, else ~/.cache/lamina/decoded."""
  return os.environ.get('LAMINA_DECODED_CACHE') or os.path.join(os.path.expanduser('~'), '.cache', 'lamina', 'decoded')


def _key(dataset_dir: str, split: str, spec: dict) -> str:
  digest = hashlib.blake2b(repr((split, sorted(spec.items()))).encode(), digest_size=16)
  for entry in sorted(os.scandir(dataset_dir), key=lambda e: e.name):
    if entry.is_file():
      digest.update(entry.name.encode())
      with open(entry.path, 'rb') as f:
        while chunk := f.read(_HASH_CHUNK):
          digest.update(chunk)
  return digest.hexdigest()


def load_or_decode(dataset_dir: str, name: str, split: str, spec: dict, decode: Callable[[], Arrays]) -> Arrays:
  """The split's arrays from the cache, else `decode()`, saved for the next process.

  A cache that cannot be written (read-only home, full disk) costs only the saving.
  """
  path = os.path.join(cache_dir(), f'{name}-{_key(dataset_dir, split, spec)}.npz')
  if os.path.exists(path):
    with np.load(path) as cached:
      return {k: cached[k] for k in cached.files}
  arrays = decode()
  try:
    os.makedirs(cache_dir(), exist_ok=True)
    # Written whole under a temporary name, then renamed: a reader never sees half a file.
    fd, temporary = tempfile.mkstemp(dir=cache_dir(), suffix='.tmp')
    try:
      with os.fdopen(fd, 'wb') as f:
        np.savez(f, **arrays)
      os.replace(temporary, path)
    except BaseException:
      os.unlink(temporary)
      raise
  except OSError as e:
    logging.warning('not caching the decoded %s:%s in %s: %s', name, split, cache_dir(), e)
  return arrays
