r"""A character-level GPT on Tiny Shakespeare: nanoGPT's CPU configuration.

  python -m train_lib.main --config=experiments/shakespeare_gpt.py --workdir=/tmp/lamina/shakespeare_gpt
  python -m train_lib.sample --workdir=/tmp/lamina/shakespeare_gpt --prompt="ROMEO:" --max_new_tokens=500

Defaults equal nanoGPT's "train on a CPU" command for shakespeare_char: 4 layers,
4 heads, width 128, context 64, batch 12, 2,000 iterations, dropout 0, AdamW
(lr 1e-3, betas 0.9/0.99, weight decay 0.1 on matrices), 100 warm-up steps then
cosine to 1e-4, gradient clipping at 1, no biases, tied embeddings. nanoGPT
reports validation loss 1.88 for it (its 65-character vocabulary; ours is 66).
Matmuls run in bf16 (f32 accumulation, f32 weights) where the machine multiplies
bf16 fast (compute_dtype=auto), else in f32 as nanoGPT does on a CPU.

Args: tokenizer=char|byte|bpe:N|unigram:N, positions=learned|rotary, steps_per_call=K,
compute_dtype=auto|float32|bfloat16, tiny=True.
"""

import ml_collections

from experiments import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = common.parse_arg(arg, tokenizer='char', positions='learned', steps_per_call=50,
                         compute_dtype='auto', tiny=False)
  config = common.base_config()
  config.task.name = 'language_model'
  config.data.name = 'shakespeare_tiny'
  config.data.tokenizer = arg.tokenizer
  config.data.seq_len = 64
  config.data.eval_split = 'validation'
  config.model = ml_collections.ConfigDict({
      'name': 'transformer_lm', 'width': 128, 'num_layers': 4, 'num_heads': 4, 'max_len': 64,
      'positions': arg.positions, 'dropout': 0.0, 'use_bias': False, 'tie_embeddings': True})
  config.batch_size = 12
  config.eval_batch_size = 256
  config.total_steps = 2000
  config.steps_per_call = arg.steps_per_call
  config.compute_dtype = arg.compute_dtype
  config.optimizer.name = 'adamw'
  config.optimizer.learning_rate = 1e-3
  config.optimizer.b2 = 0.99
  config.optimizer.weight_decay = 0.1
  config.optimizer.schedule = 'cosine'
  config.optimizer.warmup_steps = 100
  config.optimizer.end_factor = 0.1
  config.optimizer.grad_clip_norm = 1.0
  config.log_every = 250
  config.eval_every = 1000
  config.checkpoint.every = 1000
  if arg.tiny:
    config.steps_per_call = 2
    common.shrink_for_tiny(config, steps=2, batch_size=8)
  return config
