"""Fixed-length language-model windows over a token stream, with next-token targets.

Window i starts at token i * stride: `inputs` are L tokens, `targets` the L
tokens after each, `weights` 1 where a target exists. Training windows are all
full (stride 1 by default: every start position, like nanoGPT's random
offsets, but drawn without replacement); evaluation windows have stride L, so
every token after the first is a target exactly once, the last window padded
with weight 0.
"""

import numpy as np


class TokenWindows:
  """The records interface (`len`, `read`) over windows of one split's token stream."""

  def __init__(self, tokens: np.ndarray, *, seq_len: int, stride: int, pad_last: bool, description: str):
    self._tokens = tokens
    self._seq_len = seq_len
    self._stride = stride
    targets = len(tokens) - 1
    if pad_last:
      self._count = -(-targets // stride) if targets > 0 else 0
    else:
      self._count = max(0, (targets - seq_len) // stride + 1)
    if self._count == 0:
      raise ValueError(f'{description} has {len(tokens)} tokens: too few for one window of '
                       f'data.seq_len={seq_len} (+1 target); lower seq_len or use a larger split')
    self._description = f'{description}:windows(seq_len={seq_len},stride={stride})'

  def __len__(self) -> int:
    return self._count

  def read(self, indices: np.ndarray) -> dict[str, np.ndarray]:
    positions = np.asarray(indices, np.int64)[:, None] * self._stride + np.arange(self._seq_len + 1)
    exists = positions < len(self._tokens)
    ids = np.where(exists, self._tokens[np.minimum(positions, len(self._tokens) - 1)], 0).astype(np.int32)
    return {'inputs': ids[:, :-1], 'targets': ids[:, 1:], 'weights': exists[:, 1:].astype(np.float32)}

  def __repr__(self) -> str:
    return self._description
