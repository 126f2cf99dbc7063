r"""A Transformer language model on LM1B (One Billion Word), at real scale.

  python -m train_lib.main --config=experiments/lm1b_transformer.py --workdir=gs://BUCKET/lm1b

Needs tfds `lm1b` prepared as array_record in data_dir / $TFDS_DATA_DIR (run
`tfds build lm1b --file_format=array_record` on a machine with internet). A
32k-piece SentencePiece BPE model is learned from its training split on first
use and saved beside it. The model follows current practice rather than the 2017
original: rotary positions, RMSNorm, SwiGLU, grouped-query attention (8 query,
4 key/value heads), untied embeddings, AdamW with warmup and cosine decay;
parameters and optimizer state are FSDP-sharded.

Offline here it runs only `tiny=True`, on lamina's synthetic_text set with byte
tokens: a smoke test of the config, not a result.
"""

import ml_collections

from experiments import common


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = common.parse_arg(arg, tiny=False)
  config = common.base_config()
  config.task.name = 'language_model'
  config.data.name = 'lm1b'
  config.data.tokenizer = 'bpe:32000'
  config.data.seq_len = 256
  config.data.window_stride = 256  # 30M sentences: non-overlapping windows, one pass per epoch
  config.model = ml_collections.ConfigDict({
      'name': 'transformer_lm', 'width': 512, 'num_layers': 8, 'num_heads': 8, 'num_kv_heads': 4,
      'mlp_dim': 1536, 'mlp': 'swiglu', 'norm': 'rmsnorm', 'positions': 'rotary', 'max_len': 256,
      'tie_embeddings': False, 'dropout': 0.0})
  config.batch_size = 256
  config.eval_batch_size = 256
  config.total_steps = 100_000
  config.steps_per_call = 10
  config.compute_dtype = 'bfloat16'
  config.mesh.fsdp = -1
  config.mesh.data = 1
  config.optimizer.name = 'adamw'
  config.optimizer.learning_rate = 1e-3
  config.optimizer.b2 = 0.95
  config.optimizer.weight_decay = 0.1
  config.optimizer.schedule = 'cosine'
  config.optimizer.warmup_steps = 2000
  config.optimizer.end_factor = 0.1
  config.optimizer.grad_clip_norm = 1.0
  config.log_every = 100
  config.eval_every = 5000
  config.checkpoint.every = 5000
  if arg.tiny:
    config.data.name = 'synthetic_text'
    config.data.tokenizer = 'byte'
    config.data.seq_len = 32
    config.data.eval_split = 'validation[:20]'
    config.model.update({'width': 32, 'num_layers': 2, 'num_heads': 4, 'num_kv_heads': 2, 'mlp_dim': 64,
                         'max_len': 32})
    config.steps_per_call = 2
    common.shrink_for_tiny(config, steps=2, batch_size=8)
  return config
