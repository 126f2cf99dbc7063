"""Tasks by name: the only place the trainer learns which family it trains."""

import ml_collections

from train_lib import registry
from train_lib.tasks.base import Task
from train_lib.tasks.captioning import CaptioningTask
from train_lib.tasks.classification import ClassificationTask
from train_lib.tasks.contrastive import ContrastiveTask
from train_lib.tasks.diffusion import DiffusionTask
from train_lib.tasks.distillation import DistillationTask
from train_lib.tasks.forecasting import ForecastingTask
from train_lib.tasks.gan import GANTask
from train_lib.tasks.language_model import LanguageModelTask
from train_lib.tasks.mae import MAETask
from train_lib.tasks.simclr import SimCLRTask

TASKS: dict[str, type[Task]] = {
    'captioning': CaptioningTask,
    'classification': ClassificationTask,
    'contrastive': ContrastiveTask,
    'diffusion': DiffusionTask,
    'distillation': DistillationTask,
    'forecasting': ForecastingTask,
    'gan': GANTask,
    'language_model': LanguageModelTask,
    'mae': MAETask,
    'simclr': SimCLRTask,
}


def names() -> list[str]:
  return sorted(TASKS)


def get(config: ml_collections.ConfigDict, data_info: dict) -> Task:
  return registry.lookup(TASKS, config.task.name, kind='task', where='task.name')(config, data_info)
