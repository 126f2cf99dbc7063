"""qwix quantization on the one trainer: a QAT run trains a float tree through fake-quantized ops;
`train_lib.quantize` writes a post-training quantized run whose int8/int4 weights round-trip through
its checkpoint, evaluate with the source's evaluators and serve as a frozen part; bad settings are
one line."""

import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from tests.conftest import REPO, small_digits_config
from train_lib import frozen, from_run, train_and_evaluate
from train_lib.errors import ConfigError
from train_lib.metric_writer import read_metrics
from train_lib.quantize import quantize_run


@pytest.fixture(scope='module')
def float_run(tmp_path_factory) -> tuple[str, dict]:
  workdir = str(tmp_path_factory.mktemp('float'))
  return workdir, train_and_evaluate(small_digits_config(total_steps=60), workdir)


def _saved_params(workdir: str) -> dict:
  return from_run.state_shapes(from_run.open_run(workdir, what='test').directory)['params']


@pytest.mark.parametrize('scheme, dtype', [('int8', 'int8'), ('int8_static', 'int8'), ('int4_weights', 'int4')])
def test_a_quantized_run_evaluates_like_its_source_and_round_trips(float_run, scheme, dtype, tmp_path):
  source, float_metrics = float_run
  out = str(tmp_path / scheme)
  metrics = quantize_run(source, out, scheme, calibration_batches=2)
  assert abs(metrics['eval/accuracy'] - float_metrics['eval/accuracy']) <= 0.03
  assert read_metrics(out)[-1]['eval/accuracy'] == metrics['eval/accuracy']  # written as a run's are
  saved = _saved_params(out)
  assert str(saved['head']['kernel']['array']['qvalue'].dtype) == dtype  # the head is a dot in every scheme
  assert saved['hidden_0']['bias'].dtype == np.float32
  # The checkpoint restores, as a frozen part, to the values quantizing the source gives here.
  model, variables = frozen.load(out)
  _, float_variables = frozen.load(source)
  qvalues = variables['params']['head']['kernel'].array.qvalue
  scale = variables['params']['head']['kernel'].array.scale
  np.testing.assert_allclose(np.asarray(qvalues, np.float32) * scale, float_variables['params']['head']['kernel'],
                             atol=float(scale.max()) / 2 * 1.0001)
  x = jax.random.uniform(jax.random.key(0), (4, 8, 8, 1))
  assert model.apply(variables, x, train=False).shape == (4, 10)
  # A static scheme stores each quantized op's input scale, calibrated on training batches.
  input_scales = [p for p, _ in jax.tree_util.tree_flatten_with_path(saved)[0] if 'lhs_scale' in jax.tree_util.keystr(p)]
  assert len(input_scales) == (4 if scheme == 'int8_static' else 0)  # two convs and two dense layers


def test_qat_trains_the_float_tree_through_quantized_ops(float_run, tmp_path):
  config = small_digits_config(total_steps=60, **{'quantization.mode': 'qat'})
  metrics = train_and_evaluate(config, str(tmp_path / 'qat'))
  assert metrics['eval/accuracy'] > 0.5
  shapes = lambda tree: jax.tree.map(lambda s: (s.shape, str(s.dtype)), tree)
  assert shapes(_saved_params(str(tmp_path / 'qat'))) == shapes(_saved_params(float_run[0]))
  assert metrics['eval/accuracy'] != float_run[1]['eval/accuracy'] or metrics['eval/loss'] != float_run[1]['eval/loss']


def test_quantizing_into_an_existing_run_is_refused(float_run):
  with pytest.raises(ConfigError, match=r'--out: .* already holds a run; choose a new directory'):
    quantize_run(float_run[0], float_run[0], 'int8')


@pytest.mark.parametrize('overrides, message', [
    ({'quantization.mode': 'int8'}, r"quantization.mode: unknown 'int8'; valid modes are \['none', 'qat', 'ptq'\]"),
    ({'quantization.scheme': 'int3'}, r"quantization.scheme: unknown quantization scheme 'int3'"),
    ({'quantization.mode': 'qat', 'kernels': 'auto'}, r"quantization.mode 'qat' needs kernels='xla'"),
    ({'quantization.mode': 'ptq'}, r"quantization.mode='ptq': the run in .* has no quantized checkpoint at step 40; "
                                   r'write one with python -m train_lib.quantize'),
])
def test_a_bad_quantization_setting_is_one_line(overrides, message, tmp_path):
  with pytest.raises(ConfigError, match=message) as error:
    train_and_evaluate(small_digits_config(**overrides), str(tmp_path / 'run'))
  assert '\n' not in str(error.value)


def test_the_command_line_refuses_an_unknown_scheme_in_one_line(float_run, tmp_path):
  result = subprocess.run([sys.executable, '-m', 'train_lib.quantize', f'--workdir={float_run[0]}',
                           f'--out={tmp_path / "q"}', '--scheme=int3'], cwd=REPO, capture_output=True, text=True)
  assert result.returncode != 0 and not os.path.exists(tmp_path / 'q')
  assert 'flag --scheme=int3: value should be one of <int8|int8_static|int8_weights|int4_weights>' in result.stderr
