"""The audio front end: waveforms -> log-mel spectrograms, the input of an audio tower.

  frames of `frame_length` samples every `hop_length` -> Hann window -> |rFFT|^2 -> mel filterbank -> log

The filterbank is the HTK one (mel = 2595 log10(1 + f / 700)): `num_mels` triangles whose
corners are equally spaced in mel between `low_hz` and `high_hz`, each rising linearly in Hz
from its left corner to its centre and falling to its right one (as torchaudio's
`melscale_fbanks(norm=None, mel_scale='htk')`). Defaults are the common speech front end at
16 kHz: 25 ms frames every 10 ms, 512-point FFT, 40 mels. Vectorised over any leading axes,
so a pp op runs it on a whole batch at once.
"""

import math

import numpy as np
from scipy import signal

SAMPLE_RATE = 16_000


def hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
  return 2595.0 * np.log10(1.0 + np.asarray(hz, np.float64) / 700.0)


def mel_to_hz(mel: np.ndarray | float) -> np.ndarray:
  return 700.0 * (10.0 ** (np.asarray(mel, np.float64) / 2595.0) - 1.0)


def resample(wave: np.ndarray, from_rate: int, to_rate: int = SAMPLE_RATE) -> np.ndarray:
  """`wave` [..., T] from `from_rate` Hz to `to_rate` Hz, by polyphase filtering (scipy)."""
  divisor = math.gcd(from_rate, to_rate)
  return signal.resample_poly(wave, to_rate // divisor, from_rate // divisor, axis=-1)


def mel_filterbank(num_mels: int, fft_size: int, sample_rate: int, low_hz: float = 0.0,
                   high_hz: float | None = None) -> np.ndarray:
  """[fft_size // 2 + 1, num_mels] float32 weights from power-spectrum bins to mel bands."""
  high_hz = sample_rate / 2 if high_hz is None else high_hz
  if not 0 <= low_hz < high_hz <= sample_rate / 2:
    raise ValueError(f'need 0 <= low_hz < high_hz <= sample_rate / 2, got {low_hz}, {high_hz}, {sample_rate}')
  corners = mel_to_hz(np.linspace(hz_to_mel(low_hz), hz_to_mel(high_hz), num_mels + 2))
  bins = np.linspace(0.0, sample_rate / 2, fft_size // 2 + 1)[:, None]
  left, centre, right = corners[:-2], corners[1:-1], corners[2:]
  rising = (bins - left) / (centre - left)
  falling = (right - bins) / (right - centre)
  return np.maximum(0.0, np.minimum(rising, falling)).astype(np.float32)


def log_mel(wave: np.ndarray, sample_rate: int = SAMPLE_RATE, frame_length: int = 400, hop_length: int = 160,
            fft_size: int = 512, num_mels: int = 40, floor: float = 1e-6) -> np.ndarray:
  """[..., T] float waveforms -> [..., frames, num_mels] float32 log mel energies, with
  frames = 1 + (T - frame_length) // hop_length (no padding: every frame is real audio)."""
  wave = np.asarray(wave, np.float32)
  if wave.shape[-1] < frame_length:
    raise ValueError(f'log_mel needs at least frame_length={frame_length} samples, got {wave.shape[-1]}')
  if fft_size < frame_length:
    raise ValueError(f'fft_size ({fft_size}) must be at least frame_length ({frame_length})')
  frames = np.lib.stride_tricks.sliding_window_view(wave, frame_length, axis=-1)[..., ::hop_length, :]
  window = signal.get_window('hann', frame_length).astype(np.float32)  # periodic, as in STFTs
  power = np.abs(np.fft.rfft(frames * window, n=fft_size, axis=-1)) ** 2
  mels = power.astype(np.float32) @ mel_filterbank(num_mels, fft_size, sample_rate)
  return np.log(np.maximum(mels, floor))
