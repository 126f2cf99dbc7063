"""Shapes with captions: scenes of one to three coloured shapes on black, each captioned left to right
("a small red circle left of a large blue square"), with colour-shape pairs held out of training to
measure compositional generalisation.

Every word of a caption is readable from the pixels: objects never share a pixel column (at least
`GAP` empty columns between neighbours), so their left-to-right order is unambiguous; the two sizes
differ by six pixels; colours are flat and far apart; nothing else (height, exact position) is
described. A fixed set of (colour, shape) pairs, `HELD_OUT`, never appears in `train` or `test`;
every `test_unseen` scene holds at least one of them. Each split is drawn from its own fixed seed,
so a build is the same bytes every time. `test` keeps only scenes absent from `train`; one-object
scenes repeat most often, so they are slightly fewer there (578 of 2,000 rather than about a third).
"""

import dataclasses
import functools

import numpy as np
from PIL import Image, ImageDraw
import tensorflow_datasets as tfds

from input_pipeline import tokenizers
from input_pipeline.builders import in_memory

COLOURS = {'red': (230, 30, 30), 'green': (40, 180, 40), 'blue': (40, 80, 240), 'yellow': (240, 220, 40),
           'purple': (160, 60, 200)}
SHAPES = ('circle', 'square', 'triangle', 'cross')
SIZES = {'small': 9, 'large': 15}  # the side of the object's square box, in pixels
# One pair per shape and per colour but purple, so training sees every colour and every shape.
HELD_OUT = (('red', 'triangle'), ('green', 'cross'), ('blue', 'circle'), ('yellow', 'square'))
IMAGE_SIZE = 48
MAX_OBJECTS = 3
GAP = 1  # the fewest empty columns between neighbours; 3 large objects still fit: 3 * 15 + 2 * GAP <= 48
SPLITS = {'train': (20_000, 0), 'test': (2_000, 1), 'test_unseen': (2_000, 2)}  # (scenes, seed)
TEST_SPARE = 0.25  # extra test scenes drawn, to make up for those dropped as repeats of train scenes

TOKENIZER = tokenizers.WordTokenizer(['a', *SIZES, *COLOURS, *SHAPES, 'left', 'of'])
WORDS_PER_OBJECT = 4  # a SIZE COLOUR SHAPE, then 'left of' between objects
CAPTION_LENGTH = 2 + MAX_OBJECTS * WORDS_PER_OBJECT + 2 * (MAX_OBJECTS - 1)  # with BOS and EOS


@dataclasses.dataclass(frozen=True)
class Scenes:
  """N scenes as [N, MAX_OBJECTS] int arrays, objects left to right, -1 past a scene's last object.

  `colour`, `shape`, `size` index COLOURS, SHAPES, SIZES; (x, y) is the top-left corner of the
  object's box of side SIZES[size].
  """
  colour: np.ndarray
  shape: np.ndarray
  size: np.ndarray
  x: np.ndarray
  y: np.ndarray

  def __len__(self) -> int:
    return len(self.size)

  @property
  def num_objects(self) -> np.ndarray:
    return (self.size >= 0).sum(axis=1)

  def arrays(self) -> dict[str, np.ndarray]:
    """{field name: its array}, not copied (dataclasses.asdict would deep-copy them)."""
    return {field.name: getattr(self, field.name) for field in dataclasses.fields(self)}

  def select(self, rows: np.ndarray) -> 'Scenes':
    """The scenes at `rows` (indices or a boolean mask)."""
    return Scenes(**{name: values[rows] for name, values in self.arrays().items()})

  def keys(self) -> list[bytes]:
    """One key per scene, equal exactly when the scenes (and so their images) are."""
    return [row.tobytes() for row in np.stack(list(self.arrays().values()), axis=1)]


def pair_index(colour: str, shape: str) -> int:
  """A (colour, shape) pair as one int: colour id * len(SHAPES) + shape id."""
  return list(COLOURS).index(colour) * len(SHAPES) + SHAPES.index(shape)


