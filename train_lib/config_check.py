"""Checks a config before anything is built or compiled; each failure is one line."""

import math

import ml_collections

import input_pipeline
import kernels
from train_lib import optimizers, precision, quantization
from train_lib.config_defaults import OPEN_SECTIONS, base_config
from train_lib.errors import ConfigError


def _check_keys(config: ml_collections.ConfigDict, schema: ml_collections.ConfigDict, prefix: str = '') -> None:
  for key in config.keys():
    if key not in schema:
      where = f'{prefix}{key}'
      raise ConfigError(f"unknown config key '{where}'; valid keys here are {sorted(schema.keys())}")
    if f'{prefix}{key}' in OPEN_SECTIONS:
      continue
    if isinstance(schema[key], ml_collections.ConfigDict):
      _check_keys(config[key], schema[key], f'{prefix}{key}.')


def _positive(config: ml_collections.ConfigDict, *keys: str, allow_zero: bool = False) -> None:
  for key in keys:
    value = config[key]
    if isinstance(value, bool) or not isinstance(value, int):
      raise ConfigError(f'{key} must be an integer, got {value!r}')
    if value < 0 or (value == 0 and not allow_zero):
      raise ConfigError(f'{key} must be {">= 0" if allow_zero else "> 0"}, got {value}')


def validate(config: ml_collections.ConfigDict) -> None:
  """Everything that can be checked without devices or data."""
  _check_keys(config, base_config())
  if 'name' not in config.task:
    raise ConfigError('task.name is missing')
  model = config.model
  several = model.keys() and all(isinstance(v, ml_collections.ConfigDict) and 'name' in v for v in model.values())
  if 'name' not in model and not several:
    raise ConfigError('model.name is missing (a task of several networks names each: model.generator.name, ...)')
  _positive(config, 'batch_size', 'eval_batch_size', 'total_steps', 'steps_per_call', 'grad_accum_steps', 'log_every')
  _positive(config, 'eval_every', allow_zero=True)
  if config.num_epochs is not None and config.num_epochs <= 0:
    raise ConfigError(f'num_epochs must be > 0, got {config.num_epochs}')
  k = config.steps_per_call
  for key, value in (('log_every', config.log_every), ('eval_every', config.eval_every),
                     ('checkpoint.every', config.checkpoint.every)):
    if value % k:
      raise ConfigError(f'{key}={value} must be a multiple of steps_per_call={k}')
  if config.checkpoint.every < 0 or config.checkpoint.keep < 1:
    raise ConfigError('checkpoint.every must be >= 0 (0 = only at the end) and checkpoint.keep >= 1')
  if not 0.0 <= config.ema_decay < 1.0:
    raise ConfigError(f'ema_decay must be in [0, 1), got {config.ema_decay}')
  precision.dtype(config.compute_dtype)
  try:
    kernels.check_mode(config.kernels)
  except ValueError as e:
    raise ConfigError(str(e)) from e
  precision.dtype(config.param_dtype)
  optimizers.validate(config.optimizer)
  if config.optimizer.pruning.method != 'none' and config.ema_decay > 0:
    raise ConfigError('optimizer.pruning with ema_decay > 0: evaluation would read the EMA weights, which pruning '
                      "does not zero (a pruned weight's average only decays toward 0); set ema_decay=0")
  quantization.validate(config)
  try:
    input_pipeline.validate(config.data)
  except ConfigError:
    raise
  except ValueError as e:
    raise ConfigError(f'data: {e}') from e


def validate_batch_layout(config: ml_collections.ConfigDict, data_parallel: int, process_count: int) -> None:
  """The global batch must split evenly over processes, devices and micro-batches."""
  for key in ('batch_size', 'eval_batch_size'):
    size = config[key]
    if size % data_parallel or size % process_count:
      raise ConfigError(
          f'{key}={size} is not divisible by the {data_parallel} data-parallel devices '
          f'({process_count} processes); use a multiple of {math.lcm(data_parallel, process_count)}')
  per_device = config.batch_size // data_parallel
  if per_device % config.grad_accum_steps:
    raise ConfigError(f'the per-device batch ({per_device}) is not divisible by grad_accum_steps={config.grad_accum_steps}')

