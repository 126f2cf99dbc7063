"""Models by name: the one table that maps a config's `model.name` to a module.

An entry is a module class plus preset field values; `get(name, **kwargs)` overrides
the preset with `kwargs`. A new family adds its class and presets to `_MODELS`.
"""

import dataclasses
from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp
from flax import linen as nn
from flax.core import FrozenDict

from models.captioner import Captioner
from models.cnn import CNN
from models.gan import DCGANDiscriminator, DCGANGenerator, MLPDiscriminator, MLPGenerator
from models.logistic import LogisticRegression
from models.mlp import MLP
from models.recurrent import RecurrentClassifier, RecurrentForecaster, RecurrentLM
from models.resnet import ResNet
from models.text_encoder import TextEncoder
from models.transformer import TransformerLM
from models.unet import UNet
from models.vit import ViT

_MODELS: dict[str, tuple[type[nn.Module], Mapping[str, Any]]] = {
    'transformer_lm': (TransformerLM, {}),
    'logreg': (LogisticRegression, {}),
    'mlp': (MLP, {}),
    'cnn': (CNN, {}),
    'resnet': (ResNet, {}),
    # Greydanus 2020, "Scaling down deep learning" (MNIST-1D), models.py.
    'mnist1d_mlp': (MLP, {'hidden': (100, 100), 'activation': 'relu', 'residual': True}),
    'mnist1d_cnn': (CNN, {'features': (25, 25, 25), 'kernel_size': (5, 3, 3), 'strides': 2,
                          'padding': 1, 'pool': None, 'hidden': ()}),
    'resnet18': (ResNet, {'block': 'basic', 'stage_sizes': (2, 2, 2, 2)}),
    'resnet34': (ResNet, {'block': 'basic', 'stage_sizes': (3, 4, 6, 3)}),
    'resnet50': (ResNet, {'block': 'bottleneck', 'stage_sizes': (3, 4, 6, 3)}),
    'resnet101': (ResNet, {'block': 'bottleneck', 'stage_sizes': (3, 4, 23, 3)}),
    'resnet152': (ResNet, {'block': 'bottleneck', 'stage_sizes': (3, 8, 36, 3)}),
    # GRUBase in the MNIST-1D notebooks/models.py: bidirectional, 6 units, a linear
    # layer over all 40 steps' outputs (5,134 parameters, as in torch).
    'mnist1d_gru': (RecurrentClassifier, {'cell': 'gru', 'hidden': 6, 'bidirectional': True,
                                          'readout': 'flatten'}),
    'lstm_classifier': (RecurrentClassifier, {'cell': 'lstm'}),
    'gru_classifier': (RecurrentClassifier, {'cell': 'gru'}),
    'lstm_forecaster': (RecurrentForecaster, {'cell': 'lstm'}),
    'gru_forecaster': (RecurrentForecaster, {'cell': 'gru'}),
    'lstm_lm': (RecurrentLM, {'cell': 'lstm'}),
    'gru_lm': (RecurrentLM, {'cell': 'gru'}),
    'vit': (ViT, {}),
    # Dosovitskiy et al. 2021 / big_vision's Ti, S, B with 16x16 patches.
    'vit_ti16': (ViT, {'width': 192, 'num_layers': 12, 'num_heads': 3, 'patch_size': 16}),
    'vit_s16': (ViT, {'width': 384, 'num_layers': 12, 'num_heads': 6, 'patch_size': 16}),
    'vit_b16': (ViT, {'width': 768, 'num_layers': 12, 'num_heads': 12, 'patch_size': 16}),
    'text_encoder': (TextEncoder, {}),
    'captioner': (Captioner, {}),
    'unet': (UNet, {}),
    'dcgan_generator': (DCGANGenerator, {}),
    'dcgan_discriminator': (DCGANDiscriminator, {}),
    'mlp_generator': (MLPGenerator, {}),
    'mlp_discriminator': (MLPDiscriminator, {}),
}

# Fields every flax module has that are not model hyperparameters.
_MODULE_FIELDS = frozenset({'parent', 'name'})


def names(of: type[nn.Module] | None = None) -> list[str]:
  """The registered model names, sorted: all of them, or those that build an `of`."""
  return sorted(name for name, (cls, _) in _MODELS.items() if of is None or issubclass(cls, of))


def get(name: str, **kwargs: Any) -> nn.Module:
  """Builds model `name`; raises a one-line ValueError on a bad name or field."""
  cls, values = resolve(name, **kwargs)
  return cls(**values)


def resolve(name: str, **kwargs: Any) -> tuple[type[nn.Module], dict[str, Any]]:
  """(class, field values) that `get` builds model `name` from, checked as `get` checks them."""
  if name not in _MODELS:
    raise ValueError(f'unknown model {name!r}; valid names: {", ".join(names())}')
  cls, preset = _MODELS[name]
  valid = [f.name for f in dataclasses.fields(cls) if f.name not in _MODULE_FIELDS]
  unknown = sorted(set(kwargs) - set(valid))
  if unknown:
    raise ValueError(f'model {name!r} has no field {", ".join(map(repr, unknown))}; '
                     f'valid fields: {", ".join(valid)}')
  values = {**preset, **{k: _normalize(k, v) for k, v in kwargs.items()}}
  missing = [f.name for f in dataclasses.fields(cls)
             if f.name not in _MODULE_FIELDS and f.name not in values
             and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
  if missing:
    raise ValueError(f'model {name!r} needs {", ".join(missing)}')
  return cls, values


def _normalize(key: str, value: Any) -> Any:
  """Config values -> module fields: dtype names become dtypes, lists become tuples, mappings
  (a dict or a ConfigDict, such as a captioner's `encoder`) FrozenDicts.

  Tuples and FrozenDicts keep modules hashable, which jit needs when a module is a static argument.
  """
  if key in ('dtype', 'param_dtype') and isinstance(value, str):
    return jnp.dtype(value)
  if callable(getattr(value, 'items', None)):
    return FrozenDict({k: _normalize(k, v) for k, v in value.items()})
  if isinstance(value, list):
    return tuple(_normalize('', v) for v in value)
  return value
