"""Tokenizers for text data sets: characters, bytes, or a SentencePiece model trained here.

A tokenizer is named in the config (`data.tokenizer`):

  'char'          one id per character of the training split (id 0: any other character)
  'byte'          the 256 UTF-8 byte values
  'bpe:N'         SentencePiece BPE with N pieces, trained on the training split
  'unigram:N'     SentencePiece unigram with up to N pieces, trained on the training split

Caption data sets, whose language is a closed set of words, carry their own `WordTokenizer`
(with padding, start and end ids) and store captions already as its ids.

SentencePiece models fall back to UTF-8 bytes for characters they lack, so N
includes 256 byte pieces and must exceed 256 plus the number of distinct characters.

Learned vocabularies are built once and saved with the data set; `to_json` /
`from_json` carry a tokenizer into checkpoints, so sampling decodes with exactly
the vocabulary the model was trained on.
"""

import abc
import base64
import re
from collections.abc import Iterable
from typing import Any

import numpy as np

SENTENCEPIECE_KINDS = ('bpe', 'unigram')
SPEC_HELP = "'char', 'byte', 'bpe:N' or 'unigram:N' (N pieces, e.g. 'bpe:1000')"
# SentencePiece reads its training text as lines; longer ones are skipped.
_MAX_LINE_BYTES = 4192


class Tokenizer(abc.ABC):
  """text <-> int32 ids; `vocab_size` bounds the ids."""

  vocab_size: int

  @abc.abstractmethod
  def encode(self, text: str) -> np.ndarray:
    """int32 ids of `text`."""

  @abc.abstractmethod
  def decode(self, ids: Iterable[int]) -> str:
    """The text of `ids`."""

  @abc.abstractmethod
  def to_json(self) -> dict[str, Any]:
    """A JSON-able description that `from_json` turns back into this tokenizer."""


class CharTokenizer(Tokenizer):
  """Ids 1..V-1 are the training text's characters in sorted order; 0 stands for any other."""

  def __init__(self, characters: str):
    self.characters = ''.join(sorted(set(characters)))
    self.vocab_size = len(self.characters) + 1
    self._lookup = np.zeros(max(map(ord, self.characters), default=0) + 1, np.int32)
    self._lookup[[ord(c) for c in self.characters]] = np.arange(1, self.vocab_size)

  def encode(self, text: str) -> np.ndarray:
    codes = np.frombuffer(text.encode('utf-32-le'), np.uint32)
    known = codes < len(self._lookup)
    return np.where(known, self._lookup[np.where(known, codes, 0)], 0).astype(np.int32)

  def decode(self, ids: Iterable[int]) -> str:
    return ''.join(self.characters[i - 1] if 0 < i < self.vocab_size else '\ufffd' for i in ids)

  def to_json(self) -> dict[str, Any]:
    return {'kind': 'char', 'characters': self.characters}


class ByteTokenizer(Tokenizer):
  """UTF-8 bytes; decoding replaces broken sequences (a sample cut mid-character)."""

  vocab_size = 256

  def encode(self, text: str) -> np.ndarray:
    return np.frombuffer(text.encode('utf-8'), np.uint8).astype(np.int32)

  def decode(self, ids: Iterable[int]) -> str:
    return bytes(int(i) for i in ids if 0 <= i < 256).decode('utf-8', errors='replace')

  def to_json(self) -> dict[str, Any]:
    return {'kind': 'byte'}


class WordTokenizer(Tokenizer):
  """Whitespace-separated words of a fixed vocabulary, after the ids of PAD, BOS, EOS and UNK.

  Encoding adds no BOS/EOS (`caption_ids` does); decoding drops the special ids.
  """

  PAD, BOS, EOS, UNK = 0, 1, 2, 3
  SPECIAL = ('<pad>', '<bos>', '<eos>', '<unk>')

  def __init__(self, words: Iterable[str]):
    self.words = tuple(dict.fromkeys(words))
    if any(not w or w.split() != [w] or w in self.SPECIAL for w in self.words):
      raise ValueError('vocabulary words must be non-empty, without whitespace, and not a special token')
    self.vocab_size = len(self.SPECIAL) + len(self.words)
    self._ids = {w: i for i, w in enumerate(self.words, start=len(self.SPECIAL))}

  def encode(self, text: str) -> np.ndarray:
    return np.asarray([self._ids.get(w, self.UNK) for w in text.split()], np.int32)

  def decode(self, ids: Iterable[int]) -> str:
    special = len(self.SPECIAL)
    return ' '.join(self.words[i - special] if special <= i < self.vocab_size else '<unk>'
                    for i in map(int, ids) if i not in (self.PAD, self.BOS, self.EOS))

  def caption_ids(self, text: str, length: int) -> np.ndarray:
    """[length] int32: BOS, the words, EOS, then PAD; a ValueError if they do not fit."""
    ids = np.concatenate([[self.BOS], self.encode(text), [self.EOS]])
    if len(ids) > length:
      raise ValueError(f'{text!r} takes {len(ids)} ids with BOS and EOS, more than {length}')
    return np.pad(ids, (0, length - len(ids))).astype(np.int32)

  def to_json(self) -> dict[str, Any]:
    return {'kind': 'word', 'words': list(self.words)}


