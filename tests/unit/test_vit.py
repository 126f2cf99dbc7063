"""models/vit.py: shapes, the paper's parameter count, patch layout, what positions
do, logical axis names and bad fields. The experiment's tiny run is in
test_experiments.py (it runs every file in experiments/)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from jax.sharding import PartitionSpec as P

import models
from models.vit import patchify


def _abstract(model: nn.Module, shape: tuple[int, ...]) -> tuple[jax.ShapeDtypeStruct, dict]:
  return jax.eval_shape(lambda: model.init_with_output(jax.random.key(0), jnp.zeros(shape), train=False))


def _num_params(variables: dict) -> int:
  return sum(math.prod(p.shape) for p in jax.tree.leaves(nn.meta.unbox(variables['params'])))


@pytest.mark.parametrize('pool', ['cls', 'mean'])
@pytest.mark.parametrize('dtype', ['float32', 'bfloat16'])
def test_output_shape_and_float32_logits(pool, dtype):
  model = models.get('vit', num_classes=7, patch_size=4, width=32, num_layers=2, num_heads=2, pool=pool,
                     dtype=dtype)
  logits, variables = _abstract(model, (3, 16, 12, 1))
  assert logits.shape == (3, 7) and logits.dtype == jnp.float32
  params = nn.meta.unbox(variables['params'])
  assert params['position_embedding'].shape == (12, 32)  # a 4x3 grid of patches
  assert ('cls_token' in params) == (pool == 'cls')


def test_vit_ti16_param_count_by_hand():
  _, variables = _abstract(models.get('vit_ti16', num_classes=1000), (1, 224, 224, 3))
  width, mlp, layers, patches, classes = 192, 768, 12, (224 // 16) ** 2, 1000
  block = (2 * 2 * width  # two LayerNorms, scale and bias
           + 4 * (width * width + width)  # query, key, value, out
           + (width * mlp + mlp) + (mlp * width + width))
  total = ((16 * 16 * 3 * width + width) + width + patches * width  # patches, class token, positions
           + layers * block + 2 * width + (width * classes + classes))
  assert total == 5_717_224  # timm's vit_tiny_patch16_224 (5,717,416) has a class-token position row
  assert _num_params(variables) == total


def test_patchify_matches_a_strided_convolution():
  rng = np.random.default_rng(0)
  x = rng.normal(size=(2, 8, 12, 3)).astype(np.float32)
  kernel = rng.normal(size=(4, 2, 3, 5)).astype(np.float32)
  conv = jax.lax.conv_general_dilated(x, kernel, (4, 2), 'VALID', dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  dense = patchify(jnp.asarray(x), (4, 2)) @ kernel.reshape(-1, 5)
  np.testing.assert_allclose(dense, conv.reshape(2, -1, 5), rtol=1e-5, atol=1e-5)


def _swap_patches(x: jax.Array) -> jax.Array:
  """Reverses the order of the 4x4 patches of [B, 8, 8, C] images, each patch intact."""
  b, _, _, c = x.shape
  grid = x.reshape(b, 2, 4, 2, 4, c)[:, ::-1, :, ::-1]
  return grid.reshape(b, 8, 8, c)


@pytest.mark.parametrize('pool', ['cls', 'mean'])
def test_positions_make_patch_order_matter(pool):
  model = models.get('vit', num_classes=5, patch_size=4, width=16, num_layers=1, num_heads=2, pool=pool)
  x = jnp.asarray(np.random.default_rng(1).normal(size=(4, 8, 8, 1)), jnp.float32)
  apply = jax.jit(lambda v, x: model.apply(v, x, train=False))
  # rbg keys: XLA:CPU compiles threefry's random bits several times slower.
  variables = jax.jit(lambda x: model.init(jax.random.key(0, impl='rbg'), x, train=False))(x)
  swapped = _swap_patches(x)
  assert not np.allclose(swapped, x)
  assert not np.allclose(apply(variables, swapped), apply(variables, x), atol=1e-4)
  # Without position embeddings attention is permutation-equivariant, so both pools are invariant.
  params = nn.meta.unbox(variables['params'])
  params['position_embedding'] = jnp.zeros_like(params['position_embedding'])
  np.testing.assert_allclose(apply({'params': params}, swapped), apply({'params': params}, x), atol=1e-5)


@pytest.mark.parametrize('pool', ['cls', 'mean'])
def test_tokens_without_head(pool):
  model = models.get('vit', num_classes=None, patch_size=4, width=16, num_layers=1, num_heads=2, pool=pool)
  tokens, variables = _abstract(model, (3, 8, 12, 1))
  assert tokens.shape == (3, 6 + (pool == 'cls'), 16)  # 2x3 patches, and the class token first
  assert 'head' not in variables['params']


def test_keep_encodes_the_chosen_patches_at_their_places():
  model = models.get('vit', num_classes=None, patch_size=4, width=16, num_layers=1, num_heads=2, pool='mean')
  x = jnp.asarray(np.random.default_rng(2).normal(size=(2, 8, 8, 1)), jnp.float32)
  variables = jax.jit(lambda x: model.init(jax.random.key(0, impl='rbg'), x, train=False))(x)
  encode = jax.jit(lambda x, keep: model.apply(variables, x, train=False, keep=keep))
  everything = encode(x, None)
  np.testing.assert_allclose(encode(x, jnp.tile(jnp.arange(4), (2, 1))), everything, atol=1e-6)
  # A token's place comes from its position embedding, not its index in `keep`: reordering the
  # kept patches reorders the tokens and changes nothing else.
  keep = jnp.array([[3, 0, 2], [1, 2, 0]])
  reordered = jnp.array([[2, 0, 1], [1, 2, 0]])
  tokens = encode(x, keep)
  assert tokens.shape == (2, 3, 16)
  np.testing.assert_allclose(encode(x, jnp.take_along_axis(keep, reordered, 1)),
                             jnp.take_along_axis(tokens, reordered[..., None], 1), atol=1e-5)
  # The dropped patches are not attended to: the kept tokens differ from the same tokens encoded with all.
  assert not np.allclose(tokens, jnp.take_along_axis(everything, keep[..., None], 1), atol=1e-3)


def test_logical_axis_names():
  _, variables = _abstract(models.get('vit', num_classes=10, patch_size=4, width=32, num_heads=2), (1, 8, 8, 3))
  specs = nn.get_partition_spec(variables)['params']
  assert specs['patch_embedding']['kernel'] == P('conv_in', 'embed')
  assert specs['position_embedding'] == P('length', 'embed')
  assert specs['cls_token'] == P('embed')
  assert specs['block_0']['attention']['qkv_kernel'] == P('embed', 'heads', None, 'kv')
  assert specs['head']['kernel'] == P('embed', 'classes')
  for spec in jax.tree.leaves(specs, is_leaf=lambda v: isinstance(v, P)):
    assert any(isinstance(axis, str) for axis in spec)


@pytest.mark.parametrize('fields,needle', [
    ({'num_classes': 10, 'pool': 'max'}, r"pool='max' is not one of \['cls', 'mean'\]"),
    ({}, 'num_classes must be > 0'),
    ({'num_classes': 10, 'width': 30, 'num_heads': 4}, 'multiple of num_heads'),
])
def test_bad_fields_fail_at_construction(fields, needle):
  with pytest.raises(ValueError, match=needle):
    models.get('vit', **fields)


def test_image_not_divisible_by_patches():
  with pytest.raises(ValueError, match=r'\(28, 28\) is not a multiple of patch_size \(8, 8\)'):
    _abstract(models.get('vit', num_classes=10, patch_size=8), (1, 28, 28, 1))
