"""models/: shapes, logical axis names, param counts, BatchNorm, dropout, precision,
registry errors, and that a model can be trained."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import linen as nn

import models
from models import layers


def _key(seed: int) -> jax.Array:
  # XLA:CPU compiles threefry's random bits several times slower than rbg's, and with
  # tiny models compiling is most of a test's time.
  return jax.random.key(seed, impl='rbg')


def _init(model: nn.Module, x: jax.Array) -> dict:
  # One jitted init compiles once; an eager init compiles every op it meets.
  return nn.meta.unbox(jax.jit(lambda x: model.init(_key(0), x, train=False))(x))


def _apply(model: nn.Module, variables: dict, x: jax.Array, **kwargs) -> jax.Array:
  return jax.jit(lambda v, x: model.apply(v, x, **kwargs))(variables, x)


def _abstract_init(model: nn.Module, shape: tuple[int, ...]) -> dict:
  return jax.eval_shape(lambda: model.init(_key(0), jnp.zeros(shape), train=False))


def _num_params(variables: dict) -> int:
  return sum(math.prod(p.shape) for p in jax.tree.leaves(nn.meta.unbox(variables['params'])))


def _images(shape: tuple[int, ...], seed: int = 0) -> jax.Array:
  return jnp.asarray(np.random.default_rng(seed).normal(size=shape), jnp.float32)


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
    ('resnet50', {'width': 8, 'stem': 'cifar'}, (2, 16, 16, 3), (2, 10)),
]


@pytest.mark.parametrize('name,fields,in_shape,out_shape', SHAPE_CASES)
def test_output_shape(name, fields, in_shape, out_shape):
  model = models.get(name, num_classes=out_shape[-1], **fields)
  x = jnp.zeros(in_shape)
  # Shapes only: eval_shape traces init and apply without compiling them.
  logits = jax.eval_shape(lambda: model.apply(model.init(_key(0), x, train=False), x, train=False))
  assert logits.shape == out_shape
  assert logits.dtype == jnp.float32


@pytest.mark.parametrize('name', models.names())
def test_every_param_has_logical_axis_names(name):
  abstract = _abstract_init(models.get(name, num_classes=10), (2, 16, 16, 3))
  leaves = jax.tree.leaves(abstract['params'], is_leaf=lambda v: isinstance(v, nn.Partitioned))
  unannotated = [v for v in leaves if not isinstance(v, nn.Partitioned)]
  assert not unannotated
  specs = jax.tree.leaves(nn.get_partition_spec(abstract)['params'],
                          is_leaf=lambda v: isinstance(v, jax.sharding.PartitionSpec))
  for spec, param in zip(specs, jax.tree.leaves(nn.meta.unbox(abstract['params']))):
    assert len(spec) == param.ndim
    assert any(isinstance(axis, str) for axis in spec)


def test_logical_axis_names_follow_the_conventions():
  specs = nn.get_partition_spec(_abstract_init(models.get('cnn', num_classes=10), (2, 8, 8, 1)))
  params = specs['params']
  assert params['conv_0']['kernel'] == jax.sharding.PartitionSpec(None, None, 'conv_in', 'conv_out')
  assert params['conv_0']['bias'] == jax.sharding.PartitionSpec('conv_out')
  assert params['hidden_0']['kernel'] == jax.sharding.PartitionSpec('embed', 'mlp')
  assert params['head']['kernel'] == jax.sharding.PartitionSpec('embed', 'classes')
  assert params['head']['bias'] == jax.sharding.PartitionSpec('classes')


def test_models_run_sharded_under_a_mesh_with_rules():
  mesh = jax.make_mesh((1, 1, 1, 1), ('data', 'fsdp', 'tensor', 'expert'),
                       axis_types=(jax.sharding.AxisType.Auto,) * 4)
  rules = (('batch', ('data', 'fsdp')), ('embed', 'fsdp'), ('mlp', 'tensor'),
           ('conv_out', 'tensor'), ('classes', None), ('conv_in', None))
  model = models.get('resnet', num_classes=10, stage_sizes=(1, 1), width=8, stem='cifar')
  x = _images((2, 8, 8, 3))
  with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
    abstract = jax.eval_shape(lambda: model.init(_key(0), x, train=False))
    shardings = nn.logical_to_mesh_sharding(nn.get_partition_spec(abstract), mesh, rules)
    variables = jax.jit(lambda: model.init(_key(0), x, train=False),
                        out_shardings=shardings)()
    logits = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, x)
  assert logits.shape == (2, 10)


def test_resnet_param_counts_match_torchvision():
  resnet18 = _abstract_init(models.get('resnet18', num_classes=1000), (1, 224, 224, 3))
  resnet50 = _abstract_init(models.get('resnet50', num_classes=1000), (1, 224, 224, 3))
  assert _num_params(resnet18) == 11_689_512
  assert _num_params(resnet50) == 25_557_032


def test_mnist1d_paper_models():
  cnn = _abstract_init(models.get('mnist1d_cnn', num_classes=10), (1, 40))
  mlp = _abstract_init(models.get('mnist1d_mlp', num_classes=10), (1, 40))
  # ConvBase: 3 convs of 25 channels, 40 -> 19 -> 10 -> 5 positions, linear 125 -> 10.
  assert nn.meta.unbox(cnn['params']['head']['kernel']).shape == (125, 10)
  assert _num_params(cnn) == 5_210
  assert _num_params(mlp) == 15_210


def _tiny_resnet(**fields) -> nn.Module:
  return models.get('resnet', num_classes=10, stage_sizes=(1, 1), width=8, stem='cifar', **fields)


def test_batch_norm_train_updates_stats_and_eval_is_frozen():
  model = _tiny_resnet()
  x = _images((8, 8, 8, 3)) * 3 + 1
  variables = _init(model, x)
  _, train_state = _apply(model, variables, x, train=True, mutable=['batch_stats'])
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


def test_zero_init_residual_zeroes_last_bn_scale_of_each_branch():
  for zero in (True, False):
    params = _init(_tiny_resnet(zero_init_residual=zero), _images((1, 8, 8, 3)))['params']
    block = params['stage2_block1']
    assert np.all(block['bn_1']['scale'] == (0.0 if zero else 1.0))
    assert np.all(block['bn_0']['scale'] == 1.0)
    assert np.all(block['proj_bn']['scale'] == 1.0)


@pytest.mark.parametrize('name', ['mlp', 'cnn'])
def test_dropout_is_random_in_train_and_identity_in_eval(name):
  model = models.get(name, num_classes=10, dropout=0.5)
  x = _images((4, 8, 8, 1))
  variables = _init(model, x)

  train_fn = jax.jit(lambda key: model.apply(variables, x, train=True, rngs={'dropout': key}))

  def train(seed: int) -> jax.Array:
    return train_fn(_key(seed))

  assert not np.allclose(train(1), train(2))
  np.testing.assert_array_equal(train(1), train(1))
  no_dropout = models.get(name, num_classes=10, dropout=0.0)
  np.testing.assert_array_equal(_apply(model, variables, x, train=False),
                                _apply(no_dropout, variables, x, train=False))


@pytest.mark.parametrize('name,fields,in_shape', [
    ('mlp', {}, (4, 8, 8, 1)),
    ('cnn', {}, (4, 8, 8, 1)),
    ('mnist1d_cnn', {}, (4, 40)),
    ('resnet', {'stage_sizes': (1, 1), 'width': 8, 'stem': 'cifar'}, (4, 8, 8, 3)),
])
def test_bfloat16_compute_returns_float32_logits_close_to_float32(name, fields, in_shape):
  x = _images(in_shape)
  f32 = models.get(name, num_classes=10, **fields)
  bf16 = models.get(name, num_classes=10, dtype=jnp.bfloat16, **fields)
  variables = _init(f32, x)
  # Training: float32 logits, and BatchNorm statistics stay float32 (dtypes only).
  logits, state = jax.eval_shape(
      lambda: bf16.apply(variables, x, train=True, mutable=['batch_stats'], rngs={'dropout': _key(0)}))
  assert logits.dtype == jnp.float32
  assert all(s.dtype == jnp.float32 for s in jax.tree.leaves(state))
  expected = _apply(f32, variables, x, train=False)
  got = _apply(bf16, variables, x, train=False)
  assert got.dtype == jnp.float32
  scale = float(jnp.abs(expected).max())
  np.testing.assert_allclose(got, expected, atol=0.05 * scale, rtol=0.05)


def test_param_dtype_sets_parameter_storage():
  model = models.get('cnn', num_classes=10, param_dtype='bfloat16', dtype='bfloat16')
  params = _abstract_init(model, (1, 8, 8, 1))['params']
  assert all(p.dtype == jnp.bfloat16 for p in jax.tree.leaves(nn.meta.unbox(params)))


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


def test_digits_cnn_overfits_random_labels():
  model = models.get('cnn', num_classes=10)
  x = _images((32, 8, 8, 1))
  labels = jnp.asarray(np.random.default_rng(1).integers(0, 10, size=32))
  params = _init(model, x)['params']
  tx = optax.adam(3e-3)

  def loss_fn(params):
    logits = model.apply({'params': params}, x, train=True)
    return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

  def step(carry, _):
    params, opt_state = carry
    grads = jax.grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state)
    return (optax.apply_updates(params, updates), opt_state), None

  (params, _), _ = jax.jit(lambda c: jax.lax.scan(step, c, length=200))((params, tx.init(params)))
  logits = model.apply({'params': params}, x, train=False)
  assert float((logits.argmax(-1) == labels).mean()) == 1.0
