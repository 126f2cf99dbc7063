"""Quantization through qwix: rules on module paths, fake-quantized training (QAT), and int8/int4
weights after training (PTQ).

  config.quantization = {'mode': 'qat', 'scheme': 'int8', 'modules': '.*', 'skip': 'head'}

`scheme` names what is quantized (SCHEMES); `modules` and `skip` are regexes over module paths
('stage1_block1/conv_0', 'head', 'blocks_3/mlp/wi'), matched in full: `skip` keeps layers in
float (often the first and last, as MaxText's quantization config allows per path). Every model
of the run is wrapped by `wrap(model, config)` where it is built, so training, evaluation,
frozen parts, sampling and export see the same quantized network.

- 'qat': the model trains through qwix's fake quantization (straight-through gradients); its
  params are the float tree, so a QAT run restores, fine-tunes and resumes like any other.
- 'ptq': the params are qwix's quantized arrays (int8 or int4 values with float scales); such a
  run is written by `python -m train_lib.quantize` from a trained run and is evaluated, sampled
  and exported, not trained.

Weight-only schemes quantize `dot_general` ops only: qwix's convolution wants the activation
and weight types equal. They save memory, not time, on a CPU: the weights are dequantized
before a float product. 'int8' quantizes activations too (per-token/per-channel scales computed
on the fly), so products run as real s8 x s8 -> s32 dots; 'int8_static' fixes the activation
scales, calibrated on training batches.
"""

import dataclasses
import re

import jax.numpy as jnp
import ml_collections
from flax import linen as nn

from train_lib import registry
from train_lib.errors import ConfigError

MODES = ('none', 'qat', 'ptq')
FIELDS = {'mode': 'none', 'scheme': 'int8', 'modules': '.*', 'skip': ''}


@dataclasses.dataclass(frozen=True)
class Scheme:
  """What one named scheme quantizes: weight and activation types, and on which ops."""

  weight: type
  activation: type | None = None
  static_activations: bool = False
  ops: tuple[str, ...] = ()  # () : every op qwix intercepts (dot_general, einsum, conv)


SCHEMES = {
    'int8': Scheme(jnp.int8, jnp.int8),
    'int8_static': Scheme(jnp.int8, jnp.int8, static_activations=True),
    'int8_weights': Scheme(jnp.int8, ops=('dot_general', 'einsum')),
    'int4_weights': Scheme(jnp.int4, ops=('dot_general', 'einsum')),
}


def settings(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """`config.quantization` with defaults filled in, checked: one ConfigError line per problem."""
  cfg = ml_collections.ConfigDict(FIELDS)
  cfg.update(config.quantization)
  registry.check_keys(cfg.keys(), FIELDS, where='quantization')
  if cfg.mode not in MODES:
    raise ConfigError(f"quantization.mode: unknown '{cfg.mode}'; valid modes are {list(MODES)}")
  registry.lookup(SCHEMES, cfg.scheme, kind='quantization scheme', where='quantization.scheme')
  for key in ('modules', 'skip'):
    try:
      re.compile(cfg[key])
    except re.error as e:
      raise ConfigError(f"quantization.{key}: '{cfg[key]}' is not a regex ({e})") from e
  return cfg


def validate(config: ml_collections.ConfigDict) -> None:
  """`settings`' checks, and that qwix will see the ops it quantizes."""
  if settings(config).mode != 'none' and config.kernels != 'xla':
    raise ConfigError(f"quantization.mode '{config.quantization.mode}' needs kernels='xla': the hand-written "
                      f"kernels of kernels='{config.kernels}' hide the convolutions and dots qwix quantizes")


def rules(cfg: ml_collections.ConfigDict, *, for_ptq: bool) -> list:
  """qwix rules for the settings `cfg` (from `settings`); the first rule matching a module wins."""
  import qwix  # here, not at the top: every process builds models, few quantize them
  scheme = SCHEMES[cfg.scheme]
  rule_type = qwix.QuantizationRule if for_ptq else qwix.QtRule
  kept_in_float = [rule_type(module_path=cfg.skip)] if cfg.skip else []
  return [*kept_in_float, rule_type(
      module_path=cfg.modules, op_names=scheme.ops, weight_qtype=scheme.weight, act_qtype=scheme.activation,
      act_static_scale=scheme.static_activations if scheme.activation else None)]


def wrap(model: nn.Module, config: ml_collections.ConfigDict) -> nn.Module:
  """`model` as `config.quantization` asks: unchanged, fake-quantized (qat) or quantized (ptq)."""
  cfg = settings(config)
  if cfg.mode == 'none':
    return model
  import qwix
  if cfg.mode == 'qat':
    return qwix.quantize_model(model, qwix.QtProvider(rules(cfg, for_ptq=False)))
  return qwix.quantize_model(model, qwix.PtqProvider(rules(cfg, for_ptq=True)))


def calibrating(model: nn.Module, config: ml_collections.ConfigDict) -> nn.Module:
  """The fake-quantized twin of a PTQ model, whose forward passes with `mutable=['quant_stats']`
  gather the activation ranges a static scheme's scales are computed from."""
  import qwix
  return qwix.quantize_model(model, qwix.QtProvider(rules(settings(config), for_ptq=False)))


def quantize_params(float_params: dict, abstract_params: dict, quant_stats: dict) -> dict:
  """`float_params` (unboxed) as the quantized arrays a PTQ model's `abstract_params` (from its
  init, shapes only) describe; static activation scales come from `quant_stats` (`calibrating`)."""
  import qwix
  return qwix.quantize_params(float_params, abstract_params, quant_stats)
