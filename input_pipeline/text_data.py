"""Text data sets as token streams: the data set's tokenizer, and each split's ids.

A text data set (one whose records carry a 'text' string, such as lamina's
`shakespeare` or a prepared tfds `lm1b`) becomes one stream per split: every
document's ids in record order, documents separated by a blank line. The
tokenizer is learned from the data set's 'train' split on first use; it and
the token streams are saved under `<data set dir>/lamina/`, next to the data.
"""

import functools
import json
import os
import pathlib
import tempfile

import ml_collections
import numpy as np

from input_pipeline import sources
from input_pipeline import tokenizers
from input_pipeline.builders.text import TEXT_KEY

DOCUMENT_SEPARATOR = '\n\n'
_READ_CHUNK = 1024


def is_text(data_cfg: ml_collections.ConfigDict) -> bool:
  """Whether the config reads its data set as text (it names a tokenizer)."""
  return bool(data_cfg.get('tokenizer'))


def tokenizer(data_cfg: ml_collections.ConfigDict) -> tokenizers.Tokenizer:
  """The data set's `data.tokenizer`, loaded from beside the data or learned and saved there."""
  builder = sources.get_builder(data_cfg)
  return _tokenizer(str(builder.data_dir), data_cfg.name, sources.resolve_data_dir(data_cfg), data_cfg.tokenizer)


@functools.lru_cache(maxsize=8)
def _tokenizer(dataset_dir: str, name: str, data_dir: str, spec: str) -> tokenizers.Tokenizer:
  tokenizers.parse_spec(spec)
  path = pathlib.Path(dataset_dir) / 'lamina' / 'tokenizers' / f'{_file_key(spec)}.json'
  if path.exists():
    return tokenizers.from_json(json.loads(path.read_text()))
  cfg = ml_collections.ConfigDict({'name': name, 'data_dir': data_dir})
  learned = tokenizers.train(spec, _documents(sources.get_source(cfg, 'train')))
  _write_atomic(path, lambda f: f.write(json.dumps(learned.to_json()).encode()))
  return learned


def token_stream(data_cfg: ml_collections.ConfigDict, split: str) -> np.ndarray:
  """The ids of `split` (a tfds split spec) as one array, memory-mapped from its cache file."""
  builder = sources.get_builder(data_cfg)
  return _token_stream(str(builder.data_dir), data_cfg.name, sources.resolve_data_dir(data_cfg),
                       data_cfg.tokenizer, split)


@functools.lru_cache(maxsize=8)
def _token_stream(dataset_dir: str, name: str, data_dir: str, spec: str, split: str) -> np.ndarray:
  path = pathlib.Path(dataset_dir) / 'lamina' / 'tokens' / _file_key(spec) / f'{_file_key(split)}.npy'
  if not path.exists():
    cfg = ml_collections.ConfigDict({'name': name, 'data_dir': data_dir, 'tokenizer': spec})
    tok = _tokenizer(dataset_dir, name, data_dir, spec)
    separator = tok.encode(DOCUMENT_SEPARATOR)
    pieces = []
    for i, document in enumerate(_documents(sources.get_source(cfg, split))):
      pieces += [separator, tok.encode(document)] if i else [tok.encode(document)]
    ids = np.concatenate(pieces) if pieces else np.zeros(0, np.int32)
    dtype = np.uint16 if tok.vocab_size <= 2**16 else np.int32
    _write_atomic(path, lambda f: np.save(f, ids.astype(dtype)))
  return np.load(path, mmap_mode='r')


def _documents(source):
  for start in range(0, len(source), _READ_CHUNK):
    for record in source.__getitems__(list(range(start, min(start + _READ_CHUNK, len(source))))):
      text = record[TEXT_KEY]
      yield text.decode('utf-8') if isinstance(text, bytes) else str(text)


def _file_key(name: str) -> str:
  return ''.join(c if c.isalnum() or c in '-_.' else '_' for c in name)


def _write_atomic(path: pathlib.Path, write) -> None:
  """Writes via a temporary file and a rename: concurrent or killed writers never leave half a file."""
  path.parent.mkdir(parents=True, exist_ok=True)
  with tempfile.NamedTemporaryFile(dir=path.parent, delete=False, suffix='.tmp') as f:
    write(f)
  os.replace(f.name, path)
