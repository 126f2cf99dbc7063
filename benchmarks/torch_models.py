"""PyTorch mirrors of lamina's GPT, CNN and ResNet, and diffusers' U-Net, for the peer benchmark.

`from_lamina(module, input_shape)` reads the hyperparameters of a built lamina module
(what the trainer would train) and returns the same network in torch: the same
layers, parameter shapes and initial distributions. Each mirror's `load_flax(params)`
copies lamina's parameters in, which is how the tests show the two compute the same
function. A lamina field the mirrors do not cover fails here, not in a silent mismatch.

lamina's diffusion U-Net has the layout of diffusers' `UNet2DModel`, the library a diffusion
user would pick, so its peer is that model itself, configured to the same size (the parameter
counts agree), not a mirror written here.
"""

import math
from collections.abc import Mapping

import numpy as np
import torch
import torch.nn.functional as F
from flax import linen
from torch import nn

import models

Params = Mapping[str, object]  # lamina's nested {name: array} params


def _require(module: linen.Module, **supported: object) -> None:
  for field, value in supported.items():
    if getattr(module, field) != value:
      raise ValueError(f'the torch mirror of {type(module).__name__} supports only {field}={value!r}, '
                       f'got {getattr(module, field)!r}')


def _set(target: torch.Tensor, value: object) -> None:
  value = torch.from_numpy(np.array(value, np.float32))
  if target.shape != value.shape:
    raise ValueError(f'shape mismatch copying lamina params: torch {tuple(target.shape)}, lamina {tuple(value.shape)}')
  with torch.no_grad():
    target.copy_(value)


def _set_dense(layer: nn.Linear, params: Params) -> None:
  """flax Dense kernel [in, out] -> torch weight [out, in]."""
  _set(layer.weight, np.asarray(params['kernel']).T)
  if layer.bias is not None:
    _set(layer.bias, params['bias'])


def _set_conv(layer: nn.Conv2d, params: Params) -> None:
  """flax Conv kernel [kh, kw, in, out] -> torch weight [out, in, kh, kw]."""
  _set(layer.weight, np.asarray(params['kernel']).transpose(3, 2, 0, 1))
  if layer.bias is not None:
    _set(layer.bias, params['bias'])


def _set_batch_norm(layer: nn.BatchNorm2d, params: Params) -> None:
  _set(layer.weight, params['scale'])
  _set(layer.bias, params['bias'])


def _lecun_normal_(weight: torch.Tensor) -> None:
  """flax's default kernel init: truncated normal (at 2 sigma) of variance 1 / fan_in."""
  std = math.sqrt(1.0 / weight[0].numel()) / .87962566103423978  # the truncation's shrink, undone as jax does
  nn.init.trunc_normal_(weight, std=std, a=-2 * std, b=2 * std)


def _lecun_init(module: nn.Module) -> None:
  """Every conv and dense kernel as flax initialises them; biases zero."""
  for layer in module.modules():
    if isinstance(layer, (nn.Linear, nn.Conv2d)):
      _lecun_normal_(layer.weight)
      if layer.bias is not None:
        nn.init.zeros_(layer.bias)


class Block(nn.Module):
  """Pre-norm attention + GELU MLP, biasless, with lamina's fused qkv layout."""

  def __init__(self, width: int, num_heads: int, num_layers: int):
    super().__init__()
    self.num_heads = num_heads
    self.attention_norm = nn.LayerNorm(width, eps=1e-5, bias=False)
    self.qkv = nn.Linear(width, 3 * width, bias=False)
    self.out = nn.Linear(width, width, bias=False)
    self.mlp_norm = nn.LayerNorm(width, eps=1e-5, bias=False)
    self.up = nn.Linear(width, 4 * width, bias=False)
    self.down = nn.Linear(4 * width, width, bias=False)
    for layer in (self.qkv, self.up):
      nn.init.normal_(layer.weight, std=models.transformer.INIT_STD)
    for layer in (self.out, self.down):  # GPT-2: projections into the residual stream
      nn.init.normal_(layer.weight, std=models.transformer.INIT_STD / math.sqrt(2 * num_layers))

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    b, t, e = x.shape
    # Features ordered [head, (q, k, v), head_dim], as lamina's qkv kernel [E, heads, 3, H].
    q, k, v = self.qkv(self.attention_norm(x)).view(b, t, self.num_heads, 3, -1).unbind(3)
    h = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), is_causal=True)
    x = x + self.out(h.transpose(1, 2).reshape(b, t, e))
    return x + self.down(F.gelu(self.up(self.mlp_norm(x))))

  def load_flax(self, params: Params) -> None:
    width = self.qkv.in_features
    attention = params['attention']
    _set(self.attention_norm.weight, params['attention_norm']['scale'])
    _set(self.qkv.weight, np.asarray(attention['qkv_kernel']).reshape(width, -1).T)
    _set(self.out.weight, np.asarray(attention['out_kernel']).reshape(-1, width).T)
    _set(self.mlp_norm.weight, params['mlp_norm']['scale'])
    _set_dense(self.up, params['mlp']['up'])
    _set_dense(self.down, params['mlp']['down'])


