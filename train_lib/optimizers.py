"""Optimizers and learning-rate schedules built from `config.optimizer`."""

from collections.abc import Callable

import jax
import ml_collections
import optax

from train_lib.errors import ConfigError

SCHEDULES = ('constant', 'cosine', 'linear')
DECAY_MASKS = ('kernels', 'all')


def make_schedule(cfg: ml_collections.ConfigDict, total_steps: int) -> optax.Schedule:
  """Linear warmup from 0, then constant, cosine or linear decay to `end_factor` x peak."""
  peak = cfg.learning_rate
  warmup = cfg.warmup_steps
  decay_steps = max(total_steps - warmup, 1)
  end = peak * cfg.end_factor
  if cfg.schedule == 'constant':
    main = optax.constant_schedule(peak)
  elif cfg.schedule == 'cosine':
    main = optax.cosine_decay_schedule(peak, decay_steps, alpha=cfg.end_factor)
  elif cfg.schedule == 'linear':
    main = optax.linear_schedule(peak, end, decay_steps)
  else:
    raise ConfigError(f"optimizer.schedule: unknown '{cfg.schedule}'; valid schedules are {list(SCHEDULES)}")
  if warmup == 0:
    return main
  return optax.join_schedules([optax.linear_schedule(0.0, peak, warmup), main], [warmup])


def _decay_mask(kind: str) -> Callable | None:
  if kind == 'all':
    return None
  # Biases and norm scales are vectors: decaying them only hurts (Loshchilov & Hutter).
  return lambda params: jax.tree.map(lambda p: p.ndim > 1, params)


def _base(cfg: ml_collections.ConfigDict, lr: optax.Schedule) -> optax.GradientTransformation:
  name = cfg.name
  if name == 'sgd':
    return optax.sgd(lr)
  if name == 'momentum':
    return optax.sgd(lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
  if name == 'adam':
    return optax.adam(lr, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps)
  if name == 'adamw':
    return optax.adamw(lr, b1=cfg.b1, b2=cfg.b2, eps=cfg.eps, weight_decay=cfg.weight_decay,
                       mask=_decay_mask(cfg.weight_decay_mask))
  raise ConfigError(f"optimizer.name: unknown '{name}'; valid optimizers are {list(OPTIMIZERS)}")


OPTIMIZERS = ('sgd', 'momentum', 'adam', 'adamw')


def validate(cfg: ml_collections.ConfigDict) -> None:
  if cfg.name not in OPTIMIZERS:
    raise ConfigError(f"optimizer.name: unknown '{cfg.name}'; valid optimizers are {list(OPTIMIZERS)}")
  if cfg.schedule not in SCHEDULES:
    raise ConfigError(f"optimizer.schedule: unknown '{cfg.schedule}'; valid schedules are {list(SCHEDULES)}")
  if cfg.weight_decay_mask not in DECAY_MASKS:
    raise ConfigError(
        f"optimizer.weight_decay_mask: unknown '{cfg.weight_decay_mask}'; valid masks are {list(DECAY_MASKS)}")
  for key in ('learning_rate', 'weight_decay', 'grad_clip_norm', 'warmup_steps'):
    if cfg[key] < 0:
      raise ConfigError(f'optimizer.{key} must be >= 0, got {cfg[key]}')


def make_optimizer(cfg: ml_collections.ConfigDict, total_steps: int) -> optax.GradientTransformation:
  """Clip -> (coupled L2 decay for non-adamw) -> optimizer, with the schedule applied."""
  validate(cfg)
  lr = make_schedule(cfg, total_steps)
  parts = []
  if cfg.grad_clip_norm > 0:
    parts.append(optax.clip_by_global_norm(cfg.grad_clip_norm))
  if cfg.weight_decay > 0 and cfg.name != 'adamw':
    # SGD-style weight decay is an L2 gradient term, added before momentum.
    parts.append(optax.add_decayed_weights(cfg.weight_decay, mask=_decay_mask(cfg.weight_decay_mask)))
  parts.append(_base(cfg, lr))
  return optax.chain(*parts)
