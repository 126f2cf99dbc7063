"""A tiny caption data set for tests, until the real ones land: 8x8 pictures of one colored square
in a corner, captioned '<color> <corner>'. `register(monkeypatch)` serves it as 'tiny_captions'."""

import numpy as np
import pytest

from input_pipeline import builders
from input_pipeline.builders import in_memory
from input_pipeline.tokenizers import WordTokenizer

NAME = 'tiny_captions'
COLORS = {'red': (255, 0, 0), 'green': (0, 255, 0), 'blue': (0, 0, 255)}
CORNERS = {'top': (0, 0), 'bottom': (4, 4)}
CAPTION_LEN = 5  # BOS, two words, EOS, PAD


def picture(color: str, corner: str) -> np.ndarray:
  image = np.zeros((8, 8, 3), np.uint8)
  row, col = CORNERS[corner]
  image[row:row + 4, col:col + 4] = COLORS[color]
  return image


class LaminaTinyCaptions(in_memory.ArraysBuilder, skip_registration=True):
  """Every (color, corner) pair 16 times in train, twice in test."""

  TOKENIZER = WordTokenizer([*COLORS, *CORNERS])

  def _features(self):
    return {'image': in_memory.tensor((8, 8, 3), np.uint8), 'caption': in_memory.tensor((CAPTION_LEN,), np.int32)}

  def _split_features(self):
    pairs = [(color, corner) for color in COLORS for corner in CORNERS]
    return {split: {'image': np.stack([picture(*p) for p in pairs * copies]),
                    'caption': np.stack([self.TOKENIZER.caption_ids(' '.join(p), CAPTION_LEN) for p in pairs * copies])}
            for split, copies in (('train', 16), ('test', 2))}


def register(monkeypatch: pytest.MonkeyPatch) -> None:
  """Makes 'tiny_captions' one of lamina's offline data sets for this test."""
  monkeypatch.setitem(builders._LOCAL_ONLY, NAME, LaminaTinyCaptions)
  monkeypatch.setitem(builders.OFFLINE_SPLITS, NAME, ('train', 'test'))
  monkeypatch.setattr(builders, 'OFFLINE_DATASETS', (*builders.OFFLINE_DATASETS, NAME))
