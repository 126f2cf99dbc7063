"""Fashion-MNIST captions: templates filled with class phrases, held-out wordings, fixed vocabulary."""

import numpy as np
import pytest

from input_pipeline.builders import fashion_mnist_captions as captions

pytestmark = pytest.mark.unit


def _words(ids: np.ndarray) -> str:
  return captions.TOKENIZER.decode(ids)


def test_templates_take_the_article_their_phrase_needs():
  assert captions.fill('a photo of a {}', 'ankle boot') == 'a photo of an ankle boot'
  assert captions.fill('this is a {}', 'pair of trousers') == 'this is a pair of trousers'
  assert captions.fill('a {} on a plain background', 'coat') == 'a coat on a plain background'


def test_held_out_templates_are_new_wordings_with_words_training_never_shows():
  assert not set(captions.TRAIN_TEMPLATES) & set(captions.HELD_OUT_TEMPLATES)
  seen = {w for t in captions.TRAIN_TEMPLATES for p in captions.CLASS_PHRASES for w in captions.fill(t, p).split()}
  held_out = {w for t in captions.HELD_OUT_TEMPLATES for p in captions.CLASS_PHRASES
              for w in captions.fill(t, p).split()}
  assert {'blurry', 'catalogue', 'resolution'} <= held_out - seen
  assert captions.TOKENIZER.UNK not in captions.class_prompts(captions.HELD_OUT_TEMPLATES)


def test_class_prompts_put_every_phrase_in_every_template():
  prompts = captions.class_prompts(captions.HELD_OUT_TEMPLATES)
  assert prompts.shape == (10, 6, captions.CAPTION_LENGTH) and prompts.dtype == np.int32
  assert _words(prompts[9, 3]) == 'there is an ankle boot in this picture'
  assert (prompts[:, :, 0] == captions.TOKENIZER.BOS).all()
  assert ((prompts == captions.TOKENIZER.EOS).sum(-1) == 1).all()


def test_captions_are_fixed_by_the_seed_and_name_each_label_in_a_template_of_the_split():
  labels = np.random.default_rng(3).integers(10, size=500)
  first = captions.captions(labels, captions.TRAIN_TEMPLATES, seed=0)
  np.testing.assert_array_equal(first, captions.captions(labels, captions.TRAIN_TEMPLATES, seed=0))
  assert not np.array_equal(first, captions.captions(labels, captions.TRAIN_TEMPLATES, seed=1))
  filled = {(t, p): captions.fill(t, p) for t in captions.TRAIN_TEMPLATES for p in captions.CLASS_PHRASES}
  used = set()
  for ids, label in zip(first, labels):
    text = _words(ids)
    matches = [t for (t, p), sentence in filled.items() if sentence == text and p == captions.CLASS_PHRASES[label]]
    assert len(matches) == 1, text
    used.add(matches[0])
  assert used == set(captions.TRAIN_TEMPLATES)  # 500 draws reach all 8 templates
