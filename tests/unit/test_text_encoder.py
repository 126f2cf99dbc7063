"""The text tower: padding changes nothing, the head projects, bad settings are one line."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from models import registry

pytestmark = pytest.mark.unit


def _encoder(**kwargs):
  return registry.get('text_encoder', vocab_size=30, width=16, num_layers=2, num_heads=2, max_len=12, **kwargs)


def _init(model, tokens):
  # Compiled, with an rbg key: an eager init compiles every op it meets, and XLA:CPU compiles
  # threefry's random bits several times slower than rbg's.
  return jax.jit(lambda t: model.init(jax.random.key(0, impl='rbg'), t, train=False))(tokens)


def test_padding_changes_nothing():
  model = _encoder(num_classes=8)
  tokens = jnp.array([[5, 3, 9, 0, 0, 0], [7, 0, 2, 0, 4, 0]])
  variables = _init(model, tokens)
  apply = jax.jit(lambda t: model.apply(variables, t, train=False))
  out = apply(tokens)
  assert out.shape == (2, 8) and out.dtype == jnp.float32
  np.testing.assert_allclose(out[0], apply(tokens[:1, :3])[0], rtol=1e-5, atol=1e-6)
  # Row 1's pads between real tokens are invisible too: more of them at the end change nothing.
  longer = jnp.concatenate([tokens, jnp.zeros((2, 4), tokens.dtype)], axis=1)
  np.testing.assert_allclose(apply(longer), out, rtol=1e-5, atol=1e-6)


def test_a_row_of_padding_alone_is_finite():
  model = _encoder(num_classes=8)
  tokens = jnp.array([[5, 3, 0], [0, 0, 0]])
  out = model.apply(_init(model, tokens), tokens, train=False)
  assert np.isfinite(np.asarray(out)).all()


def test_without_a_head_it_returns_the_pooled_features():
  model = _encoder(num_classes=None)
  tokens = jnp.array([[1, 2, 3]])
  out = model.apply(_init(model, tokens), tokens, train=False)
  assert out.shape == (1, 16)


@pytest.mark.parametrize('kwargs, message', [
    ({'vocab_size': 0}, 'vocab_size must be > 0'),
    ({'num_classes': 0}, 'num_classes must be > 0'),
])
def test_bad_settings_are_one_line(kwargs, message):
  with pytest.raises(ValueError, match=message):
    registry.get('text_encoder', **{'vocab_size': 30, 'num_classes': 4, **kwargs})


def test_too_many_tokens_is_one_line():
  model = _encoder(num_classes=4)
  with pytest.raises(ValueError, match='exceed max_len=12'):
    model.init(jax.random.key(0), jnp.ones((1, 13), jnp.int32), train=False)
