"""Caption decoding from a captioner (models/captioner.py): greedy and beam search, jitted, with the KV cache.

Both encode the images once, then feed BOS and each chosen token to a `decode=True` clone of the
model, one cached step at a time; the first step also caches the memory's keys and values in
every block's cross-attention. They return [B, max_len] ids without BOS: the words, EOS, then
PAD; a caption that reaches max_len without EOS ends there. Tokens come from the log-softmax over
every id but PAD and BOS (`token_log_probs`), which a caption never continues with.

Beam search (as fairseq's) keeps `beam_size` = K live hypotheses per image. Each step expands
every one by every token and ranks the expansions; those among the K best that end (EOS, or
max_len reached) are finished, and the K best that do not end stay live, their cache rows
gathered from the hypotheses they extend. A finished hypothesis scores its log-probability
divided by GNMT's length penalty ((5 + length) / 6) ** length_penalty, length counting EOS (0, the
default, scores the plain log-probability). An image is done once it has K finished hypotheses
and the worst of them scores at least what its best live one could reach at the next step, so a
short early ending never shuts out the longer caption still on the beam; the answer is its best
finished hypothesis. Width 1 is therefore exactly greedy decoding, and a beam as wide as every
expansion finds the best caption of all.
"""

import functools

import jax
import jax.numpy as jnp
from flax import linen as nn

import kernels
from input_pipeline.tokenizers import WordTokenizer
from train_lib import sampling

PAD, BOS, EOS = WordTokenizer.PAD, WordTokenizer.BOS, WordTokenizer.EOS


def token_log_probs(logits: jax.Array) -> jax.Array:
  """[..., V] logits -> log-probabilities of the next token; PAD and BOS are impossible (-inf)."""
  never = jnp.zeros(logits.shape[-1], bool).at[jnp.array([PAD, BOS])].set(True)
  return jax.nn.log_softmax(jnp.where(never, -jnp.inf, logits.astype(jnp.float32)), axis=-1)


def length_penalty_factor(length: jax.Array | int, alpha: float) -> jax.Array:
  """GNMT's ((5 + length) / 6) ** alpha: what a finished hypothesis's log-probability is divided by."""
  return ((5.0 + jnp.asarray(length, jnp.float32)) / 6.0) ** alpha


def greedy(model: nn.Module, params, images: jax.Array, max_len: int, model_state: dict | None = None) -> jax.Array:
  """[B, max_len] ids: the most likely token at every step. `model_state`: the encoder's other
  collections (a ResNet's batch_stats), if it has any."""
  _check(model, max_len)
  return _greedy_fn(model, max_len, kernels.mode())(params, model_state or {}, images)


def beam_search(model: nn.Module, params, images: jax.Array, beam_size: int, max_len: int,
                length_penalty: float = 0.0, model_state: dict | None = None) -> jax.Array:
  """[B, max_len] ids: each image's best finished hypothesis of a beam of `beam_size`."""
  _check(model, max_len)
  if beam_size < 1:
    raise ValueError(f'beam_size must be >= 1, got {beam_size}')
  return _beam_fn(model, max_len, beam_size, float(length_penalty), kernels.mode())(params, model_state or {}, images)


def _check(model: nn.Module, max_len: int) -> None:
  if not 1 <= max_len <= model.max_len:
    raise ValueError(f'max_len must be in [1, {model.max_len}] (the positions the captioner learned), got {max_len}')


class _Decoder:
  """One batch's cached decoding: `start` encodes and feeds BOS, `step` feeds one token per row."""

  def __init__(self, model: nn.Module, variables: dict, max_len: int):
    self.model, self.variables, self.max_len = model.clone(decode=True), variables, max_len

  def start(self, images: jax.Array, rows_per_image: int) -> tuple[jax.Array, dict]:
    """(log-probs [B * rows, V] of the first token, the cache): each image encoded once, its
    memory repeated for its rows (beams)."""
    memory = self.model.apply(self.variables, images, train=False, method='encode')
    memory = jnp.repeat(memory, rows_per_image, axis=0)
    rows = memory.shape[0]
    cache = sampling.empty_cache(self.model, rows, self.max_len, memory=memory, method='next_token_logits')
    return self.step(cache, jnp.full((rows,), BOS, jnp.int32), 0, memory)

  def step(self, cache: dict, tokens: jax.Array, position: jax.Array | int,
           memory: jax.Array | None = None) -> tuple[jax.Array, dict]:
    """(log-probs [N, V] of the next token, the cache) after feeding `tokens` [N] at `position`."""
    positions = jnp.full((tokens.shape[0], 1), position, jnp.int32)
    logits, state = self.model.apply({**self.variables, 'cache': cache}, tokens[:, None], positions, train=False,
                                     memory=memory, method='next_token_logits', mutable=['cache'])
    return token_log_probs(logits[:, -1]), state['cache']


