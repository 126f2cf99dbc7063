"""The pp language: parsing, each op's numbers, randomness, and its error lines."""

import pickle

import numpy as np
import pytest

from input_pipeline import preprocess


def run(pp, batch, seed=0):
  return preprocess.parse(pp)(batch, np.random.default_rng(seed))


def distinct_images(b=64, h=6, w=5, c=2):
  """Images whose every pixel value is unique, so crops and flips are recoverable."""
  return np.arange(b * h * w * c, dtype=np.int64).reshape(b, h, w, c)


def test_value_range_maps_linearly_to_float32():
  x = np.array([0, 4, 8, 16], np.uint8).reshape(1, 2, 2, 1)
  out = run('value_range(0, 1, in_min=0, in_max=16)', {'image': x})['image']
  assert out.dtype == np.float32
  np.testing.assert_allclose(out.ravel(), [0, 0.25, 0.5, 1])
  out = run('value_range(-1, 1)', {'image': np.array([[0, 255]], np.uint8)})['image']
  np.testing.assert_allclose(out, [[-1, 1]])


def test_normalize_per_channel_and_scalar():
  x = np.ones((2, 1, 1, 3), np.uint8) * np.array([1, 4, 11], np.uint8)
  out = run('normalize([1, 2, 3], [1, 2, 4])', {'image': x})['image']
  assert out.dtype == np.float32
  np.testing.assert_allclose(out[0, 0, 0], [0, 1, 2])
  out = run('normalize(2, 0.5, key="x")', {'x': np.array([[3.0]])})['x']
  np.testing.assert_allclose(out, [[2.0]])


def test_onehot_values_and_range_check():
  out = run('onehot(4, on=0.9, off=0.1)', {'label': np.array([0, 3])})['label']
  assert out.dtype == np.float32
  np.testing.assert_allclose(out, [[0.9, 0.1, 0.1, 0.1], [0.1, 0.1, 0.1, 0.9]])
  with pytest.raises(ValueError, match=r'onehot\(4\).*\[0, 4\)'):
    run('onehot(4)', {'label': np.array([4])})


def test_random_crop_crops_each_image_at_its_own_offset():
  x, pad = distinct_images(), 2
  out = run(f'random_crop(pad={pad})', {'image': x})['image']
  assert out.shape == x.shape and out.dtype == x.dtype
  padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  offsets = []
  for i in range(len(x)):
    found = [(t, l) for t in range(2 * pad + 1) for l in range(2 * pad + 1)
             if np.array_equal(padded[i, t:t + 6, l:l + 5], out[i])]
    assert len(found) == 1
    offsets.append(found[0])
  assert len(set(offsets)) > 10  # Offsets vary across the batch.
  np.testing.assert_array_equal(out, run('random_crop(2)', {'image': x})['image'])
  assert not np.array_equal(out, run('random_crop(2)', {'image': x}, seed=1)['image'])
  np.testing.assert_array_equal(run('random_crop(0)', {'image': x})['image'], x)


def test_random_flip_lr_flips_about_half():
  x = distinct_images()
  out = run('random_flip_lr', {'image': x})['image']
  flipped = [np.array_equal(o, i[:, ::-1]) for o, i in zip(out, x)]
  kept = [np.array_equal(o, i) for o, i in zip(out, x)]
  assert all(f != k for f, k in zip(flipped, kept))
  assert 10 < sum(flipped) < 54
  np.testing.assert_array_equal(out, run('random_flip_lr', {'image': x})['image'])


def test_copy_makes_a_second_key_and_refuses_to_overwrite():
  x = distinct_images()
  out = run("copy(image='image2')", {'image': x})
  assert sorted(out) == ['image', 'image2']
  np.testing.assert_array_equal(out['image2'], x)
  with pytest.raises(ValueError, match="copy would overwrite key 'image'"):
    run("copy(image2='image')", out)


def two_views(op: str, x: np.ndarray, seed: int = 0) -> dict:
  """`op` applied to 'image' and to its copy 'image2', each drawing its own randomness."""
  return run(f"copy(image='image2')|{op}|{op[:-1]}, key='image2')", {'image': x}, seed)


def test_random_resized_crop_shapes_dtypes_and_determinism():
  x = distinct_images(b=32, h=12, w=10, c=3).astype(np.float32)
  op = 'random_resized_crop(scale=(0.1, 0.5), ratio=(0.5, 2.0))'
  out = two_views(op, x)
  for key in ('image', 'image2'):
    assert out[key].shape == x.shape and out[key].dtype == np.float32
  assert not np.array_equal(out['image'], out['image2'])  # the views draw different boxes
  again = two_views(op, x)
  np.testing.assert_array_equal(out['image'], again['image'])
  assert not np.array_equal(out['image'], two_views(op, x, seed=1)['image'])
  # A crop of at most half the area resamples a sub-box: it never covers the whole range of values.
  assert np.all(np.ptp(out['image'].reshape(32, -1), axis=1) < np.ptp(x.reshape(32, -1), axis=1))
  ints = run(op, {'image': np.random.default_rng(0).integers(0, 256, (4, 12, 10, 1)).astype(np.uint8)})
  assert ints['image'].dtype == np.uint8


