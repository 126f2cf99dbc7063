"""The contrastive task: towers by name, the pair losses it adds up, padding, and its config errors."""

import jax
import ml_collections
import numpy as np
import pytest
from flax import linen as nn

from train_lib import contrastive, tasks
from train_lib.config_defaults import base_config
from train_lib.errors import ConfigError
from train_lib.train_state import TrainState

pytestmark = pytest.mark.unit

TOWERS = {
    'image': {'input': 'image', 'model': {'name': 'cnn', 'features': (4,), 'hidden': ()}},
    'text': {'input': 'text', 'model': {'name': 'text_encoder', 'vocab_size': 12, 'width': 8, 'num_layers': 1,
                                        'num_heads': 2, 'max_len': 4}},
    'speech': {'input': 'audio', 'model': {'name': 'mlp', 'hidden': (8,)}},
}
DATA_INFO = {'num_classes': 10, 'features': {'image': {}, 'text': {}, 'audio': {}, 'label': {}}}


def _task(**fields) -> tasks.Task:
  config = base_config()
  config.task = ml_collections.ConfigDict({'name': 'contrastive', 'towers': TOWERS, 'embed_dim': 6, **fields})
  return tasks.get(config, DATA_INFO)


def _batch(n: int = 6) -> dict:
  rng = np.random.default_rng(0)
  return {'image': rng.random((n, 8, 8, 1), dtype=np.float32), 'text': rng.integers(1, 12, (n, 4)).astype(np.int32),
          'audio': rng.random((n, 10), dtype=np.float32), 'label': np.arange(n) % 3}


def _state(task, batch) -> tuple[dict, TrainState]:
  # Compiled: eager init and apply of three towers, op by op, is several times slower; with an
  # rbg key, as XLA:CPU compiles threefry's random bits several times slower.
  variables = dict(nn.meta.unbox(jax.jit(task.init_variables)(jax.random.key(0, impl='rbg'), batch)))
  params = variables.pop('params')
  return params, TrainState(step=0, params=params, opt_state=None, model_state=variables, frozen={},
                            ema_params=None, rng=None)


@pytest.mark.parametrize('loss', ['clip', 'siglip'])
def test_the_loss_is_the_mean_of_every_pairs_loss(loss):
  task = _task(loss=loss)
  batch = _batch()
  params, state = _state(task, batch)
  total, (_, metrics) = jax.jit(task.loss)(params, state, batch, jax.random.key(1, impl='rbg'))
  embeddings, _ = jax.jit(lambda p, b: task.embed(p, {}, b, train=False))(params, batch)
  log_scale = params['contrastive']['log_scale']
  pair_losses = []
  for a, b in (('image', 'text'), ('image', 'speech'), ('text', 'speech')):
    if loss == 'clip':
      values, _ = contrastive.clip_loss(embeddings[a], embeddings[b], log_scale)
    else:
      values, _ = contrastive.siglip_loss(embeddings[a], embeddings[b], log_scale, params['contrastive']['bias'])
    pair_losses.append(values.mean())
  np.testing.assert_allclose(total, np.mean(pair_losses), rtol=1e-5)
  assert {'image_to_text_top1', 'text_to_image_top1', 'text_to_speech_top1'} <= set(metrics)
  assert np.exp(-log_scale) == pytest.approx(0.07 if loss == 'clip' else 0.1, rel=1e-6)


def test_clips_logit_scale_stops_at_100():
  task = _task(init_log_scale=6.0)
  batch = _batch()
  params, state = _state(task, batch)
  _, (_, metrics) = jax.jit(task.loss)(params, state, batch, jax.random.key(1, impl='rbg'))
  assert metrics['temperature'] == pytest.approx(0.01, rel=1e-6)


def test_eval_padding_changes_no_real_examples_metrics():
  task = _task(pairs=(('image', 'text'),))
  batch = _batch(8)
  params, state = _state(task, batch)
  real = 5
  padded = {k: v.copy() for k, v in batch.items()}
  padded['mask'] = (np.arange(8) < real).astype(np.float32)
  for key in ('image', 'text', 'audio'):
    padded[key][real:] = batch[key][0]  # duplicates of a real row: leaking into negatives would show
  eval_metrics = jax.jit(task.eval_metrics)
  alone = eval_metrics(params, state, {k: v[:real] for k, v in batch.items()})
  with_padding = eval_metrics(params, state, padded)
  assert set(alone) == {'loss', 'image_to_text_top1', 'text_to_image_top1'}
  for key, values in alone.items():
    np.testing.assert_allclose(with_padding[key][:real], values, rtol=1e-5, err_msg=key)


@pytest.mark.parametrize('fields, message', [
    ({'loss': 'infonce'}, "task.loss must be one of clip, siglip, got 'infonce'"),
    ({'towers': {'image': TOWERS['image']}}, 'needs two or more towers'),
    ({'towers': {**TOWERS, 'image': {'input': 'pixels', 'model': {'name': 'cnn'}}}}, "no key 'pixels' in the data"),
    ({'towers': {**TOWERS, 'image': {'model': {'name': 'cnn'}}}}, "must have exactly 'input' and 'model'"),
    ({'pairs': (('image', 'video'),)}, "task.pairs: \\('image', 'video'\\) must name two different towers"),
    ({'towers': {**TOWERS, 'image': {'input': 'image', 'model': {'name': 'cnnn'}}}}, "unknown model 'cnnn'"),
])
def test_bad_configs_are_one_line(fields, message):
  with pytest.raises(ConfigError, match=message):
    _task(**fields)
