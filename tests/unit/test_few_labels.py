"""Few-label splits ('train_per_class[N]'): counts, determinism, nesting, errors, loading."""

import numpy as np
import pytest

import input_pipeline
from input_pipeline import few_labels
from input_pipeline import records
from tests.conftest import data_config as config


def read_all(recs) -> dict[str, np.ndarray]:
  return recs.read(np.arange(len(recs)))


def labels_of(data_dir, name, split) -> np.ndarray:
  return read_all(records.load_records(config(data_dir, name), split, training=False))['label']


def subset(data_dir, split, seed=0, name='digits') -> np.ndarray:
  """The indices into the base split that `split` keeps, as few_labels picks them."""
  per_class = few_labels.parse(split)
  labels = labels_of(data_dir, name, per_class.base)
  return few_labels.select(labels, per_class, [str(c) for c in range(10)], seed, name=name)


def test_parse():
  assert few_labels.parse('train_per_class[10]') == few_labels.PerClass('train', 10)
  assert few_labels.parse(' train[:80%]_per_class[ 3 ] ') == few_labels.PerClass('train[:80%]', 3)
  assert few_labels.parse('train[:10]') is None and few_labels.parse('train+test') is None
  assert few_labels.base_split('test_per_class[1]') == 'test'


@pytest.mark.parametrize('name, n', [('mnist', 10), ('mnist', 400), ('digits', 7)])
def test_each_class_gets_exactly_n_examples_of_the_base_split(data_dir, name, n):
  split = f'train_per_class[{n}]'
  recs = records.load_records(config(data_dir, name), split, training=True)
  assert repr(recs) == f'{name}:{split}/seed=0:{10 * n}'
  got = read_all(recs)
  np.testing.assert_array_equal(np.bincount(got['label']), [n] * 10)
  base = read_all(records.load_records(config(data_dir, name), 'train', training=False))
  keep = subset(data_dir, split, name=name)
  assert np.all(np.diff(keep) > 0)  # sorted, no repeats: the base split's order
  for k in got:
    np.testing.assert_array_equal(got[k], base[k][keep])


def test_same_seed_same_subset_other_seed_other_subset(data_dir):
  first = subset(data_dir, 'train_per_class[10]', seed=3)
  np.testing.assert_array_equal(first, subset(data_dir, 'train_per_class[10]', seed=3))
  assert not np.array_equal(first, subset(data_dir, 'train_per_class[10]', seed=4))
  a = read_all(records.load_records(config(data_dir, subset_seed=3), 'train_per_class[10]', training=True))
  b = read_all(records.load_records(config(data_dir, subset_seed=4), 'train_per_class[10]', training=True))
  assert not np.array_equal(a['image'], b['image'])
  assert repr(records.load_records(config(data_dir, subset_seed=4), 'train_per_class[10]',
                                   training=True)) == 'digits:train_per_class[10]/seed=4:100'


def test_global_rng_state_does_not_matter():
  labels = np.arange(40) % 4
  picks = []
  for global_seed in (1, 2):
    np.random.seed(global_seed)
    picks.append(few_labels.select(labels, few_labels.PerClass('train', 2), list('0123'), 0, name='x'))
  np.testing.assert_array_equal(*picks)
  np.testing.assert_array_equal(np.bincount(labels[picks[0]]), [2] * 4)


@pytest.mark.parametrize('seed', [0, 1])
def test_smaller_subsets_nest_in_larger_ones(data_dir, seed):
  small, large = (subset(data_dir, f'train_per_class[{n}]', seed) for n in (10, 100))
  assert set(small) < set(large)
  assert set(large) < set(subset(data_dir, 'train_per_class[139]', seed))


def test_a_sliced_base_split(data_dir):
  labels = labels_of(data_dir, 'digits', 'train[:50%]')
  keep = subset(data_dir, 'train[:50%]_per_class[5]')
  assert keep.max() < len(labels)
  assert input_pipeline.num_examples(config(data_dir), 'train[:50%]_per_class[5]') == 50


def test_num_examples_is_n_times_the_classes(data_dir):
  for name in ('digits', 'mnist'):
    assert input_pipeline.num_examples(config(data_dir, name), 'train_per_class[7]') == 70
    assert input_pipeline.num_examples(config(data_dir, name), 'test_per_class[3]') == 30


