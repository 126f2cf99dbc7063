r"""A character-level LSTM on Tiny Shakespeare, next to experiments/shakespeare_gpt.py.

  python -m train_lib.main --config=experiments/shakespeare_lstm.py --workdir=/tmp/lamina/shakespeare_lstm

The same data, tokens, batch (12 x 64 characters), step count and optimizer as the
GPT config, and about the same parameter count (2 LSTM layers of 232 units over a
128-wide embedding: 0.79 M against the GPT's 0.80 M), so the two numbers compare
architectures and nothing else.

Args: cell=lstm|gru, hidden=N, tiny=True.
"""

import ml_collections

from experiments import common, shakespeare_gpt


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  arg = common.parse_arg(arg, cell='lstm', hidden=232, tiny=False)
  config = shakespeare_gpt.get_config()
  config.model = ml_collections.ConfigDict({
      'name': common.choose('shakespeare_lstm', 'cell', arg.cell, {'lstm': 'lstm_lm', 'gru': 'gru_lm'}),
      'embed_dim': 128, 'hidden': arg.hidden,
      'num_layers': 2, 'dropout': 0.0})
  if arg.tiny:
    config.steps_per_call = 2
    common.shrink_for_tiny(config, steps=2, batch_size=8)
  return config