def sample(count: int, seed: int, unseen: bool) -> Scenes:
  """`count` random scenes: 1..MAX_OBJECTS objects of random size, placed left to right with random
  spaces, at random heights. Pairs are seen ones, or with `unseen`, any pair with one random object
  of each scene given a held-out one."""
  rng = np.random.default_rng(seed)
  num_objects = rng.integers(1, MAX_OBJECTS + 1, count)
  present = np.arange(MAX_OBJECTS) < num_objects[:, None]
  held_out = [pair_index(*pair) for pair in HELD_OUT]
  if unseen:
    pair = rng.integers(0, len(COLOURS) * len(SHAPES), (count, MAX_OBJECTS))
    pair[np.arange(count), rng.integers(0, num_objects)] = rng.choice(held_out, count)
  else:
    pair = rng.choice(np.setdiff1d(np.arange(len(COLOURS) * len(SHAPES)), held_out), (count, MAX_OBJECTS))
  size = rng.integers(0, len(SIZES), (count, MAX_OBJECTS))
  width = np.where(present, np.array(list(SIZES.values()))[size], 0)
  free = IMAGE_SIZE - width.sum(axis=1, keepdims=True) - GAP * (num_objects[:, None] - 1)
  # Sorted cuts of the free columns: the space left of each object (absent ones take the rest).
  cuts = np.sort(np.where(present, rng.integers(0, free + 1, (count, MAX_OBJECTS)), free), axis=1)
  x = cuts + np.cumsum(width, axis=1) - width + GAP * np.arange(MAX_OBJECTS)
  y = rng.integers(0, IMAGE_SIZE - width + 1)

  def absent_as_minus_one(values: np.ndarray) -> np.ndarray:
    return np.where(present, values, -1)

  return Scenes(colour=absent_as_minus_one(pair // len(SHAPES)), shape=absent_as_minus_one(pair % len(SHAPES)),
                size=absent_as_minus_one(size), x=absent_as_minus_one(x), y=absent_as_minus_one(y))


def split_scenes(split: str) -> Scenes:
  """The scenes of `split` (a key of SPLITS), from its fixed seed."""
  count, seed = SPLITS[split]
  if split != 'test':
    return sample(count, seed, unseen=split == 'test_unseen')
  candidates = sample(round(count * (1 + TEST_SPARE)), seed, unseen=False)
  train = set(split_scenes('train').keys())
  new = np.flatnonzero([key not in train for key in candidates.keys()])
  if len(new) < count:
    raise RuntimeError(f'only {len(new)} of {len(candidates)} test scenes are new; raise TEST_SPARE')
  return candidates.select(new[:count])


@functools.cache
def mask(shape: int, size: int) -> np.ndarray:
  """[side, side] bool: SHAPES[shape] drawn by Pillow without anti-aliasing, filling its box."""
  side = SIZES[list(SIZES)[size]]
  image = Image.new('1', (side, side))
  draw, end = ImageDraw.Draw(image), side - 1
  arm = side // 3  # the cross's arms are its middle third
  if SHAPES[shape] == 'circle':
    draw.ellipse((0, 0, end, end), fill=1)
  elif SHAPES[shape] == 'square':
    draw.rectangle((0, 0, end, end), fill=1)
  elif SHAPES[shape] == 'triangle':
    draw.polygon([(0, end), (end, end), (end / 2, 0)], fill=1)
  else:
    draw.rectangle((arm, 0, end - arm, end), fill=1)
    draw.rectangle((0, arm, end, end - arm), fill=1)
  return np.array(image, bool)


def render(scenes: Scenes) -> np.ndarray:
  """[N, IMAGE_SIZE, IMAGE_SIZE, 3] uint8: each object's flat colour on black, all objects of one
  shape and size painted at once."""
  images = np.zeros((len(scenes), IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8)
  palette = np.array(list(COLOURS.values()), np.uint8)
  scene, slot = np.nonzero(scenes.size >= 0)
  for shape in range(len(SHAPES)):
    for size in range(len(SIZES)):
      pick = (scenes.shape[scene, slot] == shape) & (scenes.size[scene, slot] == size)
      i, k = scene[pick, None], slot[pick, None]
      dy, dx = np.nonzero(mask(shape, size))
      images[i, scenes.y[i, k] + dy, scenes.x[i, k] + dx] = palette[scenes.colour[i, k]]
  return images


def caption(scenes: Scenes, i: int) -> str:
  """Scene `i` in words: 'a SIZE COLOUR SHAPE' per object, left to right, joined by 'left of'."""
  sizes, colours = list(SIZES), list(COLOURS)
  return ' left of '.join(f'a {sizes[s]} {colours[c]} {SHAPES[h]}'
                          for c, h, s in zip(scenes.colour[i], scenes.shape[i], scenes.size[i]) if s >= 0)


def features(scenes: Scenes) -> dict[str, np.ndarray]:
  """The stored features of `scenes` (see LaminaShapesCaptions)."""
  return {'image': render(scenes),
          'caption': np.stack([TOKENIZER.caption_ids(caption(scenes, i), CAPTION_LENGTH) for i in range(len(scenes))]),
          'objects': np.stack([scenes.colour, scenes.shape, scenes.size], axis=-1).astype(np.int32),
          'num_objects': scenes.num_objects.astype(np.int32)}


class LaminaShapesCaptions(in_memory.ArraysBuilder, skip_registration=True):
  """`image` uint8 (48, 48, 3); `caption` int32 (18,), TOKENIZER's ids: BOS, words, EOS, PAD;
  `objects` int32 (3, 3), (colour, shape, size) ids per object left to right, -1 past the last;
  `num_objects` int32 (), 1..3. train 20,000 and test 2,000 scenes of seen pairs; test_unseen
  2,000 scenes with at least one held-out pair."""

  RELEASE_NOTES = {'1.0.0': '5 colours x 4 shapes x 2 sizes; 4 colour-shape pairs held out.'}
  TOKENIZER = TOKENIZER

  def _features(self) -> dict[str, tfds.features.FeatureConnector]:
    return {'image': in_memory.tensor((IMAGE_SIZE, IMAGE_SIZE, 3), np.uint8),
            'caption': in_memory.tensor((CAPTION_LENGTH,), np.int32),
            'objects': in_memory.tensor((MAX_OBJECTS, 3), np.int32),
            'num_objects': in_memory.tensor((), np.int32)}

  def _split_features(self) -> dict[str, dict[str, np.ndarray]]:
    return {split: features(split_scenes(split)) for split in SPLITS}
