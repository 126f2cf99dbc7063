"""The audio front end against a plain numpy reference of the same mel computation, written
loop by loop from its definition (explicit DFT, periodic Hann, HTK triangles)."""

import math

import numpy as np
import pytest

from input_pipeline import audio, preprocess

pytestmark = pytest.mark.unit


def _reference_log_mel(wave, rate, frame_length, hop_length, fft_size, num_mels):
  n = np.arange(frame_length)
  hann = 0.5 - 0.5 * np.cos(2 * math.pi * n / frame_length)
  k = np.arange(fft_size // 2 + 1)
  mel = lambda f: 2595 * math.log10(1 + f / 700)
  top = mel(rate / 2)
  corners = [700 * (10 ** (top * i / (num_mels + 1) / 2595) - 1) for i in range(num_mels + 2)]
  weights = np.zeros((len(k), num_mels))
  for b in range(len(k)):
    f = b * rate / fft_size
    for m in range(num_mels):
      lo, mid, hi = corners[m:m + 3]
      if lo <= f <= mid:
        weights[b, m] = (f - lo) / (mid - lo)
      elif mid < f <= hi:
        weights[b, m] = (hi - f) / (hi - mid)
  out = []
  for start in range(0, len(wave) - frame_length + 1, hop_length):
    frame = np.zeros(fft_size)
    frame[:frame_length] = wave[start:start + frame_length] * hann
    t = np.arange(fft_size)
    re = np.array([np.sum(frame * np.cos(2 * math.pi * kk * t / fft_size)) for kk in k])
    im = np.array([np.sum(frame * np.sin(2 * math.pi * kk * t / fft_size)) for kk in k])
    out.append(np.log(np.maximum((re ** 2 + im ** 2) @ weights, 1e-6)))
  return np.array(out)


def test_log_mel_matches_the_reference():
  rng = np.random.default_rng(0)
  rate = 8000
  t = np.arange(1400) / rate
  # A chirp plus noise: energy moves across bands from frame to frame.
  wave = (0.5 * np.sin(2 * math.pi * (300 + 900 * t) * t) + 0.05 * rng.normal(size=t.shape)).astype(np.float32)
  got = audio.log_mel(wave, rate, frame_length=200, hop_length=80, fft_size=256, num_mels=12)
  want = _reference_log_mel(wave.astype(np.float64), rate, 200, 80, 256, 12)
  assert got.shape == want.shape == (1 + (1400 - 200) // 80, 12)
  np.testing.assert_allclose(got, want, atol=2e-3, rtol=1e-4)


def test_log_mel_runs_over_leading_axes():
  waves = np.random.default_rng(1).normal(size=(2, 3, 1600)).astype(np.float32)
  batched = audio.log_mel(waves)
  assert batched.shape == (2, 3, 8, 40) and batched.dtype == np.float32
  np.testing.assert_allclose(batched[1, 2], audio.log_mel(waves[1, 2]), rtol=1e-5)


def test_a_tone_lights_the_band_that_holds_its_frequency():
  rate = audio.SAMPLE_RATE
  wave = np.sin(2 * math.pi * 1000 * np.arange(rate // 10) / rate)
  bands = audio.log_mel(wave).mean(axis=0)
  centres = audio.mel_to_hz(np.linspace(0, audio.hz_to_mel(rate / 2), 42))[1:-1]
  assert abs(centres[np.argmax(bands)] - 1000) < 100


def test_resample_keeps_a_tone_and_changes_the_rate():
  wave = np.sin(2 * math.pi * 440 * np.arange(22050) / 22050)
  out = audio.resample(wave, 22050, 16000)
  assert out.shape == (16000,)
  spectrum = np.abs(np.fft.rfft(out))
  assert np.argmax(spectrum) == 440  # 1 Hz bins over one second


@pytest.mark.parametrize('kwargs, message', [
    ({'frame_length': 4000}, 'at least frame_length'),
    ({'fft_size': 256}, 'fft_size'),
])
def test_bad_front_end_settings_are_one_clear_error(kwargs, message):
  with pytest.raises(ValueError, match=message):
    audio.log_mel(np.zeros(1600, np.float32), **kwargs)


def test_the_log_mel_pp_op_turns_int16_clips_into_one_channel_spectrograms():
  waves = (np.random.default_rng(2).normal(size=(3, 1600)) * 3000).astype(np.int16)
  out = preprocess.parse('log_mel(num_mels=20)')({'audio': waves, 'label': np.arange(3)}, None)
  assert out['audio'].shape == (3, 8, 20, 1) and out['audio'].dtype == np.float32
  np.testing.assert_allclose(out['audio'][1, ..., 0], audio.log_mel(waves[1] / 32768, num_mels=20), rtol=1e-5)
  with pytest.raises(ValueError, match='int16 waveforms'):
    preprocess.parse('log_mel()')({'audio': waves.astype(np.float32)}, None)