class GPT(nn.Module):
  """lamina's TransformerLM as configured for nanoGPT: learned positions, tied embeddings."""

  def __init__(self, vocab_size: int, width: int, num_layers: int, num_heads: int, max_len: int):
    super().__init__()
    self.token_embedding = nn.Embedding(vocab_size, width)
    self.position_embedding = nn.Parameter(torch.empty(max_len, width))
    self.blocks = nn.ModuleList(Block(width, num_heads, num_layers) for _ in range(num_layers))
    self.final_norm = nn.LayerNorm(width, eps=1e-5, bias=False)
    nn.init.normal_(self.token_embedding.weight, std=models.transformer.INIT_STD)
    nn.init.normal_(self.position_embedding, std=models.transformer.INIT_STD)

  def forward(self, tokens: torch.Tensor) -> torch.Tensor:
    x = self.token_embedding(tokens) + self.position_embedding[:tokens.shape[1]]
    for block in self.blocks:
      x = block(x)
    return F.linear(self.final_norm(x), self.token_embedding.weight)

  def load_flax(self, params: Params) -> None:
    _set(self.token_embedding.weight, params['token_embedding']['embedding'])
    _set(self.position_embedding, params['position_embedding'])
    _set(self.final_norm.weight, params['final_norm']['scale'])
    for i, block in enumerate(self.blocks):
      block.load_flax(params[f'block_{i}'])


class CNN(nn.Module):
  """lamina's CNN (2-D, stride 1, SAME padding): [conv -> relu -> pool?] -> flatten -> [dense -> relu] -> head."""

  def __init__(self, input_shape: tuple[int, ...], num_classes: int, features: tuple[int, ...], kernel_size: int,
               pool: str | None, hidden: tuple[int, ...], dropout: float):
    super().__init__()
    height, width, channels = input_shape
    self.convs = nn.ModuleList()
    for out in features:
      self.convs.append(nn.Conv2d(channels, out, kernel_size, padding='same'))
      channels = out
      if pool:
        height, width = height // 2, width // 2
    self.pool = {'max': F.max_pool2d, 'avg': F.avg_pool2d, None: None}[pool]
    self.dropout = nn.Dropout(dropout)
    sizes = (height * width * channels, *hidden)
    self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes, sizes[1:]))
    self.head = nn.Linear(sizes[-1], num_classes)
    _lecun_init(self)

  def forward(self, images: torch.Tensor) -> torch.Tensor:
    x = images.permute(0, 3, 1, 2)  # lamina's NHWC batches
    for conv in self.convs:
      x = F.relu(conv(x))
      if self.pool:
        x = self.pool(x, 2)
    x = self.dropout(x.permute(0, 2, 3, 1).flatten(1))  # flattened in lamina's (h, w, c) order
    for dense in self.hidden:
      x = self.dropout(F.relu(dense(x)))
    return self.head(x)

  def load_flax(self, params: Params) -> None:
    for i, conv in enumerate(self.convs):
      _set_conv(conv, params[f'conv_{i}'])
    for i, dense in enumerate(self.hidden):
      _set_dense(dense, params[f'hidden_{i}'])
    _set_dense(self.head, params['head'])


def _batch_norm(channels: int, zero_scale: bool = False) -> nn.BatchNorm2d:
  # flax's momentum 0.9 keeps 0.9 of the old statistic; torch's momentum is the new one's share.
  # (torch averages the unbiased batch variance, flax the biased one: n / (n - 1) apart, with
  # n = batch x height x width, 1 + 1.6e-4 at worst in the Fashion-MNIST ResNet.)
  norm = nn.BatchNorm2d(channels, eps=1e-5, momentum=0.1)
  if zero_scale:
    nn.init.zeros_(norm.weight)
  return norm


class BasicBlock(nn.Module):
  """Two 3x3 conv + BN (stride on the first), a 1x1 projection shortcut where the shape changes."""

  def __init__(self, channels: int, filters: int, strides: int, zero_init_residual: bool):
    super().__init__()
    self.conv_0 = nn.Conv2d(channels, filters, 3, strides, padding=1, bias=False)
    self.bn_0 = _batch_norm(filters)
    self.conv_1 = nn.Conv2d(filters, filters, 3, 1, padding=1, bias=False)
    self.bn_1 = _batch_norm(filters, zero_scale=zero_init_residual)
    self.projection = None
    if channels != filters or strides != 1:
      self.projection = nn.Sequential(nn.Conv2d(channels, filters, 1, strides, bias=False), _batch_norm(filters))

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    y = self.bn_1(self.conv_1(F.relu(self.bn_0(self.conv_0(x)))))
    return F.relu(y + (x if self.projection is None else self.projection(x)))

  def load_flax(self, params: Params) -> None:
    for i in range(2):
      _set_conv(getattr(self, f'conv_{i}'), params[f'conv_{i}'])
      _set_batch_norm(getattr(self, f'bn_{i}'), params[f'bn_{i}'])
    if self.projection is not None:
      _set_conv(self.projection[0], params['proj_conv'])
      _set_batch_norm(self.projection[1], params['proj_bn'])


