"""Cross-modal retrieval over a whole split: each query ranks every item of the other tower.

  config.evals.retrieval = {'type': 'retrieval', 'pairs': (('speech', 'image'), ('image', 'speech')),
                            'ks': (1, 5), 'match': 'label'}

For each (query, gallery) pair of the contrastive task's towers (default: every ordered pair),
the towers embed the whole split (padding dropped) and every query's cosine similarities to all
N gallery items are ranked. Recall@K is the fraction of queries with
a match among their K most similar items: with match='pair' the query's own partner (image-text
retrieval as CLIP reports it), with match='label' any item of the query's label (class-level
retrieval, where many items share a class, as spoken digits do; `label_key` may name an array
feature such as a caption, so that items with the same caption count as matches). Writes
'<name>/<query>_to_<gallery>_recall_at_<K>' for each K.
"""

import itertools

import jax
import numpy as np

from train_lib import contrastive
from train_lib import mesh as mesh_lib
from train_lib.errors import ConfigError
from train_lib.evaluators import base
from train_lib.train_state import TrainState

MATCHES = ('pair', 'label')
_QUERY_CHUNK = 1024  # queries ranked at once: bounds the host similarity block at 1024 x N


def recall_at_k(queries: np.ndarray, gallery: np.ndarray, ks: tuple[int, ...],
                labels: np.ndarray | None = None) -> dict[int, float]:
  """{K: recall@K} of queries [N, D] against gallery [N, D] (row i of each is pair i); with
  `labels` [N, ...] a hit is any of the top K whose label (a class, or a whole row such as a caption)
  equals the query's, else the query's own row."""
  queries, gallery = (np.asarray(contrastive.normalize(x)) for x in (queries, gallery))
  if labels is not None and labels.ndim > 1:  # rows (captions): equal rows are one label
    labels = np.unique(labels.reshape(len(labels), -1), axis=0, return_inverse=True)[1].reshape(-1)
  hits = {k: 0 for k in ks}
  for start in range(0, len(queries), _QUERY_CHUNK):
    similarity = queries[start:start + _QUERY_CHUNK] @ gallery.T
    top = np.argsort(-similarity, axis=1, kind='stable')[:, :max(ks)]
    rows = np.arange(start, start + len(similarity))
    found = labels[top] == labels[rows, None] if labels is not None else top == rows[:, None]
    for k in ks:
      hits[k] += int(found[:, :k].any(axis=1).sum())
  return {k: hits[k] / len(queries) for k in ks}


class RetrievalEvaluator(base.Evaluator):
  config_fields = {'pairs': (), 'ks': (1, 5), 'match': 'pair', 'label_key': 'label'}

  def __init__(self, name, cfg, context):
    super().__init__(name, cfg, context)
    where = f'evals.{name}'
    towers = getattr(context.task, 'towers', None)
    if towers is None:
      raise ConfigError(f"{where}: type 'retrieval' ranks a contrastive task's embeddings; task "
                        f"'{context.config.task.name}' has no towers")
    self.pairs = [tuple(pair) for pair in self.arg('pairs')] or list(itertools.permutations(towers, 2))
    for pair in self.pairs:
      if len(pair) != 2 or pair[0] == pair[1] or not set(pair) <= set(towers):
        raise ConfigError(f'{where}.pairs: {pair!r} must be (query, gallery), two different towers of '
                          f'{", ".join(towers)}')
    needed = tuple(dict.fromkeys(tower for pair in self.pairs for tower in pair))
    self.ks = tuple(self.arg('ks'))
    if not self.ks or not all(isinstance(k, int) and k >= 1 for k in self.ks):
      raise ConfigError(f'{where}.ks must be ints >= 1, e.g. (1, 5), got {self.arg("ks")!r}')
    self.match = self.arg('match')
    if self.match not in MATCHES:
      raise ConfigError(f'{where}.match must be one of {", ".join(MATCHES)}, got {self.match!r}')
    self.label_key = self.arg('label_key') if self.match == 'label' else None
    features = context.task.data_info.get('features', {})
    if self.label_key and features and self.label_key not in features:
      raise ConfigError(f"{where}.match='label' needs labels: no key {self.label_key!r} in the data "
                        f'(keys: {", ".join(features)})')
    task, use_ema = context.task, context.config.ema_decay > 0

    def embed(state: TrainState, batch: dict) -> dict[str, jax.Array]:
      embeddings, _ = task.embed(state.ema_params if use_ema else state.params, state.model_state, batch,
                                 train=False, towers=needed)
      return {**embeddings, 'mask': batch['mask'], **({'labels': batch[self.label_key]} if self.label_key else {})}

    self._embed = jax.jit(embed, in_shardings=(context.state_shardings,
                                               mesh_lib.batch_sharding(context.mesh, context.rules)),
                          out_shardings=mesh_lib.replicated(context.mesh), compiler_options=context.compiler_options)

  def run(self, state: TrainState) -> base.Result:
    arrays = self.split_outputs(self._embed, state)
    scalars = {}
    for query, gallery in self.pairs:
      recalls = recall_at_k(arrays[query], arrays[gallery], self.ks, arrays.get('labels'))
      scalars.update({f'{query}_to_{gallery}_recall_at_{k}': value for k, value in recalls.items()})
    return base.Result(scalars=scalars)
