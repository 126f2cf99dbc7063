"""Every experiment file loads, documents its command, trains with tiny=True, and writes the
metric keys metric_keys.json lists for it (a new experiment adds its own there). Generators
are scored by tiny runs of their data set's classifier and must write readable sample grids."""

import glob
import json
import os
import pathlib

import pytest
from PIL import Image

from tests.conftest import REPO
from train_lib import train_and_evaluate
from train_lib.metric_writer import read_metrics

EXPERIMENTS = sorted(
    os.path.basename(p)[:-3] for p in glob.glob(os.path.join(REPO, 'experiments', '*.py'))
    if not os.path.basename(p).startswith(('_', 'common')))


# Experiment -> (its arg naming another run, the experiment that trains that run): a generator's
# classifier (its feature space), a student's teacher.
SOURCES = {'digits_gan': ('classifier', 'digits_cnn'), 'digits_diffusion': ('classifier', 'digits_cnn'),
           'fashion_mnist_gan': ('classifier', 'fashion_mnist_resnet'),
           'fashion_mnist_diffusion': ('classifier', 'fashion_mnist_resnet'),
           'fashion_mnist_distill': ('teacher', 'fashion_mnist_resnet'),
           'shakespeare_distill': ('teacher', 'shakespeare_gpt')}
GENERATORS = [name for name, (arg, _) in SOURCES.items() if arg == 'classifier']

METRIC_KEYS = json.loads(pathlib.Path(__file__).with_name('metric_keys.json').read_text())


def _load(name):
  return __import__(f'experiments.{name}', fromlist=['get_config'])


def test_experiments_exist():
  assert {'digits_cnn', 'mnist1d', 'fashion_mnist_resnet'} <= set(EXPERIMENTS)


@pytest.mark.parametrize('name', EXPERIMENTS)
def test_docstring_gives_the_command(name):
  doc = _load(name).__doc__
  assert f'--config=experiments/{name}.py' in doc or name == 'digits_cnn'
  assert 'python -m train_lib.main' in doc


@pytest.fixture(scope='module')
def source_runs(tmp_path_factory):
  """Tiny runs of the experiments other experiments read, trained when one first asks."""
  runs = {}

  def run(name):
    if name not in runs:
      runs[name] = str(tmp_path_factory.mktemp(name))
      train_and_evaluate(_load(name).get_config('tiny=True'), runs[name])
    return runs[name]

  return run


@pytest.mark.parametrize('name', EXPERIMENTS)
def test_tiny_run(name, tmp_path, source_runs):
  arg = 'tiny=True'
  if name in SOURCES:
    source_arg, source = SOURCES[name]
    arg += f',{source_arg}={source_runs(source)}'
  config = _load(name).get_config(arg)
  assert config.tiny
  final = train_and_evaluate(config, str(tmp_path))
  counts = [v for k, v in final.items() if k in ('eval/num_examples', 'eval/num_tokens')]
  assert counts and counts[0] > 0
  assert final.get('eval/num_examples', 0) <= 1000  # Fashion-MNIST's tiny runs evaluate 1,000 of 10,000
  records = read_metrics(str(tmp_path))
  assert records[-1]['step'] == config.total_steps
  assert sorted({key for record in records for key in record}) == METRIC_KEYS[name]
  assert os.listdir(os.path.join(str(tmp_path), 'checkpoints')) == [str(config.total_steps)]
  if name in GENERATORS:
    grids = glob.glob(os.path.join(str(tmp_path), 'samples', '*.png'))
    assert grids
    for grid in grids:
      with Image.open(grid) as image:
        assert image.size[0] > 64 and image.mode == 'L'


@pytest.mark.parametrize('model', ['logreg', 'mlp', 'gru'])
def test_mnist1d_variants_build(model, tmp_path):
  from experiments import mnist1d
  config = mnist1d.get_config(f'model={model},tiny=True')
  train_and_evaluate(config, str(tmp_path))
