"""The shapes_captions data: seeded scenes, captions that read the pixels left to right, held-out pairs."""

import pathlib

import numpy as np
import pytest

import input_pipeline
from input_pipeline import builders
from input_pipeline.builders import shapes_captions as sc
from tests.conftest import data_config

pytestmark = pytest.mark.unit

COLOUR_NAMES, SIZE_NAMES = list(sc.COLOURS), list(sc.SIZES)


def _pairs(scenes: sc.Scenes) -> set[tuple[str, str]]:
  present = scenes.size >= 0
  return {(COLOUR_NAMES[c], sc.SHAPES[s]) for c, s in zip(scenes.colour[present], scenes.shape[present])}


def test_held_out_pairs_are_only_in_test_unseen_and_in_each_of_its_scenes():
  held_out = set(sc.HELD_OUT)
  train, test, unseen = (sc.split_scenes(split) for split in ('train', 'test', 'test_unseen'))
  assert not _pairs(train) & held_out and not _pairs(test) & held_out
  # Training still sees every colour and every shape, each in several pairs.
  assert {c for c, _ in _pairs(train)} == set(sc.COLOURS) and {s for _, s in _pairs(train)} == set(sc.SHAPES)
  assert _pairs(unseen) >= held_out
  for i in range(len(unseen)):
    assert _pairs(unseen.select([i])) & held_out, sc.caption(unseen, i)


def test_splits_have_their_sizes_and_test_scenes_are_new():
  sizes = {split: len(sc.split_scenes(split)) for split in sc.SPLITS}
  assert sizes == {'train': 20_000, 'test': 2_000, 'test_unseen': 2_000}
  assert not set(sc.split_scenes('test').keys()) & set(sc.split_scenes('train').keys())
  for split in sc.SPLITS:
    assert set(np.unique(sc.split_scenes(split).num_objects)) == {1, 2, 3}


def test_scenes_and_features_are_the_same_given_the_seed():
  first, again, other = sc.sample(50, seed=7, unseen=True), sc.sample(50, seed=7, unseen=True), sc.sample(
      50, seed=8, unseen=True)
  assert first.keys() == again.keys() and first.keys() != other.keys()
  for key, values in sc.features(first).items():
    np.testing.assert_array_equal(values, sc.features(again)[key])


@pytest.mark.parametrize('unseen', [False, True])
def test_captions_name_exactly_the_rendered_objects_left_to_right(unseen):
  scenes = sc.sample(300, seed=3, unseen=unseen)
  data = sc.features(scenes)
  assert data['image'].shape == (300, 48, 48, 3) and data['image'].dtype == np.uint8
  assert data['caption'].shape == (300, sc.CAPTION_LENGTH) and data['caption'].dtype == np.int32
  for i, (image, ids) in enumerate(zip(data['image'], data['caption'])):
    assert ids[0] == sc.TOKENIZER.BOS and sc.TOKENIZER.EOS in ids
    objects = sc.TOKENIZER.decode(ids).split(' left of ')
    assert len(objects) == data['num_objects'][i] == scenes.num_objects[i]
    painted, right_of_previous = 0, 0
    for k, words in enumerate(objects):
      article, size, colour, shape = words.split()
      side, x, y = sc.SIZES[size], scenes.x[i, k], scenes.y[i, k]
      assert article == 'a' and x >= right_of_previous and x + side <= 48 and 0 <= y <= 48 - side
      right_of_previous = x + side + sc.GAP
      np.testing.assert_array_equal(image[y + side // 2, x + side // 2], sc.COLOURS[colour])
      # The box holds exactly the named shape at the named size, in the named colour, on black.
      box = image[y:y + side, x:x + side]
      mask = sc.mask(sc.SHAPES.index(shape), SIZE_NAMES.index(size))
      np.testing.assert_array_equal(box.any(axis=-1), mask)
      assert (box[mask] == sc.COLOURS[colour]).all()
      painted += mask.sum()
      np.testing.assert_array_equal(data['objects'][i, k],
                                    [COLOUR_NAMES.index(colour), sc.SHAPES.index(shape), SIZE_NAMES.index(size)])
    assert image.any(axis=-1).sum() == painted  # nothing outside the boxes, and no overlaps
    assert (data['objects'][i, len(objects):] == -1).all()


def test_shapes_are_told_apart_by_their_pixels_at_both_sizes():
  for size in range(len(sc.SIZES)):
    masks = {sc.mask(shape, size).tobytes() for shape in range(len(sc.SHAPES))}
    assert len(masks) == len(sc.SHAPES)


def _example_bytes(example: dict[str, np.ndarray]) -> bytes:
  return b''.join(np.asarray(example[key]).tobytes() for key in ('image', 'caption', 'objects', 'num_objects'))


def test_loads_through_the_input_pipeline_and_builds_the_same_bytes_twice(data_dir, tmp_path):
  config = data_config(data_dir, 'shapes_captions')
  info = input_pipeline.dataset_info(config)
  assert info['splits'] == {'train': 20_000, 'test': 2_000, 'test_unseen': 2_000}
  assert info['features'] == {'image': {'shape': (48, 48, 3), 'dtype': 'uint8'},
                              'caption': {'shape': (sc.CAPTION_LENGTH,), 'dtype': 'int32'},
                              'objects': {'shape': (3, 3), 'dtype': 'int32'},
                              'num_objects': {'shape': (), 'dtype': 'int32'}}
  source = input_pipeline.get_source(config, 'test_unseen')
  expected = sc.features(sc.split_scenes('test_unseen'))
  # tfds stores a split in its own (fixed) order: compare the examples as sets.
  examples = source.__getitems__(list(range(len(source))))
  assert sorted(_example_bytes(example) for example in examples) == sorted(
      _example_bytes({key: values[i] for key, values in expected.items()}) for i in range(len(source)))
  assert builders.offline_builder('shapes_captions', data_dir).TOKENIZER is sc.TOKENIZER

  def record_files(root: str) -> dict[str, bytes]:
    builder = builders.prepare(builders.offline_builder('shapes_captions', root))
    return {path.name: path.read_bytes() for path in pathlib.Path(builder.data_dir).glob('*.array_record*')}

  first, second = record_files(data_dir), record_files(str(tmp_path))
  assert len(first) >= 3 and first == second
