r"""A Mixture-of-Experts character GPT on Tiny Shakespeare: shakespeare_gpt with sparse MoE MLPs.

  python -m train_lib.main --config=experiments/shakespeare_moe.py:experts=8,top_k=2 --workdir=/tmp/lamina/shakespeare_moe
  python -m train_lib.sample --workdir=/tmp/lamina/shakespeare_moe --prompt="ROMEO:" --max_new_tokens=500

Everything but the MLPs is experiments/shakespeare_gpt.py (width 128, 4 layers, 4 heads,
context 64, batch 12, 2,000 steps, the same optimizer). Every `every`-th block's MLP is a
models/moe.py layer of `experts` GELU experts; each token uses `top_k` of them, and each
expert's hidden width is 512 / top_k, so a token's active MLP parameters equal the dense
model's 4 x 128 hidden units (plus a 128 x experts router). Top-1 routes as Switch
(softmax, then top-1); top-2 as Mixtral (top-2, then softmax over the two). The router's
load-balance (1e-2) and z-loss (1e-3) join the training loss; train metrics hold each MoE
block's expert load fractions, the largest load over the mean, the dropped fraction and
both auxiliary losses.

Args: experts=N (4, 8), top_k=1|2, dispatch=capacity|dropless, capacity_factor=F,
router=auto|softmax_topk|topk_softmax, every=N, steps_per_call=K,
compute_dtype=auto|float32|bfloat16, tiny=True.
"""

import ml_collections

from experiments import common, shakespeare_gpt
from models import moe, routing


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = common.parse_arg(arg, experts=8, top_k=2, dispatch='capacity', capacity_factor=1.25, router='auto',
                         every=1, steps_per_call=50, compute_dtype='auto', tiny=False)
  common.choose('shakespeare_moe', 'dispatch', arg.dispatch, dict.fromkeys(moe.DISPATCHES))
  router = arg.router if arg.router != 'auto' else ('softmax_topk' if arg.top_k == 1 else 'topk_softmax')
  common.choose('shakespeare_moe', 'router', router, dict.fromkeys(routing.ORDERS))
  if not 1 <= arg.top_k <= arg.experts or 512 % arg.top_k:
    raise common.ConfigError(f'shakespeare_moe: top_k={arg.top_k} must divide 512 and be at most experts={arg.experts}')
  config = shakespeare_gpt.get_config(f'steps_per_call={arg.steps_per_call},compute_dtype={arg.compute_dtype},'
                                      f'tiny={arg.tiny}')
  config.model.moe = ml_collections.ConfigDict({
      'num_experts': arg.experts, 'top_k': arg.top_k, 'every': arg.every, 'mlp_dim': 512 // arg.top_k,
      'dispatch': arg.dispatch, 'capacity_factor': arg.capacity_factor, 'router': router,
      'load_balance_weight': 1e-2, 'z_loss_weight': 1e-3})
  return config
