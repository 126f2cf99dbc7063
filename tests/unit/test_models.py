"""models/: shapes, logical axis names, param counts, BatchNorm, dropout, precision,
registry errors, and that a model can be trained.

Compiling dominates these tests' time on a small CPU, so shape and annotation checks
trace with `jax.eval_shape` (no compile), numeric checks jit whole functions, and
models with variables are built once per module by fixtures.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import linen as nn
from jax.sharding import PartitionSpec as P

import kernels
import models
from models import layers


def _key(seed: int) -> jax.Array:
  # XLA:CPU compiles threefry's random bits several times slower than rbg's.
  return jax.random.key(seed, impl='rbg')


def _images(shape: tuple[int, ...], seed: int = 0) -> jax.Array:
  return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


def _init(model: nn.Module, x: jax.Array) -> dict:
  # One jitted init compiles once; an eager init compiles every op it meets.
  return nn.meta.unbox(jax.jit(lambda x: model.init(_key(0), x, train=False))(x))


def _abstract(model: nn.Module, shape: tuple[int, ...], dtype=jnp.float32, *more_inputs: jax.Array,
              ) -> tuple[jax.ShapeDtypeStruct, dict]:
  """(output, boxed variables) as shapes, from one trace of init."""
  return jax.eval_shape(
      lambda: model.init_with_output(_key(0), jnp.zeros(shape, dtype), *more_inputs, train=False))


@functools.cache
def _eval_fn(model: nn.Module):
  return jax.jit(lambda variables, x: model.apply(variables, x, train=False))


def _num_params(variables: dict) -> int:
  return sum(math.prod(p.shape) for p in jax.tree.leaves(nn.meta.unbox(variables['params'])))


@pytest.fixture(scope='module')
def digits_cnn() -> tuple[nn.Module, jax.Array, dict]:
  """The default CNN, a batch of 32 digits-sized (8x8x1) inputs and its variables."""
  model = models.get('cnn', num_classes=10)
  x = _images((32, 8, 8, 1))
  return model, x, _init(model, x)


@pytest.fixture(scope='module')
def tiny_resnet() -> tuple[nn.Module, jax.Array, dict]:
  """A two-stage ResNet, a batch (mean 1, std 3) and its variables."""
  model = models.get('resnet', num_classes=10, stage_sizes=(1, 1), width=8, stem='cifar')
  x = _images((8, 8, 8, 3)) * 3 + 1
  return model, x, _init(model, x)


# (name, fields, input shape, logits shape)
SHAPE_CASES = [
    ('logreg', {}, (4, 8, 8, 1), (4, 10)),
    ('mlp', {'hidden': (32, 16), 'activation': 'gelu'}, (4, 8, 8, 1), (4, 10)),
    ('cnn', {}, (4, 8, 8, 1), (4, 10)),
    ('cnn', {'features': (8, 8), 'pool': 'avg', 'hidden': ()}, (4, 40, 2), (4, 10)),
    ('cnn', {'features': (4,), 'padding': 'VALID', 'pool': None}, (4, 12, 12, 3), (4, 10)),
    ('mnist1d_cnn', {}, (4, 40), (4, 10)),
    ('mnist1d_cnn', {}, (4, 40, 1), (4, 10)),
    ('mnist1d_mlp', {}, (4, 40), (4, 10)),
    ('resnet', {'stage_sizes': (1, 1), 'width': 8, 'stem': 'cifar'}, (2, 16, 16, 3), (2, 10)),
    ('resnet18', {'width': 8}, (2, 32, 32, 3), (2, 10)),
    ('resnet', {'stage_sizes': (1, 1), 'block': 'bottleneck'}, (2, 16, 16, 3), (2, 10)),
]


@pytest.mark.parametrize('name,fields,in_shape,out_shape', SHAPE_CASES)
def test_output_shape(name, fields, in_shape, out_shape):
  logits, _ = _abstract(models.get(name, num_classes=out_shape[-1], **fields), in_shape)
  assert logits.shape == out_shape
  assert logits.dtype == jnp.float32


# (fields, input shape, input dtype) of registered models that are not image classifiers;
# the others are built with num_classes=10 and read a [2, 16, 16, 3] batch.
_NON_CLASSIFIERS = {
    'lstm_lm': ({'vocab_size': 10}, (2, 16), jnp.int32),
    'gru_lm': ({'vocab_size': 10}, (2, 16), jnp.int32),
    'lstm_forecaster': ({'horizon': 4}, (2, 16), jnp.float32),
    'gru_forecaster': ({'horizon': 4}, (2, 16), jnp.float32),
    'transformer_lm': ({'vocab_size': 10, 'width': 16, 'num_heads': 2, 'num_layers': 1, 'max_len': 16},
                       (2, 16), jnp.int32),
    'text_encoder': ({'vocab_size': 10, 'width': 16, 'num_heads': 2, 'num_layers': 1, 'num_classes': 8},
                     (2, 16), jnp.int32),
    'captioner': ({'vocab_size': 10, 'width': 16, 'num_heads': 2, 'num_layers': 1, 'max_len': 8,
                   'encoder': {'name': 'vit', 'patch_size': 8, 'width': 8, 'num_heads': 2, 'num_layers': 1}},
                  (2, 16, 16, 3), jnp.float32),
    'unet': ({'channels': 8, 'groups': 4}, (2, 8, 8, 1), jnp.float32),
    'dcgan_generator': ({'image_shape': (8, 8, 1), 'latent_dim': 16}, (2, 16), jnp.float32),
    'mlp_generator': ({'image_shape': (8, 8, 1), 'latent_dim': 16}, (2, 16), jnp.float32),
    'dcgan_discriminator': ({}, (2, 8, 8, 1), jnp.float32),
    'mlp_discriminator': ({}, (2, 8, 8, 1), jnp.float32),
}
# Inputs after the first: the U-Net's timesteps, the captioner's caption ids.
_MORE_INPUTS = {'unet': (jnp.zeros(2, jnp.int32),), 'captioner': (jnp.zeros((2, 8), jnp.int32),)}


@pytest.mark.parametrize('name', models.names())
def test_every_param_has_logical_axis_names(name):
  fields, shape, dtype = _NON_CLASSIFIERS.get(name, ({'num_classes': 10}, (2, 16, 16, 3), jnp.float32))
  _, variables = _abstract(models.get(name, **fields), shape, dtype, *_MORE_INPUTS.get(name, ()))
  leaves = jax.tree.leaves(variables['params'], is_leaf=lambda v: isinstance(v, nn.Partitioned))
  assert leaves and all(isinstance(v, nn.Partitioned) for v in leaves)
  specs = jax.tree.leaves(nn.get_partition_spec(variables)['params'],
                          is_leaf=lambda v: isinstance(v, P))
  for spec, param in zip(specs, jax.tree.leaves(nn.meta.unbox(variables['params']))):
    assert len(spec) == param.ndim
    assert any(isinstance(axis, str) for axis in spec)


def test_logical_axis_names_follow_the_conventions():
  _, variables = _abstract(models.get('cnn', num_classes=10), (2, 8, 8, 1))
  params = nn.get_partition_spec(variables)['params']
  assert params['conv_0']['kernel'] == P(None, None, 'conv_in', 'conv_out')
  assert params['conv_0']['bias'] == P('conv_out')
  assert params['hidden_0']['kernel'] == P('embed', 'mlp')
  assert params['head']['kernel'] == P('embed', 'classes')
  assert params['head']['bias'] == P('classes')
  _, variables = _abstract(models.get('resnet', num_classes=10, stage_sizes=(1,)), (1, 8, 8, 3))
  assert nn.get_partition_spec(variables)['params']['stem_bn']['scale'] == P('conv_out')


def test_models_run_sharded_under_a_mesh_with_rules(tiny_resnet):
  model, x, variables = tiny_resnet
  mesh = jax.make_mesh((1, 1, 1, 1), ('data', 'fsdp', 'tensor', 'expert'),
                       axis_types=(jax.sharding.AxisType.Auto,) * 4)
  rules = (('batch', ('data', 'fsdp')), ('embed', 'fsdp'), ('mlp', 'tensor'),
           ('conv_out', 'tensor'), ('classes', None), ('conv_in', None))
  specs = nn.get_partition_spec(_abstract(model, x.shape)[1])
  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    variables = jax.device_put(variables, nn.logical_to_mesh_sharding(specs, mesh, rules))
    logits = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, x)
  assert logits.shape == (8, 10)


def test_resnet_param_counts_match_torchvision():
  logits, resnet18 = _abstract(models.get('resnet18', num_classes=1000), (1, 224, 224, 3))
  assert logits.shape == (1, 1000)
  assert _num_params(resnet18) == 11_689_512
  _, resnet50 = _abstract(models.get('resnet50', num_classes=1000), (1, 224, 224, 3))
  assert _num_params(resnet50) == 25_557_032


def test_mnist1d_paper_models():
  _, cnn = _abstract(models.get('mnist1d_cnn', num_classes=10), (1, 40))
  _, mlp = _abstract(models.get('mnist1d_mlp', num_classes=10), (1, 40))
  # ConvBase: 3 convs of 25 channels, 40 -> 19 -> 10 -> 5 positions, linear 125 -> 10.
  assert nn.meta.unbox(cnn['params']['head']['kernel']).shape == (125, 10)
  assert _num_params(cnn) == 5_210
  assert _num_params(mlp) == 15_210


def test_batch_norm_train_updates_stats_and_eval_is_frozen(tiny_resnet):
  model, x, variables = tiny_resnet
  train_fn = jax.jit(lambda v, x: model.apply(v, x, train=True, mutable=['batch_stats']))
  _, train_state = train_fn(variables, x)
  changed = jax.tree.map(lambda a, b: not np.allclose(a, b), variables['batch_stats'],
                         train_state['batch_stats'])
  assert all(jax.tree.leaves(changed))

  eval_fn = jax.jit(lambda v, x: model.apply(v, x, train=False, mutable=['batch_stats']))
  out1, eval_state = eval_fn(variables, x)
  out2, _ = eval_fn(variables, x)
  jax.tree.map(np.testing.assert_array_equal, eval_state['batch_stats'], variables['batch_stats'])
  np.testing.assert_array_equal(out1, out2)
  # Running statistics, not the batch's: an example's logits do not depend on the others.
  out3, _ = eval_fn(variables, x.at[1:].set(0.0))
  np.testing.assert_allclose(out3[0], out1[0], rtol=1e-5, atol=1e-5)


def test_zero_init_residual_zeroes_last_bn_scale_of_each_branch(tiny_resnet):
  params = tiny_resnet[2]['params']
  for block in ('stage1_block1', 'stage2_block1'):
    assert np.all(params[block]['bn_1']['scale'] == 0.0)
    assert np.all(params[block]['bn_0']['scale'] == 1.0)
  assert np.all(params['stage2_block1']['proj_bn']['scale'] == 1.0)


def test_dropout_is_random_in_train_and_identity_in_eval(digits_cnn):
  model, x, variables = digits_cnn
  dropout = models.get('cnn', num_classes=10, dropout=0.5)
  train_fn = jax.jit(lambda key: dropout.apply(variables, x, train=True, rngs={'dropout': key}))
  assert not np.allclose(train_fn(_key(1)), train_fn(_key(2)))
  np.testing.assert_array_equal(train_fn(_key(1)), train_fn(_key(1)))
  np.testing.assert_array_equal(_eval_fn(dropout)(variables, x), _eval_fn(model)(variables, x))


def _assert_bfloat16_matches_float32(f32: nn.Module, variables: dict, x: jax.Array) -> None:
  bf16 = f32.clone(dtype=jnp.bfloat16)
  # Training: float32 logits, and BatchNorm statistics stay float32 (dtypes only).
  logits, state = jax.eval_shape(
      lambda: bf16.apply(variables, x, train=True, mutable=['batch_stats']))
  assert logits.dtype == jnp.float32
  assert all(s.dtype == jnp.float32 for s in jax.tree.leaves(state))
  expected = _eval_fn(f32)(variables, x)
  got = _eval_fn(bf16)(variables, x)
  assert got.dtype == jnp.float32
  scale = float(jnp.abs(expected).max())
  np.testing.assert_allclose(got, expected, atol=0.05 * scale, rtol=0.05)


def test_bfloat16_cnn_returns_float32_logits_close_to_float32(digits_cnn):
  model, x, variables = digits_cnn
  _assert_bfloat16_matches_float32(model, variables, x)


def test_bfloat16_resnet_keeps_float32_batch_stats(tiny_resnet):
  model, x, variables = tiny_resnet
  _assert_bfloat16_matches_float32(model, variables, x)


def test_param_dtype_sets_parameter_storage():
  model = models.get('cnn', num_classes=10, param_dtype='bfloat16', dtype='bfloat16')
  params = nn.meta.unbox(_abstract(model, (1, 8, 8, 1))[1]['params'])
  assert all(p.dtype == jnp.bfloat16 for p in jax.tree.leaves(params))


def test_registry_unknown_name_lists_valid_names():
  with pytest.raises(ValueError) as e:
    models.get('resnet19', num_classes=10)
  message = str(e.value)
  assert '\n' not in message and 'resnet19' in message
  assert all(name in message for name in models.names())


def test_registry_unknown_field_names_the_key_and_valid_fields():
  with pytest.raises(ValueError) as e:
    models.get('mlp', num_classes=10, hiden=(8,))
  message = str(e.value)
  assert '\n' not in message
  assert "'hiden'" in message and 'hidden' in message and 'num_classes' in message


@pytest.mark.parametrize('name,fields,needle', [
    ('mlp', {'num_classes': 10, 'activation': 'relu6'}, 'activation'),
    ('cnn', {'num_classes': 10, 'pool': 'min'}, 'pool'),
    ('cnn', {'num_classes': 10, 'features': (8, 8), 'kernel_size': (3, 3, 3)}, 'kernel_size'),
    ('resnet', {'num_classes': 10, 'block': 'wide'}, 'block'),
    ('resnet', {'num_classes': 10, 'stem': 'tiny'}, 'stem'),
    ('resnet18', {}, 'num_classes'),
])
def test_bad_field_values_fail_at_construction(name, fields, needle):
  with pytest.raises(ValueError, match=needle):
    models.get(name, **fields)


def test_registry_accepts_config_style_values():
  model = models.get('cnn', num_classes=10, features=[8, 16], dtype='bfloat16')
  assert model.features == (8, 16) and model.dtype == jnp.bfloat16
  hash(model)  # Hashable, so it can be a static argument to jit.


def test_pool_matches_reshape_reference():
  x = _images((2, 4, 6, 3))
  blocks = x.reshape(2, 2, 2, 3, 2, 3)
  np.testing.assert_allclose(layers.pool(x, 'avg', (2, 2), (2, 2)), blocks.mean(axis=(2, 4)),
                             rtol=1e-6)
  np.testing.assert_array_equal(layers.pool(x, 'max', (2, 2), (2, 2)), blocks.max(axis=(2, 4)))


@pytest.mark.parametrize('mode', ['auto', 'xla'])
def test_batch_norm_keeps_float32_activations_on_cpu_under_auto(mode):
  x = _images((4, 3, 3, 8)).astype(jnp.bfloat16)
  with kernels.use(mode):  # layers choose their kernels when built, inside a model's __call__
    bn = layers.batch_norm(True, dtype=jnp.bfloat16, param_dtype=jnp.float32)
    y, _ = bn.init_with_output(jax.random.key(0), x)
  keeps_float32 = mode == 'auto' and jax.default_backend() == 'cpu'
  assert y.dtype == (jnp.float32 if keeps_float32 else jnp.bfloat16)
  mean = x.astype(jnp.float32).mean((0, 1, 2))
  std = jnp.sqrt(x.astype(jnp.float32).var((0, 1, 2)) + 1e-5)
  tolerance = 1e-5 if keeps_float32 else 2e-2  # bf16 outputs: rounded to 8 bits of mantissa
  np.testing.assert_allclose(y.astype(jnp.float32), (x.astype(jnp.float32) - mean) / std, rtol=tolerance,
                             atol=tolerance)


def test_digits_cnn_overfits_random_labels(digits_cnn):
  # 32 random labels are memorised in about 10 Adam steps; 50 leaves a wide margin.
  model, x, variables = digits_cnn
  labels = jnp.asarray(np.random.default_rng(1).integers(0, 10, size=x.shape[0]))
  tx = optax.adam(3e-3)

  def loss_fn(params):
    logits = model.apply({'params': params}, x, train=True)
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

  @jax.jit
  def step(params, opt_state):
    updates, opt_state = tx.update(jax.grad(loss_fn)(params), opt_state)
    return optax.apply_updates(params, updates), opt_state

  # A Python loop, not lax.scan: XLA:CPU runs convolutions inside loops several times slower.
  params = variables['params']
  opt_state = tx.init(params)
  for _ in range(50):
    params, opt_state = step(params, opt_state)
  logits = _eval_fn(model)({'params': params}, x)
  assert float((logits.argmax(-1) == labels).mean()) == 1.0


@pytest.mark.parametrize('kind', ['max', 'avg'])
def test_tiled_pooling_equals_reduce_window_forward_and_backward(kind):
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 8, 6, 3))
  explicit = ((0, 0), (0, 0))  # padding pairs take the reduce_window path

  def loss(x, padding):
    return jnp.sum(layers.pool(x, kind, (2, 2), (2, 2), padding) ** 2)

  np.testing.assert_allclose(layers.pool(x, kind, (2, 2), (2, 2)), layers.pool(x, kind, (2, 2), (2, 2), explicit))
  np.testing.assert_allclose(jax.grad(loss)(x, 'VALID'), jax.grad(loss)(x, explicit), atol=1e-6)
  assert layers.pool(x, kind, (3, 3), (3, 3)).shape == (2, 2, 2, 3)  # 8 is not a multiple of 3: reduce_window
