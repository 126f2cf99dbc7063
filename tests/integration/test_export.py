"""Export: a tiny digits CNN to StableHLO (any batch size, the JAX outputs back), to ONNX (the JAX
logits to 1e-4 over the whole test split) and to int8 ONNX (smaller, about as accurate); a tiny
ResNet's BatchNorm in inference mode; and the command line's file, refusals and summary."""

import os
import subprocess
import sys

import numpy as np
import pytest

from experiments import fashion_mnist_resnet, shakespeare_gpt, shakespeare_lstm
from tests.conftest import REPO, small_digits_config
from train_lib import export, export_onnx, export_stablehlo, exportable, train_and_evaluate
from train_lib.errors import ConfigError


def _train(tmp_path_factory, name: str, config) -> str:
  workdir = str(tmp_path_factory.mktemp(name))
  train_and_evaluate(config, workdir)
  return workdir


@pytest.fixture(scope='module')
def digits_workdir(tmp_path_factory) -> str:
  return _train(tmp_path_factory, 'digits', small_digits_config(total_steps=20, eval_every=20,
                                                                **{'checkpoint.every': 20}))


@pytest.fixture(scope='module')
def digits(digits_workdir) -> exportable.Exportable:
  return exportable.load_run(digits_workdir)


def _export(*args: str) -> subprocess.CompletedProcess:
  return subprocess.run([sys.executable, '-m', 'train_lib.export', *args], cwd=REPO, capture_output=True,
                        text=True, timeout=300)


def test_stablehlo_round_trips_to_the_jax_outputs_at_any_batch_size(digits):
  run = export_stablehlo.load_stablehlo(export_stablehlo.to_stablehlo(digits))
  for x in (digits.inputs, digits.inputs[:3]):
    np.testing.assert_allclose(run(x), digits(x), atol=1e-5)


def test_onnx_gives_the_jax_logits_over_the_whole_test_split(digits, tmp_path):
  path = str(tmp_path / 'digits.onnx')
  export_onnx.to_onnx(digits, path)
  result = exportable.compare(digits, {'onnx': export_onnx.onnx_session(path)})
  assert result.num_examples == 360  # the digits test split
  assert result.max_abs_diff['onnx'] <= 1e-4
  assert result.accuracy['onnx'] == result.jax_accuracy > 0.5


def test_int8_onnx_is_smaller_and_about_as_accurate(digits, digits_workdir, tmp_path):
  out = str(tmp_path / 'digits.int8.onnx')
  exported = export.export(digits_workdir, 'onnx', out, quantize='int8', calibration_batches=2)
  accuracy = exported.comparison.accuracy
  assert abs(accuracy['int8'] - accuracy['onnx']) <= 0.05, accuracy
  assert exported.num_bytes == os.path.getsize(out) < exported.float_bytes / 2
  assert export_onnx.onnx_session(out)(digits.inputs[:2]).shape == (2, 10)


def test_batch_norm_exports_in_inference_mode(tmp_path_factory):
  config = fashion_mnist_resnet.get_config('tiny=True')
  config.kernels = 'xla'  # the export traces plain JAX; training here needs no oneDNN build
  config.total_steps, config.optimizer.warmup_steps, config.data.eval_split = 2, 1, 'test[:200]'
  run = exportable.load_run(_train(tmp_path_factory, 'resnet', config))
  assert 'batch_stats' in run.variables
  path = str(tmp_path_factory.mktemp('resnet_onnx') / 'resnet.onnx')
  export_onnx.to_onnx(run, path)
  result = exportable.compare(run, {'onnx': export_onnx.onnx_session(path)})
  assert result.max_abs_diff['onnx'] <= 1e-4
  assert result.accuracy['onnx'] == result.jax_accuracy


