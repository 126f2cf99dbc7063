"""With kernels='xla' every model family is plain JAX: forward-mode derivatives go through it, it
exports with a symbolic batch, and its program holds no custom derivative or FFI call that
jax2onnx or qwix could not see."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import linen as nn
from jax import export

import kernels
import models

# One model of each family (registry name, fields, one example's shape, input dtype), small.
FAMILIES = [
    ('logreg', {'num_classes': 10}, (8, 8, 1), jnp.float32),
    ('mlp', {'num_classes': 10, 'hidden': (16,)}, (8, 8, 1), jnp.float32),
    ('cnn', {'num_classes': 10, 'features': (4, 8), 'hidden': (16,)}, (8, 8, 1), jnp.float32),
    ('mnist1d_cnn', {'num_classes': 10, 'features': (4, 4, 4)}, (40,), jnp.float32),
    ('resnet', {'num_classes': 10, 'stage_sizes': (1, 1), 'width': 4, 'stem': 'small'}, (8, 8, 1), jnp.float32),
    ('vit', {'num_classes': 10, 'width': 16, 'num_layers': 1, 'num_heads': 2, 'patch_size': 4}, (8, 8, 1),
     jnp.float32),
    ('transformer_lm', {'vocab_size': 11, 'width': 16, 'num_layers': 1, 'num_heads': 2, 'max_len': 8}, (8,),
     jnp.int32),
    ('lstm_classifier', {'num_classes': 10, 'hidden': 8, 'bidirectional': True}, (12, 2), jnp.float32),
    ('gru_forecaster', {'horizon': 4, 'hidden': 8}, (12,), jnp.float32),
    ('lstm_lm', {'vocab_size': 11, 'hidden': 8}, (8,), jnp.int32),
]
# What a plain program has none of: hand-written derivatives and calls into C++.
OPAQUE = ('custom_vjp_call', 'ffi_call')


def _inputs(shape, dtype, batch: int, seed: int) -> jax.Array:
  rng = np.random.default_rng(seed)
  if dtype == jnp.int32:
    return jnp.asarray(rng.integers(0, 11, (batch, *shape)), jnp.int32)
  return jnp.asarray(rng.normal(size=(batch, *shape)), jnp.float32)


@pytest.mark.parametrize('name,fields,shape,dtype', FAMILIES, ids=[f[0] for f in FAMILIES])
def test_jvp_and_export_go_through_every_family(name, fields, shape, dtype):
  with kernels.use('xla'):
    model = models.get(name, **fields)
    x = _inputs(shape, dtype, 3, seed=0)
    variables = nn.meta.unbox(jax.jit(lambda x: model.init(jax.random.key(0), x, train=False))(x))
    params, rest = variables['params'], {k: v for k, v in variables.items() if k != 'params'}
    apply = lambda params, x: model.apply({'params': params, **rest}, x, train=False)

    # Forward mode, along a random direction in parameter space, against central differences.
    # Drawn in one compiled call: eager normals compiled a program per leaf.
    @jax.jit
    def unit_direction(params):
      leaves, tree = jax.tree.flatten(params)
      keys = jax.random.split(jax.random.key(1), len(leaves))
      direction = jax.tree.unflatten(tree, [jax.random.normal(k, p.shape, p.dtype) for k, p in zip(keys, leaves)])
      return jax.tree.map(lambda d: d / optax.tree.norm(direction), direction)  # a unit step

    direction = unit_direction(params)
    jaxpr = str(jax.make_jaxpr(lambda p: jax.jvp(lambda p: apply(p, x), (p,), (direction,)))(params))
    assert not [op for op in OPAQUE if op in jaxpr]
    _, tangent = jax.jit(lambda p: jax.jvp(lambda p: apply(p, x), (p,), (direction,)))(params)
    eps = 1e-2
    shifted = jax.jit(lambda sign: apply(jax.tree.map(lambda p, d: p + sign * eps * d, params, direction), x))
    np.testing.assert_allclose(tangent, (shifted(1.0) - shifted(-1.0)) / (2 * eps),
                               rtol=2e-2, atol=2e-2 * float(jnp.abs(tangent).max()))

    # Export with a symbolic batch; serialized, deserialized and called at two batch sizes.
    batch = export.symbolic_shape('b')[0]
    exported = export.export(jax.jit(lambda x: apply(params, x)))(jax.ShapeDtypeStruct((batch, *shape), dtype))
    restored = export.deserialize(exported.serialize())
    for size, seed in ((3, 0), (5, 2)):
      x = _inputs(shape, dtype, size, seed)
      np.testing.assert_allclose(restored.call(x), jax.jit(apply)(params, x), rtol=1e-5, atol=1e-5)


def test_auto_takes_the_opaque_fast_paths_on_one_cpu_device():
  """The other side of the switch: the GPT's train-time program under 'auto' holds them."""
  if jax.default_backend() != 'cpu' or jax.device_count() != 1:
    pytest.skip('the FFI kernels run on a single CPU device')
  model = models.get('transformer_lm', vocab_size=11, width=16, num_layers=1, num_heads=2, max_len=8)
  x = _inputs((8,), jnp.int32, 2, seed=0)
  with kernels.use('auto'):
    params = jax.eval_shape(lambda: nn.meta.unbox(model.init(jax.random.key(0), x, train=False))['params'])
    jaxpr = str(jax.make_jaxpr(jax.grad(lambda p: model.apply({'params': p}, x, train=False).sum()))(params))
  assert 'custom_vjp_call' in jaxpr
