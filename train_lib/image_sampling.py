"""Images from a generator run's checkpoint (a GAN's or a diffusion model's), on this process's
first device: what `python -m train_lib.sample` and notebooks call.

The task is rebuilt from the run's own config, so the sampler settings are checked by it
(a GAN has none; a diffusion model takes name, steps, eta, clip_x0, guidance). Parameters are
the EMA ones when the run kept an EMA, as its evaluators sample.
"""

import dataclasses
import functools
from typing import Any

import jax
import numpy as np

import input_pipeline
from train_lib import from_run, tasks
from train_lib.errors import ConfigError
from train_lib.tasks.generative import ImageGenerator
from train_lib.train_state import TrainState


@dataclasses.dataclass(frozen=True)
class Generator:
  """A restored generator run: its task, and the variables `task.generate` reads."""

  task: ImageGenerator
  params: Any
  state: TrainState
  step: int


def is_generator_run(workdir: str) -> bool:
  """Whether the run in `workdir` trained a task that draws images."""
  config = from_run.open_run(workdir, None, what='--workdir').config
  return issubclass(tasks.TASKS.get(config.task.name, object), ImageGenerator)


def load(workdir: str, step: int | None = None) -> Generator:
  """The generator run in `workdir` at `step` (default the latest); one-line ConfigError otherwise."""
  source = from_run.open_run(workdir, step, what='--workdir')
  config = source.config
  task = tasks.get(config, input_pipeline.dataset_info(config.data))
  if not isinstance(task, ImageGenerator):
    raise ConfigError(f"the run in {workdir} trained task '{config.task.name}', which draws no images; image "
                      f"sampling needs a generator (task 'gan' or 'diffusion')")
  params, model_state = from_run.inference_variables(source)
  state = TrainState(step=source.step, params=None, opt_state=None, model_state=model_state, frozen={},
                     ema_params=None, rng=None)
  return Generator(task, params, state, source.step)


def requested_labels(task: ImageGenerator, num: int, label: int | None) -> np.ndarray | None:
  """The class of every sample: `label` for all, or 0, 1, 2, ... in turn; None for an unconditional model."""
  if label is not None:
    if not task.conditional:
      raise ConfigError('--label needs a class-conditional model (task.conditional); this one ignores labels')
    if not 0 <= label < task.num_classes:
      raise ConfigError(f'--label={label} is out of range: the model knows classes 0..{task.num_classes - 1}')
    return np.full(num, label, np.int32)
  return np.arange(num, dtype=np.int32) % task.num_classes if task.conditional else None


def draw(generator: Generator, num: int, settings: dict, *, label: int | None = None, seed: int = 0) -> np.ndarray:
  """`num` images [num, H, W, C] in the task's pixel range; bad settings or labels are one ConfigError line."""
  task = generator.task
  sampler = task.sampler(settings, where='sampler flags')
  labels = requested_labels(task, num, label)
  images = _generate(task, num, sampler)(generator.params, generator.state, jax.random.PRNGKey(seed), labels)
  return np.asarray(images)


@functools.cache
def _generate(task: ImageGenerator, num: int, sampler: Any):
  return jax.jit(lambda params, state, rng, labels: task.generate(params, state, rng, labels, num, sampler))
