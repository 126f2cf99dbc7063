"""The shared shape of lamina's offline text builders: documents in, array_record out."""

import abc

import tensorflow_datasets as tfds

TEXT_KEY = 'text'


class TextBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Base class: each split is a list of documents, one record {'text': str} each, kept in order."""

  VERSION = tfds.core.Version('1.0.0')
  HOMEPAGE = ''

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self,
        features=tfds.features.FeaturesDict({TEXT_KEY: tfds.features.Text()}),
        homepage=self.HOMEPAGE,
        # Document order is part of the data set (the token stream concatenates them).
        disable_shuffling=True,
    )

  @abc.abstractmethod
  def _split_documents(self) -> dict[str, list[str]]:
    """{split: documents}, read from local files."""

  def _split_generators(self, dl_manager):
    del dl_manager  # everything is on this machine already
    return {name: self._generate_examples(docs) for name, docs in self._split_documents().items()}

  def _generate_examples(self, documents: list[str]):
    for i, document in enumerate(documents):
      yield i, {TEXT_KEY: document}
