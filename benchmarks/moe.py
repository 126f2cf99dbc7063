r"""MoE step time against the number of experts, at fixed top-k and fixed active parameters.

  python -m benchmarks.moe [--experts=1,4,8,16] [--top_k=1] [--dispatch=capacity,dropless]
                           [--batch=32] [--seq_len=64] [--compute_dtype=float32] [--json=FILE]

The model is experiments/shakespeare_gpt.py's Transformer (width 128, 4 layers, 4 heads) with
every MLP a models/moe.py layer of N GELU experts, each 512 / top_k wide, so a token's active
parameters are the dense model's whatever N is (the router adds 128 x N). Each row times a
jitted train step (forward, backward, Adam update, on random tokens): the fastest of repeated
calls after a warm-up (train_lib.accounting.best_seconds), and reports it against the 1-expert
row (or the smallest N with N >= top_k) of the same dispatch, next to the dense model's step.
Capacity dispatch should stay flat in N; dropless (jax.lax.ragged_dot) grows with N on CPU,
where XLA lowers the grouped matmul to a masked dense one.
"""

import json

import jax
import jax.numpy as jnp
import optax
from absl import app, flags
from flax import linen as nn
from flax.core import FrozenDict

from benchmarks import machine
from models import moe as moe_lib
from models.transformer import TransformerLM
from train_lib import accounting, sown

flags.DEFINE_list('experts', ['1', '4', '8', '16'], 'Numbers of experts.')
flags.DEFINE_integer('top_k', 1, 'Experts per token (rows with fewer experts are skipped).')
flags.DEFINE_list('dispatch', list(moe_lib.DISPATCHES), 'Dispatch modes.')
flags.DEFINE_float('capacity_factor', 1.25, 'Capacity dispatch: slots per expert over the even share.')
flags.DEFINE_integer('batch', 32, 'Sequences per step.')
flags.DEFINE_integer('seq_len', 64, 'Tokens per sequence.')
flags.DEFINE_string('compute_dtype', 'float32', 'float32 or bfloat16.')
flags.DEFINE_string('json', None, 'Also write the rows here.')

VOCAB, WIDTH, DENSE_MLP = 66, 128, 512


def _step_seconds(moe: dict | None) -> tuple[float, float]:
  """(seconds of one train step, model FLOPs of it) for the model with these MoE fields (None: dense)."""
  dtype = jnp.dtype(flags.FLAGS.compute_dtype)
  model = TransformerLM(vocab_size=VOCAB, width=WIDTH, num_layers=4, num_heads=4, max_len=flags.FLAGS.seq_len,
                        moe=FrozenDict(moe) if moe else None, dtype=dtype)
  tokens = jax.random.randint(jax.random.PRNGKey(0), (flags.FLAGS.batch, flags.FLAGS.seq_len + 1), 0, VOCAB)
  params = nn.unbox(sown.strip(model.init(jax.random.PRNGKey(1), tokens[:, :-1], train=False))['params'])
  tx = optax.adam(1e-3)

  def loss(params, tokens):
    logits, _, aux_loss, _ = sown.apply(model, {'params': params}, tokens[:, :-1], train=True)
    return optax.softmax_cross_entropy_with_integer_labels(logits, tokens[:, 1:]).mean() + aux_loss

  def step(params, opt_state, tokens):
    grads = jax.grad(loss)(params, tokens)
    updates, opt_state = tx.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state

  state = [params, tx.init(params)]
  run = jax.jit(step, donate_argnums=(0, 1))

  def call():
    state[:] = run(*state, tokens)
    jax.block_until_ready(state)

  return accounting.best_seconds(call, repeats=20, budget_s=3.0), accounting.matmul_flops(step, *state, tokens)


def main(argv):
  del argv
  flag = flags.FLAGS
  top_k = flag.top_k
  dense_s, dense_flops = _step_seconds(None)
  rows = [{'dispatch': 'dense', 'experts': 0, 'step_ms': 1e3 * dense_s, 'vs_first': 1.0, 'vs_dense': 1.0,
           'gflops_per_step': dense_flops / 1e9}]
  for dispatch in flag.dispatch:
    first = None
    for experts in (int(e) for e in flag.experts):
      if experts < top_k:
        continue
      seconds, flops = _step_seconds({'num_experts': experts, 'top_k': top_k, 'mlp_dim': DENSE_MLP // top_k,
                                      'dispatch': dispatch, 'capacity_factor': flag.capacity_factor,
                                      'router': 'softmax_topk'})
      first = first or seconds
      rows.append({'dispatch': dispatch, 'experts': experts, 'step_ms': 1e3 * seconds, 'vs_first': seconds / first,
                   'vs_dense': seconds / dense_s, 'gflops_per_step': flops / 1e9})
  print(f'MoE train step, top_k={top_k}, batch {flag.batch} x {flag.seq_len} tokens, {flag.compute_dtype}, '
        f'capacity_factor={flag.capacity_factor}; {machine.describe()}')
  print(f'{"dispatch":>9} {"experts":>7} {"step ms":>8} {"vs first":>8} {"vs dense":>8} {"GFLOP/step":>10}')
  for r in rows:
    print(f'{r["dispatch"]:>9} {r["experts"] or "-":>7} {r["step_ms"]:8.2f} {r["vs_first"]:8.2f} {r["vs_dense"]:8.2f} '
          f'{r["gflops_per_step"]:10.3f}')
  if flag.json:
    with open(flag.json, 'w') as f:
      json.dump({'machine': machine.describe(), 'rows': rows}, f, indent=1)


if __name__ == '__main__':
  app.run(main)