class SentencePieceTokenizer(Tokenizer):
  """A SentencePiece model (BPE or unigram) held as its serialized proto."""

  def __init__(self, model_proto: bytes):
    import sentencepiece  # pylint: disable=g-import-not-at-top
    self.model_proto = model_proto
    self._processor = sentencepiece.SentencePieceProcessor(model_proto=model_proto)
    self.vocab_size = self._processor.vocab_size()

  def encode(self, text: str) -> np.ndarray:
    return np.asarray(self._processor.encode(text), np.int32)

  def decode(self, ids: Iterable[int]) -> str:
    return self._processor.decode([int(i) for i in ids])

  def to_json(self) -> dict[str, Any]:
    return {'kind': 'sentencepiece', 'model': base64.b64encode(self.model_proto).decode('ascii')}


def parse_spec(spec: str) -> tuple[str, int]:
  """'bpe:1000' -> ('bpe', 1000); 'char' -> ('char', 0). A one-line ValueError otherwise."""
  match = re.fullmatch(r'(char|byte)|(bpe|unigram):([1-9]\d*)', spec.strip()) if isinstance(spec, str) else None
  if not match:
    raise ValueError(f'data.tokenizer={spec!r} is not a tokenizer; use {SPEC_HELP}')
  if match[1]:
    return match[1], 0
  return match[2], int(match[3])


def train(spec: str, documents: Iterable[str]) -> Tokenizer:
  """Builds the tokenizer `spec` names, learning its vocabulary from `documents`."""
  kind, size = parse_spec(spec)
  if kind == 'byte':
    return ByteTokenizer()
  if kind == 'char':
    return CharTokenizer(''.join(set(''.join(documents))))
  return SentencePieceTokenizer(_train_sentencepiece(kind, size, documents))


def _train_sentencepiece(kind: str, size: int, documents: Iterable[str]) -> bytes:
  import io  # pylint: disable=g-import-not-at-top
  import sentencepiece  # pylint: disable=g-import-not-at-top
  lines = (line for doc in documents for line in doc.split('\n')
           if line and len(line.encode('utf-8')) <= _MAX_LINE_BYTES)
  model = io.BytesIO()
  try:
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=lines, model_writer=model, model_type=kind, vocab_size=size,
        # Text must come back exactly: no normalisation, newlines are a piece, and any
        # character the pieces miss falls back to its bytes.
        normalization_rule_name='identity', remove_extra_whitespaces=False, add_dummy_prefix=False,
        user_defined_symbols=['\n'], byte_fallback=True, character_coverage=1.0,
        input_sentence_size=2_000_000, shuffle_input_sentence=True, num_threads=1, minloglevel=2,
        hard_vocab_limit=False)  # a small corpus may support fewer unigram pieces than asked
  except RuntimeError as e:
    raise ValueError(f'data.tokenizer={kind}:{size}: SentencePiece could not train it ({e}); '
                     f'try another vocabulary size') from None
  return model.getvalue()


def from_json(description: dict[str, Any]) -> Tokenizer:
  """The inverse of `Tokenizer.to_json`."""
  kind = description.get('kind')
  if kind == 'char':
    return CharTokenizer(description['characters'])
  if kind == 'byte':
    return ByteTokenizer()
  if kind == 'word':
    return WordTokenizer(description['words'])
  if kind == 'sentencepiece':
    return SentencePieceTokenizer(base64.b64decode(description['model']))
  raise ValueError(f'unknown tokenizer kind {kind!r} in a saved tokenizer; valid kinds: char, byte, word, '
                   'sentencepiece')
