"""Autoregressive sampling from a language model, jitted, with a KV cache.

The model sees at most `context` tokens (its training context, `max_len`), like
nanoGPT's generate. While the prompt plus the new tokens fit, every new token is
one cached decoding step; past that, each token re-reads the last `context`
tokens. Prompts of different lengths are left-padded; padding gets negative
positions, which attention never looks at (models/attention.py). Token t of
row r is drawn with the key `fold_in(fold_in(rng, r), t)`, so a row's tokens do
not depend on the path (cached or recomputed) or on the other rows; tests
check both.
"""

from collections.abc import Sequence
import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import linen as nn

import kernels


def row_keys(rng: jax.Array, rows: int, step: jax.Array | int) -> jax.Array:
  """The [rows] keys for token `step` of each row."""
  return jax.vmap(lambda r: jax.random.fold_in(jax.random.fold_in(rng, r), step))(jnp.arange(rows))


def sample_logits(logits: jax.Array, keys: jax.Array, temperature: float, top_k: int) -> jax.Array:
  """[B, V] logits, [B] keys -> [B] ids: greedy at temperature 0, else from the top_k (0: all) softmax."""
  if temperature == 0:
    return logits.argmax(-1).astype(jnp.int32)
  logits = logits / temperature
  if top_k:
    kth = jax.lax.top_k(logits, min(top_k, logits.shape[-1]))[0][:, -1:]
    logits = jnp.where(logits < kth, -jnp.inf, logits)
  return jax.vmap(jax.random.categorical)(keys, logits).astype(jnp.int32)


def left_pad(prompts: Sequence[np.ndarray], context: int) -> tuple[np.ndarray, np.ndarray]:
  """(tokens [B, P], positions [B, P]): prompts cut to their last `context` tokens, right-aligned.

  Positions count from 0 at each row's first real token; padding is negative.
  """
  prompts = [np.asarray(p, np.int32)[-context:] for p in prompts]
  if any(len(p) == 0 for p in prompts):
    raise ValueError('every prompt needs at least one token')
  width = max(len(p) for p in prompts)
  tokens = np.zeros((len(prompts), width), np.int32)
  positions = np.zeros((len(prompts), width), np.int32)
  for row, prompt in enumerate(prompts):
    tokens[row, width - len(prompt):] = prompt
    positions[row] = np.arange(width) - (width - len(prompt))
  return tokens, positions


def window_positions(valid: jax.Array) -> jax.Array:
  """Positions of a window's tokens counted from its first real one; -1 for padding."""
  return jnp.where(valid, jnp.cumsum(valid, axis=1) - 1, -1).astype(jnp.int32)


def empty_cache(decoder: nn.Module, rows: int, length: int, **inputs) -> dict:
  """The empty 'cache' of a `decode=True` model for `rows` sequences of up to `length` tokens
  (`inputs`: what else its init reads). Under jit the parameters its init also makes are dead code."""
  return decoder.init(jax.random.PRNGKey(0), jnp.zeros((rows, length), jnp.int32), train=False, **inputs)['cache']


def generate(model: nn.Module, params, prompts: Sequence[np.ndarray], *, max_new_tokens: int,
             temperature: float = 1.0, top_k: int = 0, seed: int = 0) -> np.ndarray:
  """[B, max_new_tokens] ids continuing each prompt (a sequence of 1-D id arrays)."""
  context = model.max_len
  tokens, positions = left_pad(prompts, context)
  run = _generate_fn(model, context, max_new_tokens, float(temperature), int(top_k), kernels.mode())
  return np.asarray(run(params, tokens, positions, jax.random.PRNGKey(seed)))


@functools.lru_cache(maxsize=8)
def _generate_fn(model: nn.Module, context: int, max_new_tokens: int, temperature: float, top_k: int,
                 kernel_mode: str):
  del kernel_mode  # a key of the cache: the program traced under one mode is not the other's
  decoder = model.clone(decode=True)
  sample = functools.partial(sample_logits, temperature=temperature, top_k=top_k)

  @jax.jit
  def run(params, tokens, positions, rng):
    batch, prompt_len = tokens.shape
    cached_steps = min(max_new_tokens, context - prompt_len + 1)
    cache = empty_cache(decoder, batch, context)
    logits, state = decoder.apply({'params': params, 'cache': cache}, tokens, positions, train=False,
                                  mutable=['cache'])
    first = sample(logits[:, -1], row_keys(rng, batch, 0))

    def decode_step(carry, t):
      cache, token, position = carry
      logits, state = decoder.apply({'params': params, 'cache': cache}, token[:, None], position[:, None],
                                    train=False, mutable=['cache'])
      new = sample(logits[:, -1], row_keys(rng, batch, t))
      return (state['cache'], new, position + 1), new

    (_, last, _), cached = jax.lax.scan(
        decode_step, (state['cache'], first, positions[:, -1] + 1), jnp.arange(1, cached_steps))
    generated = jnp.concatenate([first[:, None], cached.T], axis=1)
    if cached_steps == max_new_tokens:
      return generated

    # The window is full: from here on each token re-reads the last `context` tokens.
    sequence = jnp.concatenate([tokens, generated], axis=1)[:, -context:]
    valid = jnp.concatenate([positions >= 0, jnp.ones_like(generated, bool)], axis=1)[:, -context:]

    def window_step(carry, t):
      window, valid = carry
      logits = model.apply({'params': params}, window, window_positions(valid), train=False)
      new = sample(logits[:, -1], row_keys(rng, batch, t))
      window = jnp.concatenate([window[:, 1:], new[:, None]], axis=1)
      valid = jnp.concatenate([valid[:, 1:], jnp.ones_like(valid[:, :1])], axis=1)
      return (window, valid), new

    _, windowed = jax.lax.scan(window_step, (sequence, valid), jnp.arange(cached_steps, max_new_tokens))
    return jnp.concatenate([generated, windowed.T], axis=1)

  return run
