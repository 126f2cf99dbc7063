"""The SimCLR task: its parameter layout (the classifier's backbone, by path), NT-Xent against a
direct reading of the paper's formula, eval padding, and its config errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn

import models
from experiments import fashion_mnist_resnet, fashion_mnist_simclr
from train_lib.errors import ConfigError
from train_lib.tasks.classification import ClassificationTask
from train_lib.tasks.simclr import PROJECTION, SimCLRTask, interleave, nt_xent

DATA_INFO = {'num_classes': 10}  # all either task reads of the data set


def _described(variables: dict) -> dict:
  """{collection: {path: (shape, dtype, logical axis names or None)}} of abstract, boxed variables."""
  is_box = lambda x: isinstance(x, nn.LogicallyPartitioned)

  def describe(leaf):
    value, names = (leaf.value, leaf.names) if is_box(leaf) else (leaf, None)
    return value.shape, value.dtype, names
  return {collection: {jax.tree_util.keystr(path): describe(leaf)
                       for path, leaf in jax.tree_util.tree_leaves_with_path(tree, is_leaf=is_box)}
          for collection, tree in variables.items()}


def _abstract_variables(task, image_shape=(4, 28, 28, 1)) -> dict:
  image = jax.ShapeDtypeStruct(image_shape, jnp.float32)
  return jax.eval_shape(task.init_variables, jax.random.key(0), {'image': image, 'image2': image})


@pytest.mark.parametrize('compute_dtype', ['float32', 'bfloat16'])
def test_params_are_the_classifiers_without_head_plus_the_projector(compute_dtype):
  classifier_config = fashion_mnist_resnet.get_config(f'compute_dtype={compute_dtype}')
  simclr_config = fashion_mnist_simclr.get_config(f'compute_dtype={compute_dtype}')
  assert simclr_config.model == classifier_config.model  # one shared network definition
  classifier = _described(_abstract_variables(ClassificationTask(classifier_config, DATA_INFO)))
  simclr = _described(_abstract_variables(SimCLRTask(simclr_config, DATA_INFO)))

  assert set(simclr) == set(classifier) == {'params', 'batch_stats'}
  for collection in classifier:
    backbone = {path: v for path, v in simclr[collection].items() if not path.startswith(f"['{PROJECTION}']")}
    expected = {path: v for path, v in classifier[collection].items() if not path.startswith("['head']")}
    assert backbone == expected, collection  # same paths, shapes, dtypes and logical axes
  assert any(path.startswith("['head']") for path in classifier['params'])
  projector = sorted(path for path in simclr['params'] if path.startswith(f"['{PROJECTION}']"))
  assert projector == [f"['{PROJECTION}']['hidden']['kernel']", f"['{PROJECTION}']['hidden_bn']['bias']",
                       f"['{PROJECTION}']['hidden_bn']['scale']", f"['{PROJECTION}']['out']['bias']",
                       f"['{PROJECTION}']['out']['kernel']"]
  assert simclr['params'][f"['{PROJECTION}']['hidden']['kernel']"][0] == (64, 128)
  assert simclr['params'][f"['{PROJECTION}']['out']['kernel']"][0] == (128, 64)


def test_resnet_without_classes_returns_the_pooled_embedding():
  model = models.get('resnet', num_classes=None, stage_sizes=(1, 1), width=8, stem='cifar')
  embedding, variables = jax.eval_shape(
      lambda: model.init_with_output(jax.random.key(0), jnp.zeros((2, 16, 16, 3)), train=False))
  assert embedding.shape == (2, 16) and embedding.dtype == jnp.float32
  assert 'head' not in variables['params']


def _reference_nt_xent(z: np.ndarray, temperature: float) -> np.ndarray:
  """The paper's l(i, j) = -log(exp(s_ij / t) / sum_{k != i} exp(s_ik / t)), one row at a time."""
  z = z / np.linalg.norm(z, axis=1, keepdims=True)
  losses = []
  for i in range(len(z)):
    j = i + 1 if i % 2 == 0 else i - 1
    s = z @ z[i] / temperature
    losses.append(-s[j] + np.log(sum(np.exp(s[k]) for k in range(len(z)) if k != i)))
  return np.array(losses)


def test_nt_xent_matches_the_papers_formula():
  z = np.random.default_rng(0).normal(size=(12, 5)).astype(np.float32)
  loss, top1 = nt_xent(jnp.asarray(z), 0.3)
  np.testing.assert_allclose(loss, _reference_nt_xent(z.astype(np.float64), 0.3), rtol=1e-5)
  sims = (z / np.linalg.norm(z, axis=1, keepdims=True)) @ (z / np.linalg.norm(z, axis=1, keepdims=True)).T
  np.fill_diagonal(sims, -np.inf)
  np.testing.assert_array_equal(top1, sims.argmax(1) == np.arange(12) ^ 1)


def test_nt_xent_finds_partners_that_are_the_same_vector():
  views = np.random.default_rng(1).normal(size=(6, 8)).astype(np.float32)
  z = interleave(jnp.asarray(views), jnp.asarray(2 * views))  # same direction: cosine 1
  loss, top1 = nt_xent(z, 0.1)
  np.testing.assert_array_equal(top1, 1.0)
  assert float(loss.max()) < float(nt_xent(jnp.asarray(np.random.default_rng(2).normal(size=(12, 8))), 0.1)[0].min())


def test_eval_padding_is_not_a_negative_of_real_images():
  z = jnp.asarray(np.random.default_rng(0).normal(size=(10, 4)), jnp.float32)
  padded = jnp.concatenate([z, jnp.zeros((6, 4))])  # three padded images, zero views
  loss, top1 = nt_xent(padded, 0.2, valid=jnp.array([1, 1, 1, 1, 1, 0, 0, 0], jnp.float32))
  alone_loss, alone_top1 = nt_xent(z, 0.2)
  np.testing.assert_allclose(loss[:10], alone_loss, rtol=1e-6)
  np.testing.assert_array_equal(top1[:10], alone_top1)
  assert np.all(np.isfinite(loss))  # padded rows are masked by the evaluator: 0 * finite


@pytest.mark.parametrize('override, message', [
    ({'temperature': 0.0}, 'task.temperature must be a number > 0'),
    ({'views': ('image', 'image')}, 'task.views must name two different batch keys'),
    ({'projection_dim': 0}, 'task: projection: features must be an int >= 1'),
])
def test_bad_task_fields_are_one_line_config_errors(override, message):
  config = fashion_mnist_simclr.get_config()
  config.task.update(override)
  with pytest.raises(ConfigError, match=message):
    SimCLRTask(config, DATA_INFO)


def test_a_backbone_without_a_features_mode_is_refused():
  config = fashion_mnist_simclr.get_config()
  config.model = {'name': 'cnn'}
  with pytest.raises(ConfigError, match="task 'simclr' pretrains a ResNet; model.name 'cnn' is a CNN"):
    SimCLRTask(config, DATA_INFO)
