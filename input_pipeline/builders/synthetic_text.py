"""A synthetic text data set for smoke tests of configs whose real corpus is not prepared here.

Documents are sentences of words from a fixed random vocabulary, each next word
drawn from a seeded bigram table, so a language model has structure to learn.
It is not natural language and no figure on it means anything about one.
"""

import numpy as np

from input_pipeline.builders import text

SPLITS = ('train', 'validation')
_SIZES = {'train': 2000, 'validation': 200}  # documents


def documents(count: int, seed: int) -> list[str]:
  table = np.random.default_rng(0)  # the same "language" for every split
  letters = np.array(list('abcdefghijklmnopqrstuvwxyz'))
  words = [''.join(table.choice(letters, size=table.integers(2, 8))) for _ in range(200)]
  bigrams = table.dirichlet(np.full(len(words), 0.05), size=len(words))
  rng = np.random.default_rng(seed)
  result = []
  for _ in range(count):
    word, sentence = rng.integers(len(words)), []
    for _ in range(rng.integers(5, 30)):
      sentence.append(words[word])
      word = rng.choice(len(words), p=bigrams[word])
    result.append(' '.join(sentence).capitalize() + '.')
  return result


class LaminaSyntheticText(text.TextBuilder, skip_registration=True):
  """2,000 train / 200 validation synthetic sentences from a seeded bigram model."""

  RELEASE_NOTES = {'1.0.0': 'Seeded bigram sentences over 200 random words.'}

  def _split_documents(self):
    return {split: documents(count, seed=i + 1) for i, (split, count) in enumerate(_SIZES.items())}
