"""Next-token prediction on token windows: any models/ LM (Transformer, LSTM, GRU).

Batches come from `input_pipeline.token_windows`: `inputs` and `targets` [B, L]
int32 and `weights` [B, L] (0 for padding past the end of the text). The loss is
the mean cross-entropy over real target tokens; evaluation weights each window by
its real tokens, so eval/loss is the mean over every validation token exactly once.
What the model sows (an MoE router's auxiliary losses, train_lib/sown.py) joins the
training loss, and its metrics (expert loads, dropped fraction) the train metrics.
"""

import jax
import jax.numpy as jnp
import ml_collections
import optax

from train_lib import sown
from train_lib.tasks import base
from train_lib.tasks.classification import build_model


class LanguageModelTask(base.Task):
  config_fields = {}
  eval_count_name = 'num_tokens'

  def __init__(self, config: ml_collections.ConfigDict, data_info: dict):
    super().__init__(config, data_info)
    self.tokens_per_example = config.data.seq_len
    self.model = build_model(config.model, config, vocab_size=data_info['vocab_size'])

  def init_variables(self, rng: jax.Array, batch: dict) -> dict:
    params_rng, dropout_rng = jax.random.split(rng)
    return self.model.init({'params': params_rng, 'dropout': dropout_rng}, batch['inputs'], train=False)

  def inputs(self, batch: dict) -> jax.Array:
    """What the model reads: the token windows."""
    return batch['inputs']

  def logits(self, params, model_state, batch, *, train: bool, rng: jax.Array | None = None):
    """(logits [B, L, vocab], model_state) of the model on the batch's token windows."""
    rngs = {'dropout': rng} if train else None
    return self.model.apply({'params': params, **model_state}, self.inputs(batch), train=train, rngs=rngs), model_state

  def logit_weights(self, batch: dict) -> jax.Array:
    """How much each position of `logits` counts in a training loss: real target tokens only."""
    return batch['weights']

  def supervised_loss(self, logits: jax.Array, batch: dict) -> tuple[jax.Array, base.Metrics]:
    """(mean cross-entropy over real target tokens, {'accuracy'})."""
    loss, accuracy = token_means(logits, batch['targets'], batch['weights'])
    return loss, {'accuracy': accuracy}

  def loss(self, params, state, batch, rng):
    logits, model_state, aux_loss, sown_metrics = sown.apply(
        self.model, {'params': params, **state.model_state}, self.inputs(batch), train=True, rngs={'dropout': rng})
    loss, metrics = self.supervised_loss(logits, batch)
    return loss + aux_loss, ({**state.model_state, **model_state}, {**metrics, **sown_metrics})

  def eval_metrics(self, params, state, batch):
    logits, _ = self.logits(params, state.model_state, batch, train=False)
    loss, accuracy = token_means(logits, batch['targets'], batch['weights'], axis=-1)
    return {'loss': loss, 'accuracy': accuracy}

  def eval_weights(self, batch: dict) -> jax.Array:
    return batch['weights'].sum(-1)


def token_means(logits: jax.Array, targets: jax.Array, weights: jax.Array,
                axis: int | None = None) -> tuple[jax.Array, jax.Array]:
  """(cross-entropy, argmax accuracy) of logits [..., L, V] against targets [..., L], averaged with
  `weights` [..., L] over `axis` (None: every token of the batch; -1: each sequence's own)."""
  total = jnp.maximum(weights.sum(axis), 1.0)
  losses = optax.softmax_cross_entropy_with_integer_labels(logits.astype(jnp.float32), targets)
  hits = (logits.argmax(-1) == targets).astype(jnp.float32)
  return (losses * weights).sum(axis) / total, (hits * weights).sum(axis) / total
