"""Offline builders, sources, validation, the training loader and eval batches."""

import io
import time

import numpy as np
import pytest
import tensorflow_datasets as tfds

import input_pipeline
from input_pipeline import builders
from input_pipeline import decoded_cache
from input_pipeline import records
from input_pipeline.builders import digits
from input_pipeline.builders import fashion_mnist
from input_pipeline.builders import split as split_lib
from tests.conftest import data_config as config


def read_all(source) -> dict[str, np.ndarray]:
  examples = source.__getitems__(list(range(len(source))))
  return {k: np.stack([e[k] for e in examples]) for k in examples[0]}


def rows(batch, key='image'):
  """Each example as bytes: an identity for datasets without duplicates."""
  return [r.tobytes() for r in batch[key]]


# ---- offline builders -------------------------------------------------------


def test_digits_is_the_documented_stratified_split(data_dir):
  from sklearn import datasets  # pylint: disable=g-import-not-at-top
  full = datasets.load_digits()
  images = full.images.astype(np.uint8)[..., None]
  train_idx, test_idx = split_lib.stratified_split(full.target, 360, seed=0)
  for split, idx, n in (('train', train_idx, 1437), ('test', test_idx, 360)):
    data = read_all(input_pipeline.get_source(config(data_dir), split))
    assert data['image'].shape == (n, 8, 8, 1) and data['image'].dtype == np.uint8
    assert data['label'].dtype == np.int64 and data['image'].max() <= 16
    assert sorted(zip(rows(data), data['label'])) == sorted(
        zip(rows({'image': images[idx]}), full.target[idx]))
  assert np.intersect1d(train_idx, test_idx).size == 0
  np.testing.assert_array_equal(np.bincount(full.target[test_idx]),
                                [36, 37, 35, 37, 36, 36, 36, 36, 35, 36])


def test_digits_build_is_deterministic(data_dir, tmp_path):
  first = read_all(input_pipeline.get_source(config(data_dir), 'train'))
  second = read_all(input_pipeline.get_source(config(str(tmp_path)), 'train'))
  for k in first:  # Same records in the same order.
    np.testing.assert_array_equal(first[k], second[k])


# Fingerprints of mnist1d.data.make_dataset(get_dataset_args()) — the paper's
# set — as float32: per-class counts, sum |x| and sum x^2 per split.
MNIST1D = {
    'train': ([398, 396, 411, 394, 394, 402, 401, 404, 402, 398],
              118338.29510155294, 159248.25384650432),
    'test': ([102, 104, 89, 106, 106, 98, 99, 96, 98, 102],
             29977.87754976499, 40751.74617684711),
}


@pytest.mark.parametrize('split', ['train', 'test'])
def test_mnist1d_is_exactly_the_papers_set(data_dir, split):
  data = read_all(input_pipeline.get_source(config(data_dir, 'mnist1d'), split))
  counts, abs_sum, square_sum = MNIST1D[split]
  assert data['signal'].shape == (sum(counts), 40, 1)
  assert data['signal'].dtype == np.float32
  np.testing.assert_array_equal(np.bincount(data['label']), counts)
  signal = data['signal'].astype(np.float64)
  np.testing.assert_allclose(np.abs(signal).sum(), abs_sum, rtol=1e-9)
  np.testing.assert_allclose((signal**2).sum(), square_sum, rtol=1e-9)


def test_mnist_without_tfds_mnist_is_the_5k_subset(data_dir):
  info = input_pipeline.dataset_info(config(data_dir, 'mnist'))
  assert info['tfds_name'] == 'lamina_mnist5k'
  assert info['splits'] == {'train': 4000, 'test': 1000}
  assert info['features']['image'] == {'shape': (28, 28, 1), 'dtype': 'uint8'}
  test = read_all(input_pipeline.get_source(config(data_dir, 'mnist'), 'test'))
  np.testing.assert_array_equal(np.bincount(test['label']), [100] * 10)


