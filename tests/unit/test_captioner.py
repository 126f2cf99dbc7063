"""The captioner: cross-attention in the shared blocks (the LM and ViT unchanged), cached decoding
equal to teacher forcing, greedy and beam-search decoding checked against each other and against
brute force."""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

import models
from train_lib import caption_decoding, sampling
from train_lib.caption_decoding import BOS, EOS, PAD

WORDS = 2  # ids 4, 5 after PAD, BOS, EOS, UNK
VOCAB = 4 + WORDS


def _images(n: int, seed: int = 0) -> np.ndarray:
  return np.random.default_rng(seed).normal(size=(n, 8, 8, 3)).astype(np.float32)


@functools.cache
def _captioner(max_len: int = 6, scale: float = 8.0) -> tuple[nn.Module, dict]:
  """A tiny random captioner whose weights are scaled up, so its next-token distributions are far
  from uniform and captions end at different lengths."""
  model = models.get('captioner', vocab_size=VOCAB, width=16, num_heads=2, num_layers=2, max_len=max_len,
                     encoder={'name': 'vit', 'patch_size': 4, 'width': 8, 'num_heads': 2, 'num_layers': 1})
  init = jax.jit(lambda: model.init(jax.random.PRNGKey(1), _images(1), jnp.zeros((1, max_len), jnp.int32),
                                    train=False))
  params = jax.tree.map(lambda p: p * scale, nn.meta.unbox(init())['params'])
  return model, params


@functools.cache
def _forward(model: nn.Module):
  return jax.jit(lambda params, images, tokens: model.apply({'params': params}, images, tokens, train=False))


def test_lm_and_vit_outputs_are_unchanged_by_cross_attention():
  """Golden values from before the blocks could cross-attend: the same parameters, the same logits."""
  lm = models.get('transformer_lm', vocab_size=11, width=16, num_heads=2, num_layers=2, max_len=8, num_kv_heads=1)
  tokens = jnp.asarray(np.arange(12).reshape(2, 6) % 11, jnp.int32)
  variables = jax.jit(lambda: lm.init(jax.random.PRNGKey(0), tokens, train=False))()
  assert set(variables['params']['block_0']) == {'attention', 'attention_norm', 'mlp', 'mlp_norm'}
  logits = jax.jit(lambda v: lm.apply(v, tokens, train=False))(variables)
  np.testing.assert_allclose(logits[:, -1, :4], [[-0.098619, -0.130062, -0.061306, 0.16447],
                                                 [0.233313, -0.070189, -0.049734, 0.076832]], atol=2e-5)
  vit = models.get('vit', num_classes=5, width=16, num_heads=2, num_layers=2, patch_size=4)
  x = jnp.asarray(np.random.default_rng(0).normal(size=(2, 8, 8, 3)), jnp.float32)
  variables = jax.jit(lambda: vit.init(jax.random.PRNGKey(0), x, train=False))()
  np.testing.assert_allclose(jax.jit(lambda v: vit.apply(v, x, train=False))(variables),
                             [[-0.611083, -0.332804, -0.099164, 0.194067, 0.100642],
                              [0.379527, -1.588301, -0.64441, 0.230378, 0.149216]], atol=2e-5)


def test_captions_read_the_image_and_only_earlier_tokens():
  model, params = _captioner()
  images = _images(2)
  tokens = np.array([[BOS, 4, 5, 4, EOS, PAD]] * 2)
  logits = _forward(model)(params, images, tokens)
  assert logits.shape == (2, 6, VOCAB) and logits.dtype == jnp.float32
  assert not np.allclose(logits[0], logits[1])  # two images, one caption: two predictions
  later = tokens.copy()
  later[:, 3] = 5
  np.testing.assert_allclose(_forward(model)(params, images, later)[:, :3], logits[:, :3], atol=1e-5)