@functools.lru_cache(maxsize=8)
def _greedy_fn(model: nn.Module, max_len: int, kernel_mode: str):
  del kernel_mode  # a key of the cache: the program traced under one mode is not the other's

  @jax.jit
  def run(params, model_state, images):
    decoder = _Decoder(model, {'params': params, **model_state}, max_len)
    log_probs, cache = decoder.start(images, 1)

    def choose(log_probs, done):
      token = jnp.where(done, PAD, sampling.sample_logits(log_probs, None, temperature=0.0, top_k=0))
      return token, done | (token == EOS)

    def body(carry, t):
      cache, log_probs, done = carry
      token, done = choose(log_probs, done)
      log_probs, cache = decoder.step(cache, token, t + 1)
      return (cache, log_probs, done), token

    done = jnp.zeros(images.shape[0], bool)
    (_, log_probs, done), tokens = jax.lax.scan(body, (cache, log_probs, done), jnp.arange(max_len - 1))
    last, _ = choose(log_probs, done)
    return jnp.concatenate([tokens.T, last[:, None]], axis=1)

  return run


@functools.lru_cache(maxsize=8)
def _beam_fn(model: nn.Module, max_len: int, beam_size: int, alpha: float, kernel_mode: str):
  del kernel_mode  # as _greedy_fn's
  k = beam_size

  def expand(beams: dict, log_probs: jax.Array, t: jax.Array) -> tuple[dict, jax.Array, jax.Array]:
    """(the beams after choosing output token t, the tokens [B * K] the live ones feed next, the
    cache rows [B * K] they extend)."""
    batch, vocab = beams['live_scores'].shape[0], log_probs.shape[-1]
    scores = beams['live_scores'][:, :, None] + log_probs.reshape(batch, k, vocab)
    scores, index = jax.lax.top_k(scores.reshape(batch, k * vocab), 2 * k)  # best first
    parent, token = index // vocab, index % vocab
    sequences = jnp.take_along_axis(beams['live'], parent[..., None], axis=1).at[:, :, t].set(token)
    ends = (token == EOS) | (t == max_len - 1)
    # Done: K finished, the worst of them at least as good as any expansion of the best live one
    # can score now (log-probabilities only fall; with a length penalty, HF's heuristic bound).
    best_live = beams['live_scores'][:, 0] / length_penalty_factor(t + 1, alpha)
    done = beams['finished_scores'][:, -1] >= best_live
    finishing = ends & (jnp.arange(2 * k) < k) & ~done[:, None]
    finished_scores = jnp.concatenate(
        [beams['finished_scores'], jnp.where(finishing, scores / length_penalty_factor(t + 1, alpha), -jnp.inf)], 1)
    # On a tie the earlier finished hypothesis (first in the concatenation) wins.
    finished_scores, best = jax.lax.top_k(finished_scores, k)
    finished = jnp.take_along_axis(jnp.concatenate([beams['finished'], sequences], 1), best[..., None], axis=1)
    live_scores, keep = jax.lax.top_k(jnp.where(ends, -jnp.inf, scores), k)
    beams = {'live': jnp.take_along_axis(sequences, keep[..., None], axis=1), 'live_scores': live_scores,
             'finished': finished, 'finished_scores': finished_scores}
    rows = jnp.arange(batch)[:, None] * k + jnp.take_along_axis(parent, keep, axis=1)
    return beams, jnp.take_along_axis(token, keep, axis=1).reshape(-1), rows.reshape(-1)

  @jax.jit
  def run(params, model_state, images):
    decoder = _Decoder(model, {'params': params, **model_state}, max_len)
    log_probs, cache = decoder.start(images, k)
    batch = images.shape[0]
    # One live hypothesis (BOS) per image at first: its copies start at -inf, so no expansion repeats.
    first = jnp.where(jnp.arange(k) == 0, 0.0, -jnp.inf)
    beams = {'live': jnp.zeros((batch, k, max_len), jnp.int32), 'live_scores': jnp.tile(first, (batch, 1)),
             'finished': jnp.zeros((batch, k, max_len), jnp.int32),
             'finished_scores': jnp.full((batch, k), -jnp.inf)}

    def body(carry, t):
      cache, log_probs, beams = carry
      beams, tokens, rows = expand(beams, log_probs, t)
      cache = jax.tree.map(lambda x: x[rows] if x.ndim else x, cache)
      log_probs, cache = decoder.step(cache, tokens, t + 1)
      return (cache, log_probs, beams), None

    (_, log_probs, beams), _ = jax.lax.scan(body, (cache, log_probs, beams), jnp.arange(max_len - 1))
    beams, _, _ = expand(beams, log_probs, jnp.asarray(max_len - 1))
    return beams['finished'][:, 0]

  return run