def test_random_resized_crop_of_the_whole_image_is_the_identity():
  x = np.random.default_rng(0).random((16, 9, 9, 2)).astype(np.float32)
  out = run('random_resized_crop(scale=(1, 1), ratio=(1, 1))', {'image': x})['image']
  np.testing.assert_array_equal(out, x)
  wide = distinct_images(h=6, w=12).astype(np.uint8)
  out = run('random_resized_crop(scale=(1.0, 1.0), ratio=(2.0, 2.0))', {'image': wide})['image']
  np.testing.assert_array_equal(out, wide)


def test_random_resized_crop_interpolates_bilinearly():
  # A linear ramp stays linear under bilinear resampling: every row of every crop is an evenly
  # spaced ramp, but where the first or last sample, half a step beyond the box's edge pixels'
  # centres, is clamped to the border (these crops are wide enough that only those can be).
  ramp = np.broadcast_to(np.arange(16, dtype=np.float32)[None, None, :, None], (8, 16, 16, 1))
  out = run('random_resized_crop(scale=(0.3, 0.6), ratio=(0.75, 1.33))', {'image': ramp})['image']
  steps = np.diff(out[..., 0], axis=2)[:, :, 1:-1]
  assert np.ptp(steps, axis=2).max() < 1e-4
  assert np.all(steps < 1)  # zoomed in: neighbouring output pixels are less than a pixel apart


def test_random_brightness_contrast_jitters_each_view_within_range():
  x = np.random.default_rng(0).random((64, 5, 5, 1)).astype(np.float32)
  out = two_views('random_brightness_contrast(0.4, 0.4)', x)
  assert out['image'].dtype == np.float32 and out['image'].shape == x.shape
  assert out['image'].min() >= 0 and out['image'].max() <= 1
  assert not np.array_equal(out['image'], out['image2'])
  np.testing.assert_array_equal(out['image'], two_views('random_brightness_contrast(0.4, 0.4)', x)['image'])
  np.testing.assert_allclose(run('random_brightness_contrast(0, 0)', {'image': x})['image'], x, atol=1e-6)
  with pytest.raises(ValueError, match=r'float images in \[0, 1\]'):
    run('random_brightness_contrast', {'image': distinct_images()})


def test_keep_rename_cast():
  batch = {'signal': np.zeros((2, 3), np.float64), 'label': np.array([1, 2]),
           'extra': np.zeros(2)}
  out = run("keep('signal', 'label')|rename(signal='image')|cast('float32')",
            batch)
  assert sorted(out) == ['image', 'label']
  assert out['image'].dtype == np.float32
  assert batch['signal'].dtype == np.float64  # Inputs are never modified.


def test_empty_pp_is_identity_and_pipelines_pickle():
  batch = {'image': np.ones((1, 2, 2, 1))}
  assert run('', batch) is batch
  pipeline = preprocess.parse('value_range(0, 1)|random_flip_lr')
  clone = pickle.loads(pickle.dumps(pipeline))
  assert clone.pp == pipeline.pp and clone.random


def test_split_respects_quotes_and_brackets():
  pipeline = preprocess.parse("rename(a='x|y')|keep('x|y', 'b')")
  out = pipeline({'a': np.zeros(1), 'b': np.zeros(1)})
  assert sorted(out) == ['b', 'x|y']


@pytest.mark.parametrize('pp, message', [
    ('value_range(0, 1)|flip', r"unknown pp op 'flip'.*valid ops: cast, copy, keep, log_mel, normalize, onehot, "
     r'random_brightness_contrast, random_crop, random_flip_lr, random_resized_crop, rename, value_range'),
    ('value_range(0)', r"pp op value_range\(0\): .*'vmax'.*usage: value_range"),
    ('onehot(depth=ten)', r'onehot\(depth=ten\): arguments must be Python literals'),
    ('random_crop(pad=-1)', r'random_crop\(pad=-1\): pad must be an int >= 0'),
    ('onehot(10', r"'onehot\(10' is not `name` or `name\(args\)`"),
    ('cast("flaot32")', r"cast\(\"flaot32\"\): unknown dtype 'flaot32'"),
    ('normalize(0, 0)', r'normalize\(0, 0\): .*std > 0'),
    ('random_resized_crop(scale=(0.5, 2))', r'scale must lie in \(0, 1\]'),
    ('random_resized_crop(ratio=(2, 1))', r'ratio must be \(lo, hi\) with 0 < lo <= hi'),
    ('random_brightness_contrast(contrast=1.5)', r'contrast must be in \[0, 1\)'),
    ('copy(image=2)', r"needs src='dst' pairs"),
])
def test_parse_errors_are_one_line_naming_the_op(pp, message):
  with pytest.raises(ValueError, match=message) as info:
    preprocess.parse(pp)
  assert '\n' not in str(info.value)


def test_runtime_errors_name_the_op_and_the_key():
  with pytest.raises(ValueError, match=r"random_crop\(1\): no key 'image'.*signal"):
    run('random_crop(1)', {'signal': np.zeros((2, 40, 1))})
  with pytest.raises(ValueError, match=r'random_flip_lr: .*\(batch, height, width'):
    run('random_flip_lr', {'image': np.zeros((2, 40, 1))})
  with pytest.raises(ValueError, match='needs an rng'):
    preprocess.parse('random_flip_lr')({'image': np.zeros((1, 2, 2, 1))})
