"""The spoken-digits data: espeak-ng clips, paired images and spellings, held-out voices."""

import shutil

import numpy as np
import pytest

from input_pipeline import audio
from input_pipeline.builders import espeak, spoken_digits

pytestmark = pytest.mark.unit
needs_espeak = pytest.mark.skipif(not shutil.which(espeak.EXECUTABLE), reason='needs espeak-ng')


def _images(per_digit: int = 3) -> tuple[np.ndarray, np.ndarray]:
  labels = np.repeat(np.arange(10), per_digit)
  # Each image's pixels record its index, so a pairing can be traced back.
  images = np.broadcast_to(np.arange(len(labels), dtype=np.uint8)[:, None, None, None], (len(labels), 28, 28, 1))
  return images, labels


def test_held_out_voices_are_a_fifth_and_never_trained_on():
  seen, held_out = spoken_digits.voices()
  assert (len(seen), len(held_out)) == (56, 14)
  assert not set(seen) & set(held_out)
  assert spoken_digits.voices() == (seen, held_out)


@needs_espeak
def test_a_split_is_the_same_given_its_seed_and_pairs_each_clip_with_its_digit():
  images, labels = _images()
  voices = ['en-us+f3']
  first = spoken_digits.make_split(voices, images, labels, seed=0)
  again = spoken_digits.make_split(voices, images, labels, seed=0)
  for key in first:
    np.testing.assert_array_equal(first[key], again[key])
  other = spoken_digits.make_split(voices, images, labels, seed=1)
  np.testing.assert_array_equal(other['audio'], first['audio'])
  assert not np.array_equal(other['image'], first['image'])
  clips = len(spoken_digits.WORDS) * len(spoken_digits.SPEEDS) * len(spoken_digits.PITCHES)
  assert first['audio'].shape == (clips, audio.SAMPLE_RATE) and first['audio'].dtype == np.int16
  paired = first['image'][:, 0, 0, 0]
  np.testing.assert_array_equal(labels[paired], first['label'])
  # Each digit's 4 clips use 3 images: all of them once before any twice.
  for digit in range(10):
    assert set(paired[first['label'] == digit]) == set(np.flatnonzero(labels == digit))
  words = [''.join(chr(ord('a') + i - 1) for i in row if i) for row in first['text']]
  assert words == [spoken_digits.WORDS[d] for d in first['label']]


@needs_espeak
def test_clips_start_with_speech_and_are_padded_with_silence():
  samples = espeak.speak(espeak.Utterance('seven', 'en-gb', 175, 50))
  clip = spoken_digits.clip(samples)
  assert clip.shape == (audio.SAMPLE_RATE,)
  loud = np.flatnonzero(np.abs(clip) > spoken_digits.SILENCE * 32767)
  assert loud[0] == 0 and 0.2 * audio.SAMPLE_RATE < loud[-1] < audio.SAMPLE_RATE
  assert not clip[loud[-1] + 1:].any()
  assert audio.log_mel(clip.astype(np.float32) / 32768).shape == (98, 40)


def test_without_espeak_the_error_names_the_package(monkeypatch):
  monkeypatch.setenv('PATH', '/nonexistent')
  with pytest.raises(ValueError, match=r'apt-get install espeak-ng'):
    espeak.check_available('spoken_digits')