def test_cached_step_by_step_logits_equal_teacher_forcing():
  model, params = _captioner()
  images = _images(3)
  tokens = np.array([[BOS, 4, 5, 4, 4, EOS], [BOS, 5, EOS, PAD, PAD, PAD], [BOS, 4, 4, 5, 5, 4]], np.int32)
  full = _forward(model)(params, images, tokens)
  decoder = model.clone(decode=True)

  @jax.jit
  def stepwise(params, images, tokens):
    memory = model.apply({'params': params}, images, train=False, method='encode')
    cache = sampling.empty_cache(decoder, 3, 6, memory=memory, method='next_token_logits')
    out = []
    for t in range(tokens.shape[1]):
      positions = jnp.full((3, 1), t)
      logits, state = decoder.apply({'params': params, 'cache': cache}, tokens[:, t:t + 1], positions, train=False,
                                    memory=memory if t == 0 else None, method='next_token_logits',
                                    mutable=['cache'])
      cache = state['cache']
      out.append(logits[:, 0])
    return jnp.stack(out, axis=1)

  np.testing.assert_allclose(stepwise(params, images, tokens), full, rtol=1e-5, atol=1e-5)


def _scores(model, params, image: np.ndarray, captions: list[list[int]], alpha: float = 0.0) -> np.ndarray:
  """Each caption's log-probability under teacher forcing over the length penalty (brute force's
  score), from one forward pass: captions padded at the end, which no earlier position sees."""
  tokens = np.zeros((len(captions), model.max_len), np.int32)
  for row, caption in enumerate(captions):
    tokens[row, :len(caption)] = [BOS, *caption[:-1]]
  log_probs = np.asarray(caption_decoding.token_log_probs(
      _forward(model)(params, np.repeat(image[None], len(captions), 0), tokens)))
  return np.array([sum(log_probs[row, i, token] for i, token in enumerate(caption))
                   / float(caption_decoding.length_penalty_factor(len(caption), alpha))
                   for row, caption in enumerate(captions)])


def _trim(ids: np.ndarray) -> list[int]:
  """A decoded row up to and including EOS (all of it without one), checking PAD follows EOS."""
  ids = ids.tolist()
  end = ids.index(EOS) + 1 if EOS in ids else len(ids)
  assert all(i == PAD for i in ids[end:]) and PAD not in ids[:end] and BOS not in ids
  return ids[:end]


def test_greedy_takes_the_most_likely_token_at_every_step():
  model, params = _captioner()
  images = _images(4, seed=2)
  out = np.asarray(caption_decoding.greedy(model, params, images, 6))
  assert out.shape == (4, 6)
  for image, row in zip(images, out):
    caption = _trim(row)
    tokens = np.array([[BOS, *caption[:-1]]], np.int32)
    log_probs = caption_decoding.token_log_probs(_forward(model)(params, image[None], tokens))[0]
    assert caption == np.asarray(log_probs.argmax(-1)).tolist()


def test_beam_search_of_width_one_is_greedy_decoding():
  model, params = _captioner()
  images = _images(8, seed=3)
  greedy = np.asarray(caption_decoding.greedy(model, params, images, 6))
  lengths = {len(_trim(row)) for row in greedy}
  assert len(lengths) > 1  # captions of several lengths, some ending early
  for alpha in (0.0, 0.6):
    np.testing.assert_array_equal(
        caption_decoding.beam_search(model, params, images, beam_size=1, max_len=6, length_penalty=alpha), greedy)


@pytest.mark.parametrize('alpha', [0.0, 1.0])
def test_a_wide_beam_finds_the_best_caption_of_all(alpha):
  max_len = 3
  model, params = _captioner(max_len=max_len)
  images = _images(3, seed=4)
  # The tokens a caption may hold; captions end at EOS or after max_len tokens.
  tokens = [EOS, 3, *range(4, VOCAB)]
  words = tokens[1:]
  candidates = [[*body, EOS] for n in range(max_len) for body in itertools.product(words, repeat=n)]
  candidates += [list(body) for body in itertools.product(words, repeat=max_len)]
  # As wide as every expansion of every live hypothesis: beam search is exhaustive.
  width = len(words) ** (max_len - 1) * len(tokens)
  out = np.asarray(caption_decoding.beam_search(model, params, images, beam_size=width, max_len=max_len,
                                                length_penalty=alpha))
  narrow = np.asarray(caption_decoding.beam_search(model, params, images, beam_size=2, max_len=max_len,
                                                   length_penalty=alpha))
  for image, row, narrow_row in zip(images, out, narrow):
    scores = _scores(model, params, image, [*candidates, _trim(narrow_row)], alpha)
    assert _trim(row) == candidates[int(np.argmax(scores[:-1]))]
    assert scores[-1] <= scores[:-1].max() + 1e-6