class Mnist(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Stands in for a real tfds `mnist` prepared elsewhere: same name and features."""

  VERSION = tfds.builder_cls('mnist').VERSION

  def _info(self):
    return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict({
        'image': tfds.features.Image(shape=(28, 28, 1)),
        'label': tfds.features.ClassLabel(num_classes=10)}))

  def _split_generators(self, dl_manager):
    return {'train': self._generate_examples(12), 'test': self._generate_examples(5)}

  def _generate_examples(self, n):
    from PIL import Image  # pylint: disable=g-import-not-at-top
    for i in range(n):
      png = io.BytesIO()
      Image.fromarray(np.full((28, 28), i, np.uint8)).save(png, format='png')
      yield i, {'image': png.getvalue(), 'label': i % 10}


def test_a_prepared_tfds_mnist_wins_over_the_subset(tmp_path):
  builders.prepare(Mnist(data_dir=str(tmp_path)))
  info = input_pipeline.dataset_info(config(str(tmp_path), 'mnist'))
  assert info['tfds_name'] == 'mnist'
  assert info['splits'] == {'train': 12, 'test': 5}
  test = read_all(input_pipeline.get_source(config(str(tmp_path), 'mnist'), 'test'))
  assert test['image'].shape == (5, 28, 28, 1)  # PNGs decoded without TF.
  assert sorted(test['image'][:, 0, 0, 0]) == [0, 1, 2, 3, 4]


def test_fashion_mnist_from_debian_idx_files(data_dir):
  # The README's test command installs dataset-fashion-mnist; its absence is a failure.
  assert fashion_mnist.idx_files_present()
  info = input_pipeline.dataset_info(config(data_dir, 'fashion_mnist'))
  assert info['splits'] == {'train': 60000, 'test': 10000}
  assert info['num_classes'] == 10
  source = input_pipeline.get_source(config(data_dir, 'fashion_mnist'), 'test')
  sample = source.__getitems__(list(range(0, 10000, 7)))
  assert sample[0]['image'].shape == (28, 28, 1)
  assert sample[0]['image'].dtype == np.uint8
  assert {int(e['label']) for e in sample} == set(range(10))


def test_fashion_mnist_missing_everywhere_says_how_to_get_it(
    data_dir, monkeypatch):
  monkeypatch.setattr(fashion_mnist, 'IDX_DIR', '/nonexistent')
  with pytest.raises(ValueError, match='apt-get install dataset-fashion-mnist'):
    input_pipeline.validate(config(data_dir, 'fashion_mnist'))


def test_interrupted_prepare_leaves_nothing_valid(tmp_path, monkeypatch):
  def fail_midway(self, arrays):
    yield 0, {'image': arrays['image'][0], 'label': int(arrays['label'][0])}
    raise KeyboardInterrupt  # As if the process were stopped mid-write.

  monkeypatch.setattr(digits.LaminaDigits, '_generate_examples', fail_midway)
  with pytest.raises(KeyboardInterrupt):
    builders.prepare(digits.LaminaDigits(data_dir=str(tmp_path)))
  assert not builders.is_prepared(digits.LaminaDigits(data_dir=str(tmp_path)))
  monkeypatch.undo()
  source = input_pipeline.get_source(config(str(tmp_path)), 'test')
  assert len(source) == 360


# ---- names, splits, validation ----------------------------------------------


_OFFLINE_LIST = ', '.join(builders.OFFLINE_DATASETS)


@pytest.mark.parametrize('name, message', [
    ('digts', r"unknown dataset 'digts' \(did you mean digits.*offline datasets "
     rf'\({_OFFLINE_LIST}\)'),
    ('cifar10', r"dataset 'cifar10' is not prepared: nothing in .*cifar10.*"
     rf'tfds build cifar10 --file_format=array_record --data_dir=.*{_OFFLINE_LIST}'),
])
def test_unavailable_datasets_fail_fast_with_a_fix(data_dir, name, message):
  start = time.monotonic()
  with pytest.raises(ValueError, match=message) as info:
    input_pipeline.get_source(config(data_dir, name), 'train')
  assert time.monotonic() - start < 2
  assert '\n' not in str(info.value)


def test_unknown_split_lists_the_splits(data_dir):
  with pytest.raises(ValueError, match=r"unknown split 'tset'.*valid splits: "
                     'test, train'):
    input_pipeline.get_source(config(data_dir), 'tset')
  assert len(input_pipeline.get_source(config(data_dir), 'train[:101]')) == 101


def test_dataset_info(data_dir):
  info = input_pipeline.dataset_info(config(data_dir))
  assert info['num_classes'] == 10
  assert info['splits'] == {'train': 1437, 'test': 360}
  assert info['features'] == {'image': {'shape': (8, 8, 1), 'dtype': 'uint8'},
                              'label': {'shape': (), 'dtype': 'int64'}}


@pytest.mark.parametrize('overrides, message', [
    ({'train_split': 'trian'}, r"^train_split: unknown split 'trian'"),
    ({'pp_train': 'random_crop(1)'}, r"^pp_train: pp op random_crop\(1\): no key "
     r"'image'"),
    ({'pp_eval': 'onehot(10)|resize(4)'}, r"^pp_eval: unknown pp op 'resize'"),
    ({'worker_count': -1}, r'^worker_count must be an int >= 0'),
    ({'name': 'mnist_1d'}, r"unknown dataset 'mnist_1d' \(did you mean mnist1d"),
])
def test_validate_catches_bad_configs_without_reading(data_dir, overrides,
                                                      message):
  cfg = config(data_dir, **{'name': 'mnist1d', **overrides})
  with pytest.raises(ValueError, match=message):
    input_pipeline.validate(cfg)


def test_validate_accepts_good_configs(data_dir):
  input_pipeline.validate(config(
      data_dir, pp_train='value_range(0, 1, in_max=16)|random_crop(pad=2)|'
      'random_flip_lr|onehot(10)', pp_eval='value_range(0, 1, in_max=16)'))
  input_pipeline.validate(config(None, 'mnist1d', eval_split='train[90%:]'))


# ---- eval batches -----------------------------------------------------------


@pytest.mark.parametrize('split, global_batch_size', [
    ('test', 6), ('test', 96), ('train[:101]', 12), ('train[:101]', 402)])
@pytest.mark.parametrize('process_count', [1, 2, 3])
def test_eval_covers_the_split_exactly_once(data_dir, split, global_batch_size,
                                            process_count):
  cfg = config(data_dir)
  want = read_all(input_pipeline.get_source(cfg, split))
  n = len(want['label'])
  seen, counts, mask_total = [], set(), 0
  for p in range(process_count):
    batches = list(input_pipeline.make_eval_batches(
        cfg, split=split, global_batch_size=global_batch_size,
        process_index=p, process_count=process_count))
    counts.add(len(batches))
    for b in batches:
      assert len(b['mask']) == global_batch_size // process_count
      assert b['mask'].dtype == np.float32
      real = b['mask'] == 1
      mask_total += b['mask'].sum()
      seen += zip(rows({'image': b['image'][real]}), b['label'][real])
  assert counts == {-(-n // global_batch_size)}
  assert mask_total == n
  assert sorted(seen) == sorted(zip(rows(want), want['label']))


def test_eval_applies_pp_eval_deterministically(data_dir):
  cfg = config(data_dir, pp_eval='value_range(0, 1, in_max=16)|onehot(10)')
  kwargs = dict(split='test', global_batch_size=64, process_index=1,
                process_count=2)
  first = list(input_pipeline.make_eval_batches(cfg, **kwargs))
  second = list(input_pipeline.make_eval_batches(cfg, **kwargs))
  assert first[0]['image'].dtype == np.float32
  assert first[0]['label'].shape == (32, 10)
  assert sum(b['mask'].sum() for b in first) == 360 - 32 * 6
  for a, b in zip(first, second):
    for k in a:
      np.testing.assert_array_equal(a[k], b[k])


def test_large_split_path_reads_the_same_batches(data_dir, monkeypatch):
  cfg = config(data_dir)
  kwargs = dict(split='test', global_batch_size=50, process_index=0,
                process_count=1)
  in_memory = list(input_pipeline.make_eval_batches(cfg, **kwargs))
  monkeypatch.setattr(records, 'IN_MEMORY_BYTES', 0)
  records._load.cache_clear()  # pylint: disable=protected-access
  try:
    assert isinstance(records.load_records(cfg, 'test', training=False), records.SourceRecords)
    streamed = list(input_pipeline.make_eval_batches(cfg, **kwargs))
  finally:
    records._load.cache_clear()  # pylint: disable=protected-access
  for a, b in zip(in_memory, streamed, strict=True):
    for k in a:
      np.testing.assert_array_equal(a[k], b[k])


# ---- training loader --------------------------------------------------------


def take(cfg, n, *, global_batch_size=64, seed=0, process_index=0,
         process_count=1, state=None):
  iterator = iter(input_pipeline.make_train_loader(
      cfg, global_batch_size=global_batch_size, seed=seed,
      process_index=process_index, process_count=process_count))
  if state is not None:
    iterator.set_state(state)
  return [next(iterator) for _ in range(n)], iterator


def test_process_shards_are_slices_of_the_same_global_batches(data_dir):
  cfg = config(data_dir)
  whole, _ = take(cfg, 4, global_batch_size=96)
  for process_count in (2, 3):
    parts = [take(cfg, 4, global_batch_size=96, process_index=p,
                  process_count=process_count)[0] for p in range(process_count)]
    for k in range(4):
      assert len(parts[0][k]['image']) == 96 // process_count
      joined = np.concatenate([part[k]['image'] for part in parts])
      np.testing.assert_array_equal(joined, whole[k]['image'])
      assert len(set(rows({'image': joined}))) == 96  # Disjoint shards.


def test_augmentation_does_not_depend_on_the_process_count(data_dir):
  cfg = config(data_dir, pp_train='random_crop(pad=2)|random_flip_lr')
  whole, _ = take(cfg, 3, global_batch_size=96)
  parts = [take(cfg, 3, global_batch_size=96, process_index=p, process_count=3)[0] for p in range(3)]
  for k in range(3):
    np.testing.assert_array_equal(np.concatenate([part[k]['image'] for part in parts]), whole[k]['image'])


def test_an_epoch_is_a_permutation_and_batches_cross_epochs(data_dir):
  cfg = config(data_dir)
  batches, _ = take(cfg, 23, global_batch_size=128)  # 23 * 128 > 2 * 1437.
  stream = np.concatenate([b['image'] for b in batches])
  train = read_all(input_pipeline.get_source(cfg, 'train'))
  for epoch in (0, 1):
    seen = stream[epoch * 1437:(epoch + 1) * 1437]
    assert sorted(rows({'image': seen})) == sorted(rows(train))
  assert rows({'image': stream[:1437]}) != rows({'image': stream[1437:2874]})


def test_shuffle_is_seeded(data_dir):
  cfg = config(data_dir, pp_train='random_crop(1)')
  a, _ = take(cfg, 2, seed=1)
  b, _ = take(cfg, 2, seed=1)
  c, _ = take(cfg, 2, seed=2)
  np.testing.assert_array_equal(a[1]['image'], b[1]['image'])
  assert not np.array_equal(a[1]['label'], c[1]['label'])
  ordered, _ = take(config(data_dir, shuffle=False), 1)
  train = read_all(input_pipeline.get_source(cfg, 'train'))
  np.testing.assert_array_equal(ordered[0]['image'], train['image'][:64])


def test_restored_iterator_repeats_the_next_batches(data_dir):
  cfg = config(data_dir, pp_train='value_range(0, 1, in_max=16)|'
               'random_crop(pad=2)|random_flip_lr|onehot(10)')
  _, iterator = take(cfg, 5, process_index=1, process_count=2)
  state = iterator.get_state()
  expected = [next(iterator) for _ in range(4)]
  restored, _ = take(cfg, 4, process_index=1, process_count=2, state=state)
  assert restored[0]['image'].shape == (32, 8, 8, 1)
  assert restored[0]['label'].shape == (32, 10)
  for a, b in zip(expected, restored):
    for k in a:
      np.testing.assert_array_equal(a[k], b[k])


def test_state_restores_onto_another_process_count(data_dir):
  cfg = config(data_dir)
  _, iterator = take(cfg, 3, global_batch_size=96)
  state = iterator.get_state()
  expected = next(iterator)['image']
  parts = [take(cfg, 1, global_batch_size=96, process_index=p, process_count=3,
                state=state)[0][0]['image'] for p in range(3)]
  np.testing.assert_array_equal(np.concatenate(parts), expected)


def test_iterator_checkpoints_with_orbax(data_dir, tmp_path):
  import grain  # pylint: disable=g-import-not-at-top
  import orbax.checkpoint as ocp  # pylint: disable=g-import-not-at-top
  cfg = config(data_dir, pp_train='random_crop(pad=1)')
  _, iterator = take(cfg, 4)
  with ocp.CheckpointManager(tmp_path) as manager:
    manager.save(4, args=ocp.args.Composite(
        data=grain.checkpoint.CheckpointSave(iterator)))
    manager.wait_until_finished()
    expected = [next(iterator) for _ in range(2)]
    _, restored = take(cfg, 0)
    manager.restore(4, args=ocp.args.Composite(
        data=grain.checkpoint.CheckpointRestore(restored)))
  for a in expected:
    b = next(restored)
    for k in a:
      np.testing.assert_array_equal(a[k], b[k])


def test_worker_processes_give_the_same_batches(data_dir):
  cfg = config(data_dir, pp_train='random_crop(pad=1)|random_flip_lr')
  local, _ = take(cfg, 3, seed=7)
  remote, iterator = take(config(data_dir, worker_count=1,
                                 pp_train=cfg.pp_train), 3, seed=7)
  for a, b in zip(local, remote):
    for k in a:
      np.testing.assert_array_equal(a[k], np.asarray(b[k]))
  del iterator, remote  # Stop the worker before the interpreter exits.


def test_bad_loader_arguments_are_one_line(data_dir):
  with pytest.raises(ValueError, match='global_batch_size must be a positive '
                     'multiple of process_count=3'):
    take(config(data_dir), 1, global_batch_size=64, process_count=3)
  with pytest.raises(ValueError, match='seed must be an int >= 0'):
    take(config(data_dir), 1, seed=-1)


def test_offline_names_are_exported():
  assert {'digits', 'fashion_mnist', 'mnist', 'mnist1d', 'shakespeare', 'shakespeare_tiny'} <= set(
      input_pipeline.OFFLINE_DATASETS)
  # Nothing leaked into tfds's registry.
  assert 'lamina_digits' not in tfds.list_builders(with_community_datasets=False)


def _counting_decoder(arrays):
  calls = []

  def decode():
    calls.append(1)
    return arrays
  return decode, calls


def test_decoded_splits_come_back_from_the_cache_until_the_files_change(tmp_path, monkeypatch):
  monkeypatch.setenv('LAMINA_DECODED_CACHE', str(tmp_path / 'cache'))
  dataset_dir = tmp_path / 'dataset'
  dataset_dir.mkdir()
  (dataset_dir / 'name-train.array_record-00000-of-00001').write_bytes(b'records')
  spec = {'image': ((2, 2, 1), np.dtype(np.uint8)), 'label': ((), np.dtype(np.int64))}
  arrays = {'image': np.arange(8, dtype=np.uint8).reshape(2, 2, 2, 1), 'label': np.array([3, 7])}
  decode, calls = _counting_decoder(arrays)

  first = decoded_cache.load_or_decode(str(dataset_dir), 'name', 'train', spec, decode)
  again = decoded_cache.load_or_decode(str(dataset_dir), 'name', 'train', spec, decode)
  assert len(calls) == 1
  for k in arrays:
    np.testing.assert_array_equal(again[k], arrays[k])
    assert again[k].dtype == arrays[k].dtype and first[k] is arrays[k]
  decoded_cache.load_or_decode(str(dataset_dir), 'name', 'train[:1]', spec, decode)
  assert len(calls) == 2  # another split spec is another entry
  (dataset_dir / 'name-train.array_record-00000-of-00001').write_bytes(b'rebuilt')
  decoded_cache.load_or_decode(str(dataset_dir), 'name', 'train', spec, decode)
  assert len(calls) == 3
  assert not [p for p in (tmp_path / 'cache').iterdir() if p.suffix != '.npz']


def test_an_unwritable_decoded_cache_still_returns_the_arrays(tmp_path, monkeypatch):
  blocker = tmp_path / 'not_a_directory'
  blocker.write_text('')
  monkeypatch.setenv('LAMINA_DECODED_CACHE', str(blocker / 'cache'))
  got = decoded_cache.load_or_decode(str(tmp_path), 'name', 'test', {}, lambda: {'label': np.array([1, 2])})
  np.testing.assert_array_equal(got['label'], [1, 2])
