"""An image captioner: an image encoder from models/ and a Transformer text decoder that reads it.

  images -> encoder (a models/ network chosen by name, without its head) -> dense to width = memory
  caption ids -> the language model's token + position embeddings -> its blocks, each with a
      cross-attention sublayer to the memory -> final norm -> tied (or untied) head -> logits

The decoder is `TransformerLM`'s code with cross-attention turned on (models/transformer.py),
so its parameters are named as a language model's, beside 'image_encoder' and
'memory_projection'. Training is teacher forcing through `__call__`. Decoding encodes the
images once (`encode`) and runs `next_token_logits` step by step on a `decode=True` clone:
self-attention through the KV cache, cross-attention through keys and values of the memory that
the first step computes and caches (train_lib/caption_decoding.py).

Encoders: a ViT gives its encoded tokens (num_classes=None), a ResNet its pooled embedding as one
memory token; any output [B, *spatial, C] is flattened to tokens [B, S, C].
"""

from collections.abc import Mapping
from typing import Any

import jax
from flax import linen as nn

from models import layers
from models.resnet import ResNet
from models.transformer import INIT_STD, TransformerLM
from models.vit import ViT

ENCODERS = (ViT, ResNet)


class Captioner(TransformerLM):
  """Images [B, *spatial, C] and caption ids [B, L] -> next-token logits [B, L, vocab_size] (float32).

  `encoder`: {'name': a registered ViT or ResNet, its fields...}; it is built without a head
  (num_classes=None) and in the captioner's dtype and param_dtype. The other fields are the
  text decoder's, as `TransformerLM`'s.
  """

  encoder: Mapping[str, Any] | None = None
  cross_attention = True  # TransformerLM's class-level switch: every block attends to the memory

  def __post_init__(self) -> None:
    self._encoder(parent=None)  # checks the encoder's name and fields before anything is traced
    super().__post_init__()

  def _encoder(self, **parent: Any) -> nn.Module:
    from models import registry  # pylint: disable=g-import-not-at-top (models.registry imports this module)
    valid = sorted(n for cls in ENCODERS for n in registry.names(of=cls))
    given = dict(self.encoder) if isinstance(self.encoder, Mapping) else self.encoder
    if not isinstance(given, dict) or given.get('name') not in valid:
      raise ValueError(f"encoder must be {{'name': an image encoder, its fields...}} with a name of "
                       f"{', '.join(valid)}; got {given!r}")
    name = given['name']
    fields = {k: v for k, v in self.encoder.items() if k != 'name'}
    fields.update(num_classes=None, dtype=self.dtype, param_dtype=self.param_dtype)
    try:
      cls, values = registry.resolve(name, **fields)
      return cls(**values, **parent)
    except ValueError as e:
      raise ValueError(f'encoder: {e}') from None

  def setup(self) -> None:
    self.image_encoder = self._encoder()
    # The encoder's width in, the decoder's out: named like an MLP's hidden layer (as the MAE decoder's).
    self.memory_projection = layers.dense(self.width, ('embed', 'mlp'), kernel_init=nn.initializers.normal(INIT_STD),
                                          dtype=self.dtype, param_dtype=self.param_dtype)

  def encode(self, images: jax.Array, *, train: bool) -> jax.Array:
    """The memory the decoder reads: [B, S, width]."""
    features = self.image_encoder(images, train=train)
    if features.ndim == 2:
      features = features[:, None]  # a pooled embedding: one token
    features = features.reshape(features.shape[0], -1, features.shape[-1])
    memory = self.memory_projection(features)
    return nn.with_logical_constraint(memory, ('batch', 'length', 'embed'))

  def __call__(self, images: jax.Array, tokens: jax.Array, *, train: bool) -> jax.Array:
    """Teacher forcing: logits [B, L, vocab_size] for every position of `tokens` given the images."""
    return self.next_token_logits(tokens, train=train, memory=self.encode(images, train=train))