def _reference_beam(model, params, image: np.ndarray, k: int, max_len: int, alpha: float) -> list[int]:
  """Beam search on the host from teacher-forced log-probabilities (no cache): expand every live
  hypothesis, keep the 2K best expansions, finish the ending ones among the K best, and stop adding
  finished ones once K are in and the worst beats the best live hypothesis's bound."""
  live, finished = [([], 0.0)], []
  for t in range(max_len):
    tokens = np.zeros((len(live), model.max_len), np.int32)
    for row, (sequence, _) in enumerate(live):
      tokens[row, :t + 1] = [BOS, *sequence]
    log_probs = np.asarray(caption_decoding.token_log_probs(
        _forward(model)(params, np.repeat(image[None], len(live), 0), tokens)))[:, t]
    expansions = sorted(((score + log_probs[row, token], [*sequence, token])
                         for row, (sequence, score) in enumerate(live) for token in range(VOCAB)
                         if np.isfinite(log_probs[row, token])), key=lambda e: -e[0])[:2 * k]
    penalty = float(caption_decoding.length_penalty_factor(t + 1, alpha))
    ends = lambda sequence: sequence[-1] == EOS or t == max_len - 1
    if not (len(finished) == k and finished[-1][0] >= live[0][1] / penalty):
      finished += [(score / penalty, sequence) for score, sequence in expansions[:k] if ends(sequence)]
      finished = sorted(finished, key=lambda f: -f[0])[:k]
    live = [(sequence, score) for score, sequence in expansions if not ends(sequence)][:k]
  return finished[0][1]


@pytest.mark.parametrize('alpha', [0.0, 0.6])
def test_beam_search_equals_a_host_reference_as_beams_reorder(alpha):
  model, params = _captioner()
  images = _images(6, seed=5)
  for k in (2, 3):
    out = np.asarray(caption_decoding.beam_search(model, params, images, beam_size=k, max_len=6,
                                                  length_penalty=alpha))
    for image, row in zip(images, out):
      assert _trim(row) == _reference_beam(model, params, image, k, 6, alpha)


def test_decoding_checks_its_arguments_before_compiling():
  model, params = _captioner()
  with pytest.raises(ValueError, match=r'max_len must be in \[1, 6\]'):
    caption_decoding.greedy(model, params, _images(1), 7)
  with pytest.raises(ValueError, match='beam_size must be >= 1'):
    caption_decoding.beam_search(model, params, _images(1), beam_size=0, max_len=4)


def test_bad_encoder_is_one_line_naming_the_valid_ones():
  with pytest.raises(ValueError, match=r"^encoder must be .* name of resnet, .*vit.*got \{'name': 'cnn'\}$"):
    models.get('captioner', vocab_size=VOCAB, encoder={'name': 'cnn'})
  with pytest.raises(ValueError, match="^encoder: model 'vit' has no field 'depth'"):
    models.get('captioner', vocab_size=VOCAB, encoder={'name': 'vit', 'depth': 2})


def test_a_resnet_encoder_gives_one_memory_token():
  model = models.get('captioner', vocab_size=VOCAB, width=16, num_heads=2, num_layers=1, max_len=4,
                     encoder={'name': 'resnet', 'stage_sizes': (1,), 'width': 4, 'stem': 'cifar'})
  memory, _ = jax.eval_shape(lambda: model.init_with_output(jax.random.PRNGKey(0), _images(2), train=False,
                                                            method='encode'))
  assert memory.shape == (2, 1, 16)


