"""Evaluators by type: `config.evals` names them, the trainer runs them (base.py says how).

A new type is one file with an `Evaluator` subclass, plus its entry in EVALUATORS.
"""

import ml_collections

from train_lib import registry
from train_lib.errors import ConfigError
from train_lib.evaluators.base import COMMON_FIELDS, Context, Evaluator, Result
from train_lib.evaluators.captioning import CaptioningEvaluator
from train_lib.evaluators.per_example import PerExampleEvaluator
from train_lib.evaluators.retrieval import RetrievalEvaluator
from train_lib.evaluators.samples import SamplesEvaluator
from train_lib.evaluators.sparsity import SparsityEvaluator
from train_lib.evaluators.zero_shot import ZeroShotEvaluator

__all__ = ['COMMON_FIELDS', 'EVALUATORS', 'Context', 'Evaluator', 'Result', 'build']

EVALUATORS: dict[str, type[Evaluator]] = {
    'captioning': CaptioningEvaluator,
    'per_example': PerExampleEvaluator,
    'retrieval': RetrievalEvaluator,
    'samples': SamplesEvaluator,
    'sparsity': SparsityEvaluator,
    'zero_shot': ZeroShotEvaluator,
}


# Metric prefixes the trainer writes itself.
RESERVED_NAMES = ('train', 'perf')


def build(config: ml_collections.ConfigDict, context: Context) -> list[Evaluator]:
  """Every evaluator of `config.evals`, checked; a bad type or key is one ConfigError line."""
  evaluators = []
  for name, cfg in config.evals.items():
    if name in RESERVED_NAMES:
      raise ConfigError(f"evals.{name}: '{name}/' holds the trainer's own metrics; name the evaluator otherwise, "
                        f"e.g. '{name}_split'")
    if not isinstance(cfg, ml_collections.ConfigDict) or 'type' not in cfg:
      raise ConfigError(f"evals.{name} needs a type, e.g. config.evals.{name} = {{'type': 'per_example'}}; "
                        f'valid types are {sorted(EVALUATORS)}')
    evaluator = registry.lookup(EVALUATORS, cfg.type, kind='evaluator type', where=f'evals.{name}.type')
    evaluators.append(evaluator(name, cfg, context))
  return evaluators
