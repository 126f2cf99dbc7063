"""Helpers every experiment file uses: `key=value` args, named variants and the `tiny` shrink."""

import ast
from collections.abc import Mapping
from typing import Any

import ml_collections

from train_lib.config_defaults import base_config
from train_lib.errors import ConfigError

__all__ = ['CPU_LIBRARY_FUSIONS', 'ConfigError', 'base_config', 'choose', 'parse_arg', 'shrink_for_tiny']

# XLA:CPU compiler options (train_lib/compiler_options.py) that hand dots and reductions
# (BatchNorm statistics above all) to its YNNPACK library; convolutions stay XLA's own.
# The float32 conv and recurrent experiments train faster with them and opt in; a bf16 GPT
# trains slower, so the GPTs do not (docs/kernels.md).
CPU_LIBRARY_FUSIONS = {'xla_cpu_experimental_ynn_fusion_type': 'LIBRARY_FUSION_TYPE_DOT,LIBRARY_FUSION_TYPE_REDUCE'}


def _coerce(key: str, text: str, default: Any) -> Any:
  if isinstance(default, bool):
    if text.lower() in ('true', '1', 'yes'):
      return True
    if text.lower() in ('false', '0', 'no'):
      return False
    raise ConfigError(f"config arg '{key}' must be true or false, got '{text}'")
  if isinstance(default, (int, float)):
    try:
      value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
      value = None
    if not isinstance(value, (int, float)) or isinstance(value, bool) or (isinstance(default, int) and not isinstance(value, int)):
      raise ConfigError(f"config arg '{key}' must be {type(default).__name__}, got '{text}'")
    return type(default)(value)
  return text


def parse_arg(arg: str | None, **defaults: Any) -> ml_collections.ConfigDict:
  """Parses 'a=1,b=x' (the text after ':' in --config=file.py:...) against typed defaults.

  An unknown key or a value of the wrong type is a one-line ConfigError.
  """
  values = dict(defaults)
  for item in filter(None, (arg or '').split(',')):
    key, sep, text = item.partition('=')
    key = key.strip()
    if key not in defaults:
      raise ConfigError(f"unknown config arg '{key}'; valid args are {sorted(defaults)}")
    if not sep:  # a bare key switches a boolean on: ':tiny'
      text = 'true'
    values[key] = _coerce(key, text.strip(), defaults[key])
  return ml_collections.ConfigDict(values)


def choose(experiment: str, arg: str, value: str, variants: Mapping[str, Any]) -> Any:
  """variants[value]; an unknown value is a one-line ConfigError listing the valid ones."""
  if value not in variants:
    raise ConfigError(f"{experiment}: unknown {arg} '{value}'; valid {arg}s are {sorted(variants)}")
  return variants[value]


def shrink_for_tiny(config: ml_collections.ConfigDict, *, steps: int = 6, batch_size: int = 32,
                    eval_split: str | None = None, evaluator_examples: int | None = None) -> None:
  """Makes any experiment run in seconds: few small steps, log/checkpoint/eval at the end (on `eval_split` if given;
  evaluators with a split of their own read its first `evaluator_examples` if given)."""
  config.tiny = True
  config.data.eval_split = eval_split or config.data.eval_split
  if evaluator_examples:
    for evaluator in config.evals.values():
      if 'split' in evaluator:
        evaluator.split += f'[:{evaluator_examples}]'
  config.num_epochs = None
  config.total_steps = steps * config.steps_per_call
  config.batch_size = batch_size
  config.eval_batch_size = 2 * batch_size
  config.log_every = config.steps_per_call
  config.eval_every = 0
  config.checkpoint.every = 0
  config.optimizer.warmup_steps = min(config.optimizer.warmup_steps, config.total_steps // 2)
