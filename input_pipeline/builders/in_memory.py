"""The shared shape of lamina's offline builders: small arrays in, array_record out.

A subclass names its input feature and returns each split's (inputs, labels) arrays;
this class declares the features (tfds Tensor + ClassLabel, or + a float32 Tensor of
regression targets; all writable without TensorFlow) and writes the records.
"""

import abc

import numpy as np
import tensorflow_datasets as tfds


class InMemoryBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Base class; subclasses set the class attributes and `_split_arrays`."""

  VERSION = tfds.core.Version('1.0.0')
  INPUT_KEY = 'image'
  INPUT_SHAPE: tuple[int, ...] = ()
  INPUT_DTYPE = np.uint8
  CLASS_NAMES: tuple[str, ...] | None = None  # None: ten classes named by their digit
  LABEL_SHAPE: tuple[int, ...] | None = None  # a shape: float32 regression targets, not classes
  HOMEPAGE = ''

  def _info(self) -> tfds.core.DatasetInfo:
    if self.LABEL_SHAPE is not None:
      label = tfds.features.Tensor(shape=self.LABEL_SHAPE, dtype=np.float32)
    elif self.CLASS_NAMES:
      label = tfds.features.ClassLabel(names=self.CLASS_NAMES)
    else:
      label = tfds.features.ClassLabel(num_classes=10)
    return tfds.core.DatasetInfo(
        builder=self,
        features=tfds.features.FeaturesDict({
            # BYTES: the default encoding stores uint8 as an int64 list (2x slower to write).
            self.INPUT_KEY: tfds.features.Tensor(
                shape=self.INPUT_SHAPE, dtype=self.INPUT_DTYPE, encoding=tfds.features.Encoding.BYTES),
            'label': label,
        }),
        supervised_keys=(self.INPUT_KEY, 'label'),
        homepage=self.HOMEPAGE,
    )

  @abc.abstractmethod
  def _split_arrays(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{split: (inputs [N, *INPUT_SHAPE], labels [N] or [N, *LABEL_SHAPE])}, read from local files."""

  def _split_generators(self, dl_manager):
    del dl_manager  # everything is on this machine already
    return {name: self._generate_examples(inputs, labels)
            for name, (inputs, labels) in self._split_arrays().items()}

  def _generate_examples(self, inputs: np.ndarray, labels: np.ndarray):
    as_label = int if self.LABEL_SHAPE is None else (lambda y: y.astype(np.float32))
    for i in range(len(labels)):
      yield i, {self.INPUT_KEY: inputs[i].astype(self.INPUT_DTYPE), 'label': as_label(labels[i])}