def test_the_command_line_writes_a_checked_file_that_loads(digits, digits_workdir, tmp_path):
  out = tmp_path / 'digits.stablehlo'
  result = _export(f'--workdir={digits_workdir}', '--format=stablehlo', f'--out={out}')
  assert result.returncode == 0, result.stderr[-2000:]
  assert result.stdout.startswith(f'stablehlo -> {out}: ')
  assert 'on test (360 examples): stablehlo ' in result.stdout
  np.testing.assert_allclose(export_stablehlo.load_stablehlo(out.read_bytes())(digits.inputs[:1]),
                             digits(digits.inputs[:1]), atol=1e-5)
  assert os.listdir(tmp_path) == ['digits.stablehlo']  # no temporary file left beside it


@pytest.fixture(scope='module')
def lstm_workdir(tmp_path_factory) -> str:
  config = small_digits_config(total_steps=2, eval_every=2, log_every=1, **{'checkpoint.every': 2})
  config.model = {'name': 'lstm_classifier', 'hidden': 8}  # reads each 8x8 image as 8 steps of 8
  return _train(tmp_path_factory, 'lstm', config)


# case -> (the run, the --format flag, the start of the one line on stderr after 'lamina: export: ').
_BAD_REQUESTS = {
    'bad format': ('digits', '--format=tflite', 'flag --format=tflite: value should be one of <onnx|stablehlo>'),
    'recurrent to onnx': ('lstm', '--format=onnx', "--format=onnx: model 'lstm_classifier' is recurrent (lax.scan "
                          'over time), which ONNX export does not support; use --format=stablehlo'),
    'no checkpoint': ('empty', '--format=onnx', '--workdir: no checkpoint in '),
}


@pytest.mark.parametrize('case', _BAD_REQUESTS)
def test_bad_requests_are_one_line_and_write_nothing(case, digits_workdir, lstm_workdir, tmp_path):
  run, format_flag, line = _BAD_REQUESTS[case]
  workdir = {'digits': digits_workdir, 'lstm': lstm_workdir, 'empty': str(tmp_path / 'empty')}[run]
  out = tmp_path / 'out' / 'model'
  result = _export(f'--workdir={workdir}', format_flag, f'--out={out}')
  assert result.returncode != 0
  assert result.stderr.strip().splitlines() == [result.stderr.strip()]  # one line, no traceback
  assert result.stderr.startswith(f'lamina: export: {line}')
  assert not out.parent.exists()


def test_refusals_before_anything_is_read(digits_workdir, tmp_path):
  with pytest.raises(ConfigError, match='--format=stablehlo'):
    export_onnx.check_onnx(shakespeare_lstm.get_config('tiny=True'))  # lstm_lm: recurrent too
  qat = small_digits_config(**{'quantization.mode': 'qat'})
  with pytest.raises(ConfigError, match="qwix-quantized \\(quantization.mode='qat'\\).*use --format=stablehlo"):
    export_onnx.check_onnx(qat)
  with pytest.raises(ConfigError, match='int8 StableHLO is the --format=stablehlo export of a qwix-quantized run'):
    export.export(digits_workdir, 'stablehlo', str(tmp_path / 'x'), quantize='int8')
  with pytest.raises(ConfigError, match="--quantize must be one of int8, got 'int4'"):
    export.export(digits_workdir, 'onnx', str(tmp_path / 'x'), quantize='int4')
  assert not os.listdir(tmp_path)


def test_int8_onnx_of_a_language_model_is_refused_in_one_line(tmp_path_factory, tmp_path):
  workdir = _train(tmp_path_factory, 'gpt', shakespeare_gpt.get_config('tiny=True'))
  with pytest.raises(ConfigError, match=r"^--quantize=int8: onnxruntime's static quantization of a language "
                                        r'model.*--format=stablehlo$'):
    export.export(workdir, 'onnx', str(tmp_path / 'x'), quantize='int8')
  assert not os.listdir(tmp_path)


def test_an_export_that_does_not_match_is_not_written(digits_workdir, tmp_path, monkeypatch):
  monkeypatch.setattr(export, 'TOLERANCE', -1.0)  # no difference passes
  with pytest.raises(export.ExportMismatch, match='nothing written to'):
    export.export(digits_workdir, 'stablehlo', str(tmp_path / 'x'))
  assert not os.listdir(tmp_path)
