"""Few-label splits: 'SPLIT_per_class[N]' is N examples of each class of SPLIT.

So a semi-supervised or low-data experiment ("100 labels" on a 10-class set)
is one config value, `data.train_split = 'train_per_class[10]'`, with the
subset chosen by `data.subset_seed`. SPLIT is any tfds split spec (a slice such
as 'train[:80%]' too); the suffix applies to the whole of it.

The choice depends only on SPLIT's labels and the seed, never on global RNG
state, the machine or the process count: class c keeps the first N of
`np.random.default_rng([seed, c]).permutation(<indices of class c>)`. So for
one seed the N=10 subset lies inside the N=100 one, and each class's choice is
independent of the other classes' sizes. The selected indices are sorted, so
the subset keeps SPLIT's order.
"""

import dataclasses
import re
from typing import Sequence

import numpy as np
import tensorflow_datasets as tfds

_SUFFIX = re.compile(r'(?P<base>.+)_per_class\[(?P<n>[^\]]*)\]')


@dataclasses.dataclass(frozen=True)
class PerClass:
  """A parsed 'SPLIT_per_class[N]': N examples of each class of split `base`."""
  base: str
  n: int


def parse(split: str) -> PerClass | None:
  """'train_per_class[10]' -> PerClass('train', 10); any other split -> None.

  Raises a one-line ValueError when N is not an int >= 1.
  """
  match = _SUFFIX.fullmatch(split.strip())
  if not match:
    return None
  n = match['n'].strip()
  if not n.isdigit() or int(n) < 1:
    raise ValueError(f"bad split {split!r}: N in 'SPLIT_per_class[N]' must be an int >= 1, "
                     f"got {match['n']!r}")
  return PerClass(match['base'].strip(), int(n))


def base_split(split: str) -> str:
  """The split that `split` selects from: 'train_per_class[10]' -> 'train'; others unchanged."""
  per_class = parse(split)
  return per_class.base if per_class else split


def class_names(name: str, split: str, features: tfds.features.FeaturesDict) -> list[str]:
  """The names of the ClassLabel 'label' classes; a one-line ValueError if there is none."""
  label = features['label'] if 'label' in features.keys() else None
  if not isinstance(label, tfds.features.ClassLabel):
    raise ValueError(
        f'split {split!r} picks examples per class, but dataset {name!r} has no class '
        f"labels (no ClassLabel 'label' feature; its features: {', '.join(features.keys())}); "
        f"use a plain split such as {base_split(split)!r}")
  return list(label.names)


def select(labels: np.ndarray, per_class: PerClass, classes: Sequence[str], seed: int, *,
           name: str) -> np.ndarray:
  """Sorted indices into `labels`: `per_class.n` of each class 0..len(classes)-1.

  Raises a one-line ValueError naming the class when one has fewer than N examples.
  """
  members = [np.flatnonzero(labels == c) for c in range(len(classes))]
  sizes = [len(m) for m in members]
  for c, size in enumerate(sizes):
    if size < per_class.n:
      title = f'class {c}' + ('' if classes[c] == str(c) else f' ({classes[c]!r})')
      raise ValueError(
          f'{per_class.base}_per_class[{per_class.n}] for dataset {name!r}: {title} has only '
          f'{size} examples in split {per_class.base!r}; the largest valid N is {min(sizes)}')
  chosen = [np.random.default_rng([seed, c]).permutation(m)[:per_class.n]
            for c, m in enumerate(members)]
  return np.sort(np.concatenate(chosen))
