"""Fashion-MNIST with captions: every real image paired with a sentence naming its class.

Captions fill templates ("a photo of a {}", "a {} on a plain background", ...) with the class's
phrase. Training captions use only TRAIN_TEMPLATES; the test split's use only HELD_OUT_TEMPLATES,
whose wordings (and some of whose words) training never shows, so zero-shot classification and
retrieval on the test split measure how the text tower generalises beyond the training sentences.
The language is closed, so captions are stored as ids of a fixed word vocabulary (`TOKENIZER`).
"""

import numpy as np
import tensorflow_datasets as tfds

from input_pipeline import tokenizers
from input_pipeline.builders import fashion_mnist, in_memory

# Class phrases in the order of fashion_mnist.CLASS_NAMES.
CLASS_PHRASES = ('t-shirt', 'pair of trousers', 'pullover', 'dress', 'coat', 'sandal', 'shirt', 'sneaker', 'bag',
                 'ankle boot')
TRAIN_TEMPLATES = (
    'a photo of a {}',
    'a picture of a {}',
    'an image of the {}',
    'a {} on a plain background',
    'a grayscale photo of a {}',
    'a small photo of the {}',
    'this is a {}',
    'a product photo of a {}',
)
HELD_OUT_TEMPLATES = (
    'a low resolution photo of a {}',
    'a black and white picture of the {}',
    'a close-up image of a {}',
    'there is a {} in this picture',
    'a blurry photo of the {}',
    'a catalogue picture of a {}',
)
TEMPLATES = {'train': TRAIN_TEMPLATES, 'held_out': HELD_OUT_TEMPLATES}
CAPTION_LENGTH = 12  # BOS, at most ten words, EOS


def fill(template: str, phrase: str) -> str:
  """The template with the phrase in place of {}, and 'a' before a vowel made 'an'."""
  words = template.format(phrase).split()
  return ' '.join('an' if w == 'a' and i + 1 < len(words) and words[i + 1][0] in 'aeiou' else w
                  for i, w in enumerate(words))


def _vocabulary() -> list[str]:
  sentences = [fill(t, p) for templates in TEMPLATES.values() for t in templates for p in CLASS_PHRASES]
  return sorted({w for s in sentences for w in s.split()})


TOKENIZER = tokenizers.WordTokenizer(_vocabulary())


def class_prompts(templates: tuple[str, ...]) -> np.ndarray:
  """[classes, templates, CAPTION_LENGTH] int32: every class's phrase in every template."""
  return np.stack([[TOKENIZER.caption_ids(fill(t, p), CAPTION_LENGTH) for t in templates] for p in CLASS_PHRASES])


def captions(labels: np.ndarray, templates: tuple[str, ...], seed: int) -> np.ndarray:
  """[N, CAPTION_LENGTH] int32: each label's phrase in a template drawn (seeded) from `templates`."""
  prompts = class_prompts(templates)
  choice = np.random.default_rng(seed).integers(len(templates), size=len(labels))
  return prompts[labels, choice]


class LaminaFashionMnistCaptions(in_memory.ArraysBuilder, skip_registration=True):
  """`image` uint8 (28, 28, 1), the real Fashion-MNIST image; `caption` int32 (12,), its sentence as
  TOKENIZER ids (BOS words EOS, then PAD); `label` the class. train: the 60,000 training images, each
  with one of 8 training templates; test: the 10,000 test images, each with one of 6 held-out ones."""

  RELEASE_NOTES = {'1.0.0': 'Fashion-MNIST 60000/10000 with templated captions; 6 templates held out for test.'}
  HOMEPAGE = 'https://github.com/zalandoresearch/fashion-mnist'
  TOKENIZER = TOKENIZER
  TEMPLATES = TEMPLATES

  def class_prompts(self, templates: tuple[str, ...]) -> np.ndarray:
    """Zero-shot prompts (train_lib/evaluators/zero_shot.py): see the module's class_prompts."""
    return class_prompts(templates)

  def _features(self) -> dict[str, tfds.features.FeatureConnector]:
    return {'image': in_memory.tensor((28, 28, 1), np.uint8),
            'caption': in_memory.tensor((CAPTION_LENGTH,), np.int32),
            'label': tfds.features.ClassLabel(names=fashion_mnist.CLASS_NAMES)}

  def _split_features(self) -> dict[str, dict[str, np.ndarray]]:
    if not fashion_mnist.idx_files_present():
      raise ValueError(f'fashion_mnist_captions needs the Fashion-MNIST idx files, not found in '
                       f'{fashion_mnist.IDX_DIR}; run `apt-get install dataset-fashion-mnist`')
    arrays = fashion_mnist.split_arrays()
    seeds = {'train': 0, 'test': 1}
    templates = {'train': TRAIN_TEMPLATES, 'test': HELD_OUT_TEMPLATES}
    return {split: {'image': images, 'caption': captions(labels, templates[split], seeds[split]), 'label': labels}
            for split, (images, labels) in arrays.items()}

