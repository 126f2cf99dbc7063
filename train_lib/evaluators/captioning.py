"""Caption decoding over a whole split: how often the captioner writes the reference caption.

  config.evals.captions = {'type': 'captioning', 'beam_size': 4, 'length_penalty': 0.0}

Every image of the split is decoded from scratch (greedy with beam_size=1, else beam search;
train_lib/caption_decoding.py) up to the reference's length without BOS. Writes
'<name>/exact_match', the fraction of captions decoded exactly (every token up to and including
the reference's EOS), and '<name>/token_accuracy', the fraction of the references' tokens (the
words and EOS) the decoded caption has at the same position, over every caption of the split once.
"""

import jax
import numpy as np

import input_pipeline
from train_lib import caption_decoding
from train_lib import mesh as mesh_lib
from train_lib.errors import ConfigError
from train_lib.evaluators import base
from train_lib.tasks.captioning import CaptioningTask
from train_lib.train_state import TrainState


def caption_hits(decoded: np.ndarray, references: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
  """(hits [N], tokens [N]) of decoded ids [N, L - 1] (no BOS) against reference captions [N, L]
  (BOS words EOS PAD...): how many of each reference's tokens after BOS, EOS included, the decoded
  caption has at the same position, and how many there are. A caption is exact when hits == tokens."""
  targets = np.asarray(references)[:, 1:]
  counted = targets != caption_decoding.PAD
  return (np.sum((np.asarray(decoded) == targets) & counted, axis=1), np.sum(counted, axis=1))


class CaptioningEvaluator(base.Evaluator):
  config_fields = {'beam_size': 1, 'length_penalty': 0.0}

  def __init__(self, name, cfg, context):
    super().__init__(name, cfg, context)
    where = f'evals.{name}'
    task = context.task
    if not isinstance(task, CaptioningTask):
      raise ConfigError(f"{where}: type 'captioning' decodes a captioning task's captions; task "
                        f"'{context.config.task.name}' is not one (use task.name='captioning')")
    beam_size, alpha = self.arg('beam_size'), self.arg('length_penalty')
    if isinstance(beam_size, bool) or not isinstance(beam_size, int) or beam_size < 1:
      raise ConfigError(f'{where}.beam_size must be an int >= 1 (1: greedy decoding), got {beam_size!r}')
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or alpha < 0:
      raise ConfigError(f'{where}.length_penalty must be a number >= 0 (0: none), got {alpha!r}')
    max_len = task.tokens_per_example  # the reference's tokens after BOS
    use_ema = context.config.ema_decay > 0

    def decode(state: TrainState, batch: dict) -> dict[str, jax.Array]:
      params = state.ema_params if use_ema else state.params
      images = batch[task.image_key]
      if beam_size == 1:
        decoded = caption_decoding.greedy(task.model, params, images, max_len, model_state=state.model_state)
      else:
        decoded = caption_decoding.beam_search(task.model, params, images, beam_size, max_len, length_penalty=alpha,
                                               model_state=state.model_state)
      return {'decoded': decoded, 'references': batch[task.caption_key], 'mask': batch['mask']}

    self._batches = mesh_lib.batch_sharding(context.mesh, context.rules)
    self._decode = jax.jit(decode, in_shardings=(context.state_shardings, self._batches),
                           out_shardings=mesh_lib.replicated(context.mesh), compiler_options=context.compiler_options)

  def run(self, state: TrainState) -> base.Result:
    exact = hits = tokens = captions = 0
    for local in input_pipeline.make_eval_batches(self.data, split=self.data.eval_split,
                                                  global_batch_size=self.batch_size,
                                                  process_index=jax.process_index(),
                                                  process_count=jax.process_count()):
      out = mesh_lib.replicated_to_host(self._decode(state, mesh_lib.global_batch(local, self._batches)))
      real = np.asarray(out['mask']) > 0
      row_hits, row_tokens = caption_hits(np.asarray(out['decoded'])[real], np.asarray(out['references'])[real])
      exact += int(np.sum(row_hits == row_tokens))
      hits, tokens, captions = hits + int(row_hits.sum()), tokens + int(row_tokens.sum()), captions + int(real.sum())
    return base.Result(scalars={'exact_match': exact / max(captions, 1), 'token_accuracy': hits / max(tokens, 1)})