def test_eval_batches_cover_a_few_label_split_once(data_dir):
  cfg = config(data_dir)
  batches = list(input_pipeline.make_eval_batches(cfg, split='test_per_class[3]', global_batch_size=8,
                                                  process_index=0, process_count=1))
  labels = np.concatenate([b['label'][b['mask'] > 0] for b in batches])
  np.testing.assert_array_equal(np.bincount(labels), [3] * 10)


def test_large_splits_read_only_labels_and_pick_the_same_subset(tmp_path, monkeypatch, data_dir):
  in_memory = read_all(records.load_records(config(data_dir), 'train_per_class[4]', training=True))
  monkeypatch.setattr(records, 'IN_MEMORY_BYTES', 0)  # tfds reads, batch by batch
  recs = records.load_records(config(str(tmp_path)), 'train_per_class[4]', training=True)
  assert isinstance(recs._records, records.SourceRecords)  # pylint: disable=protected-access
  got = read_all(recs)
  for k in got:
    np.testing.assert_array_equal(got[k], in_memory[k])


def test_too_large_n_names_the_class_its_size_and_the_largest_n(data_dir):
  with pytest.raises(ValueError, match=r"^train_per_class\[401\] for dataset 'mnist': class 0 has "
                     r"only 400 examples in split 'train'; the largest valid N is 400$"):
    input_pipeline.num_examples(config(data_dir, 'mnist'), 'train_per_class[401]')
  sizes = np.bincount(labels_of(data_dir, 'digits', 'train'))
  smallest = int(sizes.argmin())
  with pytest.raises(ValueError, match=rf'class {smallest} has only {sizes.min()} examples .* '
                     rf'the largest valid N is {sizes.min()}$'):
    input_pipeline.num_examples(config(data_dir), f'train_per_class[{sizes.min() + 1}]')


def test_a_dataset_without_class_labels_is_one_line(data_dir):
  message = (r"^split 'train_per_class\[2\]' picks examples per class, but dataset 'co2' has no "
             r"class labels .*; use a plain split such as 'train'$")
  with pytest.raises(ValueError, match=message):
    input_pipeline.num_examples(config(data_dir, 'co2'), 'train_per_class[2]')
  with pytest.raises(ValueError, match='^train_split: ' + message[1:]):
    input_pipeline.validate(config(data_dir, 'co2', train_split='train_per_class[2]'))


@pytest.mark.parametrize('overrides, message', [
    ({'train_split': 'trian_per_class[5]'},
     r"^train_split: unknown split 'trian' in 'trian_per_class\[5\]' for dataset 'digits'; "
     r'valid splits: test, train'),
    ({'eval_split': 'test_per_class[0]'},
     r"^eval_split: bad split 'test_per_class\[0\]': N in 'SPLIT_per_class\[N\]' must be an int "
     r">= 1, got '0'$"),
    ({'subset_seed': -1}, r'^subset_seed must be an int >= 0, got -1$'),
])
def test_validate_catches_bad_few_label_configs(data_dir, overrides, message):
  with pytest.raises(ValueError, match=message) as info:
    input_pipeline.validate(config(data_dir, **overrides))
  assert '\n' not in str(info.value)


def test_validate_accepts_few_label_splits(data_dir):
  input_pipeline.validate(config(data_dir, 'mnist', train_split='train_per_class[10]',
                                 eval_split='test_per_class[5]', subset_seed=2))


def test_a_training_loader_over_a_few_label_split(data_dir):
  cfg = config(data_dir, train_split='train_per_class[5]', pp_train='value_range(0, 1, in_max=16)')
  loader = input_pipeline.make_train_loader(cfg, global_batch_size=64, seed=0, process_index=0,
                                            process_count=1)
  assert 'digits:train_per_class[5]/seed=0:50' in repr(loader._data_source)  # pylint: disable=protected-access
  batch = next(iter(loader))
  assert batch['image'].shape == (64, 8, 8, 1)
  # Rows 0..49 are one shuffled epoch of the 50 examples: 5 of each digit.
  np.testing.assert_array_equal(np.bincount(batch['label'][:50]), [5] * 10)
  halves = [next(iter(input_pipeline.make_train_loader(
      cfg, global_batch_size=64, seed=0, process_index=p, process_count=2))) for p in (0, 1)]
  np.testing.assert_array_equal(np.concatenate([h['label'] for h in halves]), batch['label'])


def test_get_source_points_at_the_loaders(data_dir):
  with pytest.raises(ValueError, match=r"^'train_per_class\[5\]' is a few-label split"):
    input_pipeline.get_source(config(data_dir), 'train_per_class[5]')