def _task_config(**task):
  from train_lib.config_defaults import base_config
  config = base_config()
  config.data.name = 'tiny_captions'
  config.task = {'name': 'captioning', **task}
  config.model = {'name': 'captioner', 'width': 16, 'num_heads': 2, 'num_layers': 1, 'max_len': 8,
                  'encoder': {'name': 'vit', 'patch_size': 4, 'width': 8, 'num_heads': 2, 'num_layers': 1}}
  return config


_DATA_INFO = {'vocab_size': VOCAB, 'features': {'image': {'shape': (8, 8, 3), 'dtype': 'float32'},
                                                'caption': {'shape': (6,), 'dtype': 'int32'}}}


def test_captioning_loss_is_the_cross_entropy_over_the_non_pad_targets():
  from train_lib import tasks
  from train_lib.train_state import TrainState
  task = tasks.get(_task_config(), _DATA_INFO)
  captions = np.array([[BOS, 4, 5, EOS, PAD, PAD], [BOS, 5, 5, 4, 4, EOS]], np.int32)
  batch = {'image': _images(2), 'caption': captions}
  params = nn.meta.unbox(jax.jit(task.init_variables)(jax.random.PRNGKey(0), batch))['params']
  state = TrainState(step=0, params=params, opt_state=None, model_state={}, frozen={}, ema_params=None, rng=None)
  loss, (_, metrics) = jax.jit(task.loss)(params, state, batch, jax.random.PRNGKey(1))
  per_example = jax.jit(task.eval_metrics)(params, state, batch)

  logits = np.asarray(_forward(task.model)(params, batch['image'], captions[:, :-1]), np.float64)
  log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  targets = captions[:, 1:]
  nll = -np.take_along_axis(log_probs, targets[..., None], -1)[..., 0]
  real = targets != PAD
  hits = (logits.argmax(-1) == targets) & real
  np.testing.assert_allclose(loss, nll[real].mean(), rtol=1e-5)
  np.testing.assert_allclose(metrics['token_accuracy'], hits.sum() / real.sum(), rtol=1e-6)
  np.testing.assert_allclose(per_example['loss'], [nll[i][real[i]].mean() for i in range(2)], rtol=1e-5)
  np.testing.assert_array_equal(task.eval_weights(batch), [3, 5])
  assert task.tokens_per_example == 5


@pytest.mark.parametrize('task,data_info,needle', [
    ({'caption_key': 'text'}, _DATA_INFO, "task.caption_key: no key 'text' in the data (keys: image, caption)"),
    ({'image_keys': 'x'}, _DATA_INFO, 'image_keys'),
    ({}, {**_DATA_INFO, 'vocab_size': None}, None),
])
def test_captioning_task_config_errors_are_one_line(task, data_info, needle):
  from train_lib import tasks
  from train_lib.errors import ConfigError
  if data_info['vocab_size'] is None:
    data_info = {k: v for k, v in data_info.items() if k != 'vocab_size'}
    needle = 'needs caption data whose builder carries its tokenizer'
  with pytest.raises(ConfigError) as e:
    tasks.get(_task_config(**task), data_info)
  assert needle in str(e.value) and '\n' not in str(e.value)


def test_caption_hits_count_the_reference_words_and_eos_by_position():
  from train_lib.evaluators.captioning import caption_hits
  references = np.array([[BOS, 4, 5, EOS, PAD, PAD],
                         [BOS, 4, 5, EOS, PAD, PAD],
                         [BOS, 4, 5, 4, 5, EOS],
                         [BOS, EOS, PAD, PAD, PAD, PAD]])
  decoded = np.array([[4, 5, EOS, PAD, PAD],  # exact
                      [4, 5, 4, EOS, PAD],  # runs on past the reference's EOS: 2 of 3
                      [5, 5, 4, 4, 5],  # no EOS: 2 of 5
                      [4, EOS, PAD, PAD, PAD]])  # 0 of 1
  hits, tokens = caption_hits(decoded, references)
  assert hits.tolist() == [3, 2, 2, 0] and tokens.tolist() == [3, 3, 5, 1]
  assert (hits == tokens).tolist() == [True, False, False, False]
