"""Layer-wise learning-rate decay, for fine-tuning Transformers (BEiT, MAE).

With `optimizer.layer_decay = d` (0: off), Transformer block i of L trains at
d**(L - i) times its group's rate, the embeddings (patch, token and position embeddings,
the class token) at d**(L + 1) and everything after the blocks (final norm, head) at the
full rate: layers near the input, which carry the most general features, move least.
"""

import re
from typing import Any

import jax

_BLOCK = re.compile(r'(?:^|/)block_(\d+)/')
_EMBEDDING = re.compile(r'^[^/]*(embedding|cls_token)(/|$)')


def _layer(path: str, num_blocks: int) -> int:
  """0 for embeddings, i + 1 for block i, num_blocks + 1 for what follows the blocks."""
  block = _BLOCK.search(path)
  if block:
    return int(block.group(1)) + 1
  return 0 if _EMBEDDING.match(path) else num_blocks + 1


def scales(paths: Any, decays: Any) -> Any:
  """Each parameter's learning-rate factor, from its path and its group's layer_decay (0: 1)."""
  blocks = [_BLOCK.search(path) for path in jax.tree.leaves(paths)]
  num_blocks = 1 + max((int(b.group(1)) for b in blocks if b), default=-1)
  return jax.tree.map(lambda path, d: d ** (num_blocks + 1 - _layer(path, num_blocks)) if d else 1.0,
                      paths, decays)