class ResNet(nn.Module):
  """lamina's ResNet with basic blocks and the 'cifar' (3x3/1) or 'small' (then 2x2 max pool) stem."""

  def __init__(self, input_shape: tuple[int, ...], num_classes: int, stage_sizes: tuple[int, ...], width: int,
               stem: str, zero_init_residual: bool):
    super().__init__()
    self.stem_conv = nn.Conv2d(input_shape[-1], width, 3, 1, padding=1, bias=False)
    self.stem_bn = _batch_norm(width)
    self.stem_pool = stem == 'small'
    self.blocks = nn.ModuleDict()  # keyed by lamina's module names
    channels = width
    for i, num_blocks in enumerate(stage_sizes):
      for j in range(num_blocks):
        filters = width * 2**i
        self.blocks[f'stage{i + 1}_block{j + 1}'] = BasicBlock(
            channels, filters, 2 if i > 0 and j == 0 else 1, zero_init_residual)
        channels = filters
    self.head = nn.Linear(channels, num_classes)
    _lecun_init(self)

  def forward(self, images: torch.Tensor) -> torch.Tensor:
    x = F.relu(self.stem_bn(self.stem_conv(images.permute(0, 3, 1, 2))))
    if self.stem_pool:
      x = F.max_pool2d(x, 2)
    for block in self.blocks.values():
      x = block(x)
    return self.head(x.mean((2, 3)))

  def load_flax(self, params: Params) -> None:
    _set_conv(self.stem_conv, params['stem_conv'])
    _set_batch_norm(self.stem_bn, params['stem_bn'])
    for name, block in self.blocks.items():
      block.load_flax(params[name])
    _set_dense(self.head, params['head'])


class DiffusersUNet(nn.Module):
  """diffusers' UNet2DModel in the shape of a lamina UNet, on [B, H, W, C] images like lamina's."""

  def __init__(self, module: models.UNet, input_shape: tuple[int, ...]):
    super().__init__()
    from diffusers import UNet2DModel  # only where the diffusion row runs
    widths = [module.channels * m for m in module.channel_mult]
    if len({widths[i] for i in (*module.attention_levels, len(widths) - 1)}) != 1:
      raise ValueError("diffusers' UNet2DModel takes one attention head size: attention only at levels of the "
                       'innermost width')
    attention = set(module.attention_levels)
    height, _, channels = input_shape
    self.unet = UNet2DModel(
        sample_size=height, in_channels=channels, out_channels=channels, block_out_channels=tuple(widths),
        layers_per_block=module.num_res_blocks,
        down_block_types=tuple('AttnDownBlock2D' if i in attention else 'DownBlock2D' for i in range(len(widths))),
        up_block_types=tuple('AttnUpBlock2D' if i in attention else 'UpBlock2D' for i in reversed(range(len(widths)))),
        attention_head_dim=widths[-1] // module.num_heads,
        # One group count for every layer (lamina takes each layer's gcd with `groups`): the same arithmetic.
        norm_num_groups=math.gcd(module.groups, *widths), dropout=module.dropout,
        num_class_embeds=None if module.num_classes is None else module.num_classes + 1)

  def forward(self, x: torch.Tensor, t: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
    return self.unet(x.permute(0, 3, 1, 2), t, class_labels=labels).sample.permute(0, 2, 3, 1)


def from_lamina(module: linen.Module, input_shape: tuple[int, ...]) -> nn.Module:
  """The torch mirror of a built lamina model; `input_shape` is one example's ([T] or [H, W, C])."""
  if isinstance(module, models.TransformerLM):
    _require(module, num_kv_heads=None, mlp_dim=None, mlp='gelu', norm='layernorm', use_bias=False, dropout=0.0,
             positions='learned', tie_embeddings=True, decode=False)
    return GPT(module.vocab_size, module.width, module.num_layers, module.num_heads, module.max_len)
  if isinstance(module, models.CNN):
    _require(module, strides=1, padding='SAME')
    if not isinstance(module.kernel_size, int) or len(input_shape) != 3:
      raise ValueError('the torch mirror of CNN supports one int kernel_size and 2-D images only')
    return CNN(input_shape, module.num_classes, tuple(module.features), module.kernel_size, module.pool,
               tuple(module.hidden), module.dropout)
  if isinstance(module, models.ResNet):
    _require(module, block='basic')
    if module.stem == 'imagenet':
      raise ValueError("the torch mirror of ResNet supports stem='cifar' or 'small' only")
    return ResNet(input_shape, module.num_classes, tuple(module.stage_sizes), module.width, module.stem,
                  module.zero_init_residual)
  if isinstance(module, models.UNet):
    return DiffusersUNet(module, input_shape)
  raise ValueError(f'no torch mirror of {type(module).__name__}; mirrors exist for TransformerLM, CNN, ResNet and UNet')
