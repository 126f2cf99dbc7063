"""Tasks by name: the only place the trainer learns which family it trains."""

import ml_collections

from train_lib.errors import ConfigError
from train_lib.tasks.base import Task
from train_lib.tasks.classification import ClassificationTask
from train_lib.tasks.forecasting import ForecastingTask
from train_lib.tasks.language_model import LanguageModelTask

_TASKS: dict[str, type[Task]] = {
    'classification': ClassificationTask,
    'forecasting': ForecastingTask,
    'language_model': LanguageModelTask,
}


def names() -> list[str]:
  return sorted(_TASKS)


def get(config: ml_collections.ConfigDict, data_info: dict) -> Task:
  name = config.task.name
  if name not in _TASKS:
    raise ConfigError(f"task.name: unknown task '{name}'; valid tasks are {names()}")
  return _TASKS[name](config, data_info)
