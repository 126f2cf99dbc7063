"""Speech synthesised by espeak-ng (the Debian package `espeak-ng`): text in, 16-bit mono audio out.

A voice is espeak-ng's `LANGUAGE[+VARIANT]` (`en-us+f3`: American English, female variant 3);
speed is in words per minute, pitch 0-99. espeak-ng is deterministic: the same request gives
the same samples.
"""

import concurrent.futures
import dataclasses
import io
import os
import shutil
import subprocess
import wave

import numpy as np

EXECUTABLE = 'espeak-ng'
RATE = 22_050  # espeak-ng's output rate


@dataclasses.dataclass(frozen=True)
class Utterance:
  text: str
  voice: str
  speed: int
  pitch: int


def check_available(dataset: str) -> None:
  """One clear line when espeak-ng is missing, before anything is written."""
  if shutil.which(EXECUTABLE) is None:
    raise ValueError(f'{dataset} needs the espeak-ng speech synthesiser, not found on PATH; '
                     f'run `apt-get install espeak-ng`')


def speak(utterance: Utterance) -> np.ndarray:
  """int16 samples at RATE Hz."""
  result = subprocess.run(
      [EXECUTABLE, '-v', utterance.voice, '-s', str(utterance.speed), '-p', str(utterance.pitch), '--stdout',
       utterance.text], capture_output=True, check=False)
  if result.returncode != 0 or not result.stdout:
    raise ValueError(f'espeak-ng failed on {utterance}: {result.stderr.decode(errors="replace").strip()}')
  # Written to a pipe, the WAV header cannot know the data's length: read frames until the data ends.
  with wave.open(io.BytesIO(result.stdout)) as wav:
    if (wav.getframerate(), wav.getsampwidth(), wav.getnchannels()) != (RATE, 2, 1):
      raise ValueError(f'espeak-ng wrote {wav.getframerate()} Hz, {wav.getsampwidth()}-byte, '
                       f'{wav.getnchannels()}-channel audio; expected {RATE} Hz 16-bit mono')
    return np.frombuffer(wav.readframes(wav.getnframes()), '<i2').copy()


def speak_all(utterances: list[Utterance]) -> list[np.ndarray]:
  """`speak` for each, a process per core at a time (each call is mostly espeak-ng's start-up)."""
  with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
    return list(pool.map(speak, utterances))
