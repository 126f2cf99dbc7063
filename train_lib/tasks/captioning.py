"""Image captioning by teacher forcing: a captioner (models/captioner.py) predicts every caption token
from the image and the tokens before it.

Batches hold images (`image_key`) and captions [B, L] int32 (`caption_key`): BOS, the words, EOS,
then PAD, the ids of the data set's own WordTokenizer. The decoder reads caption[:, :-1] and
predicts caption[:, 1:]; the loss is the mean cross-entropy over the targets that are not PAD
(the words and EOS), token_accuracy the fraction of them the argmax predicts. Evaluation reports
the same, teacher-forced, each caption weighted by its targets, so the averages are over every
target token of the split once. Decoding whole captions is the `captioning` evaluator's.

Task fields: image_key ('image'), caption_key ('caption').
"""

import jax
import jax.numpy as jnp
import ml_collections

import models
from input_pipeline.tokenizers import WordTokenizer
from models.captioner import Captioner
from train_lib.errors import ConfigError
from train_lib.tasks import base
from train_lib.tasks.classification import build_model
from train_lib.tasks.language_model import token_means


class CaptioningTask(base.Task):
  config_fields = {'image_key': 'image', 'caption_key': 'caption'}
  eval_count_name = 'num_tokens'

  def __init__(self, config: ml_collections.ConfigDict, data_info: dict):
    super().__init__(config, data_info)
    self.image_key, self.caption_key = self.arg('image_key'), self.arg('caption_key')
    features = data_info.get('features', {})
    for field in ('image_key', 'caption_key'):
      if self.arg(field) not in features:
        raise ConfigError(f"task.{field}: no key {self.arg(field)!r} in the data (keys: {', '.join(features)})")
    caption = features[self.caption_key]
    if len(caption['shape']) != 1 or not caption['dtype'].startswith('int') or caption['shape'][0] < 2:
      raise ConfigError(f'task.caption_key: {self.caption_key!r} must hold captions as int ids [L >= 2] '
                        f"(BOS words EOS PAD...), got {caption['dtype']} {tuple(caption['shape'])}")
    if 'vocab_size' not in data_info:
      raise ConfigError(f"task 'captioning' needs caption data whose builder carries its tokenizer (TOKENIZER), "
                        f"such as shapes_captions; data.name {config.data.name!r} has none")
    if config.model.get('name') not in models.names(of=Captioner):
      raise ConfigError(f"task 'captioning' trains a captioner; model.name {config.model.get('name')!r} is not "
                        f"one (use {', '.join(models.names(of=Captioner))})")
    # The decoder reads L - 1 tokens: BOS and all but the last.
    self.tokens_per_example = caption['shape'][0] - 1
    max_len = config.model.get('max_len', Captioner.max_len)
    if max_len < self.tokens_per_example:
      raise ConfigError(f'model.max_len={max_len} is shorter than the {self.tokens_per_example} caption tokens the '
                        f'decoder reads; set model.max_len >= {self.tokens_per_example}')
    self.model = build_model(config.model, config, vocab_size=data_info['vocab_size'])

  def init_variables(self, rng: jax.Array, batch: dict) -> dict:
    params_rng, dropout_rng = jax.random.split(rng)
    return self.model.init({'params': params_rng, 'dropout': dropout_rng}, batch[self.image_key],
                           batch[self.caption_key][:, :-1], train=False)

  def logits(self, params, model_state, batch, *, train: bool, rng: jax.Array | None = None):
    """(logits [B, L - 1, vocab] for caption[:, 1:], updated model_state): teacher forcing."""
    args = ({'params': params, **model_state}, batch[self.image_key], batch[self.caption_key][:, :-1])
    if not train:
      return self.model.apply(*args, train=False), model_state
    # An encoder with BatchNorm (a ResNet) updates its statistics.
    return self.model.apply(*args, train=True, rngs={'dropout': rng}, mutable=list(model_state))

  def targets(self, batch: dict) -> tuple[jax.Array, jax.Array]:
    """(targets caption[:, 1:], weights: 1 where a target is a word or EOS, 0 for PAD)."""
    targets = batch[self.caption_key][:, 1:]
    return targets, (targets != WordTokenizer.PAD).astype(jnp.float32)

  def loss(self, params, state, batch, rng):
    logits, model_state = self.logits(params, state.model_state, batch, train=True, rng=rng)
    loss, accuracy = token_means(logits, *self.targets(batch))
    return loss, (model_state, {'token_accuracy': accuracy})

  def eval_metrics(self, params, state, batch):
    logits, _ = self.logits(params, state.model_state, batch, train=False)
    loss, accuracy = token_means(logits, *self.targets(batch), axis=-1)
    return {'loss': loss, 'token_accuracy': accuracy}

  def eval_weights(self, batch: dict) -> jax.Array:
    return self.targets(batch)[1].sum(-1)
