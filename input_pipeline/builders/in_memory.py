"""The shared shape of lamina's offline builders: arrays in memory, array_record out.

`ArraysBuilder` writes any features: a subclass declares them (`_features`) and returns each
split as equal-length arrays, one per feature (`_split_features`). `InMemoryBuilder` is the
common case of one input array and a label: its subclasses name the input's shape and return
each split's (inputs, labels). Every feature is writable without TensorFlow.
"""

import abc

import numpy as np
import tensorflow_datasets as tfds


def tensor(shape: tuple[int, ...], dtype: type) -> tfds.features.Tensor:
  """A fixed-shape array feature, stored as raw bytes (the default encoding stores uint8 as an
  int64 list, 2x slower to write)."""
  return tfds.features.Tensor(shape=shape, dtype=dtype, encoding=tfds.features.Encoding.BYTES)


class ArraysBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Base class; subclasses define `_features` and `_split_features`."""

  VERSION = tfds.core.Version('1.0.0')
  HOMEPAGE = ''

  @abc.abstractmethod
  def _features(self) -> dict[str, tfds.features.FeatureConnector]:
    """{name: feature}: `tensor(...)`, a tfds ClassLabel, ..."""

  @abc.abstractmethod
  def _split_features(self) -> dict[str, dict[str, np.ndarray]]:
    """{split: {feature name: array [N, ...]}}, read or made on this machine."""

  def _supervised_keys(self) -> tuple[str, str] | None:
    """(input, target) for tfds's as_supervised; None: the features have no such pair."""
    return None

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(builder=self, features=tfds.features.FeaturesDict(self._features()),
                                 supervised_keys=self._supervised_keys(), homepage=self.HOMEPAGE)

  def _split_generators(self, dl_manager):
    del dl_manager  # everything is on this machine already
    return {name: self._generate_examples(arrays) for name, arrays in self._split_features().items()}

  def _generate_examples(self, arrays: dict[str, np.ndarray]):
    features = self._features()
    convert = {name: int if isinstance(feature, tfds.features.ClassLabel) else
               (lambda x, dtype=feature.np_dtype: np.asarray(x).astype(dtype))
               for name, feature in features.items()}
    for i in range(len(next(iter(arrays.values())))):
      yield i, {name: convert[name](values[i]) for name, values in arrays.items()}


class InMemoryBuilder(ArraysBuilder, skip_registration=True):
  """One input array and a label (tfds ClassLabel, or a float32 Tensor of regression targets)."""

  INPUT_KEY = 'image'
  INPUT_SHAPE: tuple[int, ...] = ()
  INPUT_DTYPE = np.uint8
  CLASS_NAMES: tuple[str, ...] | None = None  # None: ten classes named by their digit
  LABEL_SHAPE: tuple[int, ...] | None = None  # a shape: float32 regression targets, not classes

  def _supervised_keys(self) -> tuple[str, str]:
    return (self.INPUT_KEY, 'label')

  def _features(self) -> dict[str, tfds.features.FeatureConnector]:
    if self.LABEL_SHAPE is not None:
      label = tfds.features.Tensor(shape=self.LABEL_SHAPE, dtype=np.float32)
    elif self.CLASS_NAMES:
      label = tfds.features.ClassLabel(names=self.CLASS_NAMES)
    else:
      label = tfds.features.ClassLabel(num_classes=10)
    return {self.INPUT_KEY: tensor(self.INPUT_SHAPE, self.INPUT_DTYPE), 'label': label}

  @abc.abstractmethod
  def _split_arrays(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{split: (inputs [N, *INPUT_SHAPE], labels [N] or [N, *LABEL_SHAPE])}, read from local files."""

  def _split_features(self) -> dict[str, dict[str, np.ndarray]]:
    return {split: {self.INPUT_KEY: inputs, 'label': labels} for split, (inputs, labels) in self._split_arrays().items()}
