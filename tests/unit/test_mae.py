"""train_lib/tasks/mae.py and models/mae.py: the parameter layout a fine-tune relies on (the
classifier's ViT minus its head, plus 'mae_decoder'), the masking, the masked-patch loss and
the task's errors. The experiment's tiny run is in test_experiments.py."""

import types

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest
from flax import linen as nn
from flax import traverse_util

from experiments import fashion_mnist_mae, fashion_mnist_vit
from train_lib import tasks
from train_lib.errors import ConfigError
from train_lib.tasks import mae

DATA_INFO = {'name': 'fashion_mnist', 'num_classes': 10}
BATCH = {'image': jax.ShapeDtypeStruct((2, 28, 28, 1), jnp.float32), 'label': jax.ShapeDtypeStruct((2,), jnp.int32)}


def _layout(config) -> dict[str, tuple]:
  """{path: (shape, dtype, logical axes)} of the task's parameters, from shapes alone."""
  task = tasks.get(config, DATA_INFO)
  boxed = jax.eval_shape(task.init_variables, jax.random.key(0), BATCH)['params']
  specs = traverse_util.flatten_dict(nn.get_partition_spec(boxed), sep='/')
  params = traverse_util.flatten_dict(nn.meta.unbox(boxed), sep='/')
  return {path: (p.shape, p.dtype, specs[path]) for path, p in params.items()}


@pytest.mark.parametrize('overrides', [{}, {'model.pool': 'cls'}, {'param_dtype': 'bfloat16'}])
def test_encoder_params_are_the_classifiers_without_head(overrides):
  classifier, pretrainer = fashion_mnist_vit.get_config(), fashion_mnist_mae.get_config()
  assert pretrainer.model == classifier.model
  for config in (classifier, pretrainer):
    config.update_from_flattened_dict(overrides)
  vit, mae_params = _layout(classifier), _layout(pretrainer)
  encoder = {path: v for path, v in mae_params.items() if not path.startswith(f'{mae.DECODER}/')}
  assert encoder == {path: v for path, v in vit.items() if not path.startswith('head/')}
  assert any(path.startswith('head/') for path in vit)
  decoder = {path.split('/', 1)[1] for path in mae_params if path.startswith(f'{mae.DECODER}/')}
  assert {'embedding/kernel', 'mask_token', 'position_embedding', 'block_1/attention/qkv_kernel',
          'final_norm/scale', 'pixel_projection/kernel'} <= decoder
  assert 'block_2/attention/qkv_kernel' not in decoder  # decoder_layers=2
  assert mae_params[f'{mae.DECODER}/pixel_projection/kernel'][0] == (64, 7 * 7 * 1)  # decoder width -> a patch's pixels


def test_random_keep_is_a_per_example_subset():
  keep = np.asarray(mae.random_keep(jax.random.key(0), 8, 16, 4))
  assert keep.shape == (8, 4) and keep.dtype == np.int32
  assert all(len(set(row)) == 4 and set(row) <= set(range(16)) for row in keep)
  assert len({tuple(row) for row in keep}) > 1  # each example draws its own
  np.testing.assert_array_equal(keep, mae.random_keep(jax.random.key(0), 8, 16, 4))


def test_num_kept():
  assert mae.num_kept(16, 0.75) == 4
  assert mae.num_kept(196, 0.75) == 49
  with pytest.raises(ConfigError, match='keeps 0 of 16 patches'):
    mae.num_kept(16, 0.99)


def test_normalize_patches():
  patches = jax.random.normal(jax.random.key(1), (2, 5, 12)) * 3 + 2
  normalized = mae.normalize_patches(patches)
  np.testing.assert_allclose(normalized.mean(-1), 0, atol=1e-5)
  np.testing.assert_allclose(normalized.var(-1), 1, atol=1e-4)
  assert not np.any(np.isnan(mae.normalize_patches(jnp.zeros((1, 2, 3)))))  # blank patches stay finite


def test_loss_counts_only_the_hidden_patches():
  target = jax.random.normal(jax.random.key(2), (2, 6, 5))
  keep = jnp.array([[0, 3], [5, 1]])
  np.testing.assert_allclose(mae.masked_patch_loss(target, target, keep), [0, 0])
  # Anything at a visible patch costs nothing.
  wrong_visible = target.at[0, 3].add(7.0).at[1, 1].add(-2.0)
  np.testing.assert_allclose(mae.masked_patch_loss(wrong_visible, target, keep), [0, 0])
  # An error of 1 on every pixel of one of the 4 hidden patches: mean over hidden patches = 1/4.
  wrong_hidden = target.at[0, 2].add(1.0)
  np.testing.assert_allclose(mae.masked_patch_loss(wrong_hidden, target, keep), [0.25, 0], atol=1e-6)


def _tiny_task():
  config = fashion_mnist_mae.get_config('tiny=True')
  config.model.update({'width': 16, 'num_layers': 1, 'num_heads': 2})
  config.task.update({'decoder_width': 8, 'decoder_layers': 1, 'decoder_heads': 2})
  return tasks.get(config, DATA_INFO)


def test_train_loss_draws_masks_and_eval_is_deterministic():
  task = _tiny_task()
  # rbg keys: XLA:CPU compiles threefry's random bits several times slower.
  key = lambda seed: jax.random.key(seed, impl='rbg')
  batch = {'image': jax.random.uniform(key(3), (4, 28, 28, 1))}
  params = jax.jit(task.init_variables)(key(0), batch)['params']
  state = types.SimpleNamespace(model_state={})
  loss = jax.jit(lambda rng: task.loss(params, state, batch, rng)[0])
  assert np.isfinite(loss(key(1))) and loss(key(1)) != loss(key(2))
  evaluate = jax.jit(lambda: task.eval_metrics(params, state, batch)['loss'])
  first = evaluate()
  assert first.shape == (4,)
  np.testing.assert_array_equal(first, evaluate())


@pytest.mark.parametrize('edit,needle', [
    (lambda c: c.task.update(mask_ratio=1.0), r'task.mask_ratio must be in \(0, 1\), got 1.0'),
    (lambda c: setattr(c, 'model', ml_collections.ConfigDict({'name': 'cnn'})),
     "task 'mae' pretrains a ViT; model.name 'cnn' is a CNN"),
    (lambda c: c.task.update(decoder_width=30), 'task: decoder: width=30 must be a multiple of num_heads=4'),
])
def test_config_errors(edit, needle):
  config = fashion_mnist_mae.get_config()
  edit(config)
  with pytest.raises(ConfigError, match=needle):
    tasks.get(config, DATA_INFO)
