r"""GPT-2 small (124 M parameters, context 1024) on Shakespeare's plays: an accelerator's benchmark.

  python -m train_lib.main --config=experiments/gpt2_small.py --workdir=/tmp/lamina/gpt2_small
  python -m benchmarks.peers --models=gpt2_small   # lamina against PyTorch, with MFU

GPT-2 small's shapes: 12 layers, 12 heads, width 768, GELU MLP of 3072, LayerNorm,
learned positions, tied embeddings and a 50,257-token vocabulary, here a SentencePiece
BPE of that many pieces learned from the 38 plays' training split (the `shakespeare`
data set; GPT-2's own tokenizer and WebText are not on this machine). Biases are off
(nanoGPT's `bias=False`: slightly better and faster), leaving 124.3 M parameters. bf16
matmuls over f32 weights, AdamW as nanoGPT trains GPT-2 (lr 6e-4, betas 0.9/0.95,
weight decay 0.1, clipping at 1). The plays are 1.2 M tokens, about 38 windows of
1,024 per batch of 32, so a long run overfits: this config is sized for throughput
and MFU on a GPU or TPU (a step of 32 x 1,024 tokens is about 28 TFLOP of matmuls;
the trainer logs MFU against the chip's datasheet peak), seconds a step on a CPU at best.

Args: batch_size=N (default 32), steps=N (default 5000), tiny=True (width 32, 2 layers,
context 64, character tokens on shakespeare_tiny: a smoke test).
"""

import ml_collections

from experiments import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = common.parse_arg(arg, batch_size=32, steps=5000, tiny=False)
  config = common.base_config()
  config.task.name = 'language_model'
  config.data.name = 'shakespeare'
  config.data.tokenizer = 'bpe:50257'
  config.data.seq_len = 1024
  config.data.eval_split = 'validation'
  config.model = ml_collections.ConfigDict({
      'name': 'transformer_lm', 'width': 768, 'num_layers': 12, 'num_heads': 12, 'max_len': 1024,
      'positions': 'learned', 'dropout': 0.0, 'use_bias': False, 'tie_embeddings': True})
  config.batch_size = arg.batch_size
  config.eval_batch_size = arg.batch_size
  config.total_steps = arg.steps
  config.steps_per_call = 10
  config.compute_dtype = 'bfloat16'
  config.optimizer.update(name='adamw', learning_rate=6e-4, b2=0.95, weight_decay=0.1, schedule='cosine',
                          warmup_steps=200, end_factor=0.1, grad_clip_norm=1.0)
  config.update(log_every=100, eval_every=1000)
  config.checkpoint.every = 1000
  if arg.tiny:
    config.data.name = 'shakespeare_tiny'
    config.data.tokenizer = 'char'
    config.data.seq_len = 64
    config.model.update({'width': 32, 'num_layers': 2, 'num_heads': 4, 'max_len': 64})
    config.steps_per_call = 2
    common.shrink_for_tiny(config, steps=2, batch_size=8)
  return config
