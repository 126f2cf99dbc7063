"""A run's forward pass as ONNX (jax2onnx), float32 or statically quantized to int8 (onnxruntime),
with a symbolic batch dimension 'B'; and onnxruntime on CPU to run either.

  run = exportable.load_run(workdir)
  export_onnx.to_onnx(run, 'model.onnx')
  export_onnx.quantize_onnx('model.onnx', run, 'model.int8.onnx', num_batches=8)
  logits = export_onnx.onnx_session('model.int8.onnx')(images)

The graph's one input is named after the run's batch key ('image', 'inputs'), its output 'logits'.
"""

import copy
import itertools
import os
import tempfile
from collections.abc import Callable

import jax
import ml_collections
import numpy as np
import onnxruntime
from jax2onnx import to_onnx as jax_to_onnx
from onnxruntime import quantization as ort_quantization

import input_pipeline
import models
from models.recurrent import RecurrentStack
from train_lib import quantization, storage
from train_lib.errors import ConfigError
from train_lib.exportable import Exportable

# Models that loop over time with lax.scan (RecurrentStack: the classifier and forecaster).
_RECURRENT = (RecurrentStack, models.RecurrentLM)


def check_onnx(config: ml_collections.ConfigDict) -> None:
  """Refuses, in one ConfigError line before any tracing, a run whose model ONNX cannot hold."""
  name = config.model.name
  if any(name in models.names(of=family) for family in _RECURRENT):
    raise ConfigError(f"--format=onnx: model '{name}' is recurrent (lax.scan over time), which ONNX export does "
                      'not support; use --format=stablehlo')
  mode = quantization.settings(config).mode
  if mode != 'none':  # jax2onnx's patched flax layers cannot trace qwix's intercepted ones
    raise ConfigError(f"--format=onnx: the run is qwix-quantized (quantization.mode='{mode}'), which ONNX export "
                      'cannot trace; use --format=stablehlo, or --format=onnx --quantize=int8 on a float run')


def to_onnx(exportable: Exportable, path: str) -> None:
  """Writes the float32 ONNX graph of `exportable(x)` to `path`, the batch dimension symbolic."""
  check_onnx(exportable.config)
  x = exportable.inputs
  proto = jax_to_onnx(exportable, [jax.ShapeDtypeStruct(('B', *x.shape[1:]), x.dtype)],
                      model_name=exportable.config.model.name, input_names=[exportable.input_key],
                      output_names=['logits'])
  # jax2onnx 0.17 annotates some NHWC intermediates with NCHW shapes (onnxruntime warns and
  # ignores them). Annotations are optional: without them every runtime infers the shapes.
  del proto.graph.value_info[:]
  storage.write_atomically(storage.path(path), proto.SerializeToString())


def quantize_onnx(float_path: str, exportable: Exportable, out_path: str, num_batches: int = 8) -> None:
  """Writes to `out_path` the int8 form of the float graph at `float_path`: QDQ, weights signed
  and per output channel, activations unsigned (U8S8, the pairing onnxruntime's x86 int8 kernels
  are built for; its S8S8 default runs slower than float there), activation ranges calibrated
  (min/max) on `num_batches` training batches of the run's own data, read with its eval
  preprocessing (what the model sees when deployed)."""
  with tempfile.TemporaryDirectory() as scratch:
    # Shape inference and graph fusions first, as onnxruntime recommends: quantization then
    # sees the fused ops and every tensor's shape.
    prepared = os.path.join(scratch, 'prepared.onnx')
    ort_quantization.quant_pre_process(float_path, prepared)
    quantized = os.path.join(scratch, 'int8.onnx')
    ort_quantization.quantize_static(prepared, quantized, _Calibration(exportable, num_batches),
                                     quant_format=ort_quantization.QuantFormat.QDQ, per_channel=True,
                                     activation_type=ort_quantization.QuantType.QUInt8,
                                     weight_type=ort_quantization.QuantType.QInt8)
    storage.write_atomically(storage.path(out_path), storage.path(quantized).read_bytes())


class _Calibration(ort_quantization.CalibrationDataReader):
  """The input batches of the run's training loader, with pp_eval in place of pp_train: the
  train split (the test split stays unseen), without augmentation."""

  def __init__(self, exportable: Exportable, num_batches: int):
    config = exportable.config
    data = copy.deepcopy(config.data)
    data.pp_train = data.pp_eval
    loader = input_pipeline.make_train_loader(data, global_batch_size=config.batch_size, seed=config.seed,
                                              process_index=0, process_count=1)
    self._batches = itertools.islice(iter(loader), num_batches)
    self._input_key = exportable.input_key

  def get_next(self) -> dict[str, np.ndarray] | None:
    batch = next(self._batches, None)
    return None if batch is None else {self._input_key: batch[self._input_key]}


def onnx_session(path: str) -> Callable[[np.ndarray], np.ndarray]:
  """The ONNX graph at `path` in onnxruntime on CPU, as a function: input batch -> logits."""
  session = onnxruntime.InferenceSession(path, providers=['CPUExecutionProvider'])
  name = session.get_inputs()[0].name
  return lambda x: session.run(None, {name: x})[0]
