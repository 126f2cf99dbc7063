"""Captions for image files from a captioner run's checkpoint, on this process's first device: what
`python -m train_lib.sample --image=...` calls.

The task is rebuilt from the run's own config (its model, image key and caption length) and the
tokenizer comes from the checkpoint, so ids decode to the words the run trained on. An image file
is read with Pillow, converted to the data's channels (grey or RGB) and resized to its height and
width, then preprocessed by the run's eval pp, as its evaluators saw images. Parameters are the
EMA ones when the run kept an EMA.
"""

import dataclasses
import os
from typing import Any

import numpy as np
from PIL import Image

import input_pipeline
from input_pipeline import preprocess, tokenizers
from train_lib import caption_decoding, from_run, tasks
from train_lib.errors import ConfigError
from train_lib.tasks.captioning import CaptioningTask


@dataclasses.dataclass(frozen=True)
class CaptionerRun:
  """A restored captioner run: its task, variables, tokenizer, and the images it reads."""

  task: CaptioningTask
  params: Any
  model_state: Any
  tokenizer: tokenizers.Tokenizer
  image_shape: tuple[int, ...]  # [H, W, C] of the data's images
  pp: preprocess.Pipeline
  step: int


def is_captioner_run(workdir: str) -> bool:
  """Whether the run in `workdir` trained task 'captioning'."""
  return from_run.open_run(workdir, None, what='--workdir').config.task.name == 'captioning'


def load(workdir: str, step: int | None = None) -> CaptionerRun:
  """The captioner run in `workdir` at `step` (default the latest); one-line ConfigError otherwise."""
  source = from_run.open_run(workdir, step, what='--workdir')
  config = source.config
  if config.task.name != 'captioning':
    raise ConfigError(f"--image captions an image with a captioner; the run in {workdir} trained task "
                      f"'{config.task.name}' (train one with task.name='captioning')")
  if not source.has_item('tokenizer'):
    raise ConfigError(f'the checkpoint {source.directory} holds no tokenizer to decode captions with; '
                      'retrain the run with this version of lamina')
  data_info = input_pipeline.dataset_info(config.data)
  task = tasks.get(config, data_info)
  params, model_state = from_run.inference_variables(source)
  return CaptionerRun(task=task, params=params, model_state=model_state,
                      tokenizer=tokenizers.from_json(from_run.read_json(source, 'tokenizer')),
                      image_shape=tuple(data_info['features'][task.image_key]['shape']),
                      pp=preprocess.parse(config.data.pp_eval), step=source.step)


def read_image(path: str, shape: tuple[int, ...]) -> np.ndarray:
  """The image file at `path` as uint8 [H, W, C] of `shape` (C 1 or 3): converted and resized."""
  if not os.path.isfile(path):
    raise ConfigError(f'--image: no file {path!r}')
  height, width, channels = shape
  try:
    with Image.open(path) as image:
      image = image.convert('L' if channels == 1 else 'RGB').resize((width, height), Image.Resampling.BILINEAR)
      pixels = np.asarray(image, np.uint8)
  except OSError as e:
    raise ConfigError(f'--image: cannot read {path!r} as an image ({e})') from None
  return pixels.reshape(shape)


def caption(run: CaptionerRun, images: np.ndarray, *, beam_size: int = 1, length_penalty: float = 0.0) -> list[str]:
  """The caption of each of `images` [N, H, W, C] uint8 (as read from files), decoded greedily
  (beam_size=1) or by beam search up to the data's caption length."""
  task = run.task
  batch = run.pp({task.image_key: images})
  args = (task.model, run.params, batch[task.image_key])
  max_len = task.tokens_per_example
  if beam_size == 1:
    ids = caption_decoding.greedy(*args, max_len, model_state=run.model_state)
  else:
    ids = caption_decoding.beam_search(*args, beam_size, max_len, length_penalty=length_penalty,
                                       model_state=run.model_state)
  return [run.tokenizer.decode(row) for row in np.asarray(ids).tolist()]
