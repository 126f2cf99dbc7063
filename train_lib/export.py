r"""Command line: export a trained classifier or language model for deployment, and check it.

  python -m train_lib.export --workdir=/tmp/lamina/fmnist_resnet --format=onnx|stablehlo \
      [--quantize=int8] [--step=N] [--ema] [--calibration_batches=8] --out=model.onnx

--format=stablehlo writes jax.export's serialized StableHLO (train_lib/export_stablehlo.py);
--format=onnx an ONNX graph (train_lib/export_onnx.py), int8 with --quantize=int8 (static, QDQ,
calibrated on training batches). Both take any batch size. Before --out is written the export
is run against the JAX model on the run's whole eval split and on a batch of one, and refused
when its logits differ by more than TOLERANCE (a float model; int8 ones are reported, not bounded).
The summary gives the file's size, the largest |logit difference| and the accuracies.
"""

import dataclasses
import logging
import os
import sys
import tempfile
from collections.abc import Callable

import numpy as np
from absl import app, flags
from absl import logging as absl_logging
from etils import epath

from train_lib import export_stablehlo, exportable, from_run, log_filter, quantization, storage
from train_lib.errors import ConfigError

# Largest |logit difference| from the JAX model a float export may show: float32 sums in another
# order (weights folded in as constants, another runtime's kernels) move logits by rounding only,
# an order of magnitude or more below it (docs/edge.md).
TOLERANCE = 1e-4
FORMATS = ('onnx', 'stablehlo')
QUANTIZATIONS = ('int8',)


class ExportMismatch(RuntimeError):
  """An export whose outputs differ from the JAX model's; nothing was written."""


@dataclasses.dataclass(frozen=True)
class Exported:
  """One written export and how it compares with the JAX model."""

  format: str
  path: str
  num_bytes: int
  comparison: exportable.Comparison
  batch_one_diff: float  # max |logit difference| at batch size 1: the batch dimension is symbolic
  float_bytes: int | None = None  # the float graph's size, for an int8 export


def export(workdir: str, fmt: str, out: str, *, step: int | None = None, ema: bool = False,
           quantize: str | None = None, calibration_batches: int = 8) -> Exported:
  """Exports the run in `workdir` to `out`, writing it only once it matches the JAX model.

  Bad requests (no checkpoint, a task or model the format cannot hold, int8 StableHLO) are one
  ConfigError line each, before any weights are read or anything is traced.
  """
  if fmt not in FORMATS:
    raise ConfigError(f'--format must be one of {", ".join(FORMATS)}, got {fmt!r}')
  if quantize not in (None, *QUANTIZATIONS):
    raise ConfigError(f'--quantize must be one of {", ".join(QUANTIZATIONS)}, got {quantize!r}')
  if quantize and calibration_batches < 1:
    raise ConfigError(f'--calibration_batches must be >= 1, got {calibration_batches}')
  if quantize and fmt == 'stablehlo':
    raise ConfigError('--quantize=int8 takes --format=onnx; int8 StableHLO is the --format=stablehlo export of a '
                      'qwix-quantized run (python -m train_lib.quantize)')
  config = from_run.open_run(workdir, step, what='--workdir').config
  exportable.check_task(config)
  if quantize and exportable.model_task(config) == 'language_model':
    raise ConfigError("--quantize=int8: onnxruntime's static quantization of a language model's graph loses most "
                      'of its accuracy (docs/edge.md); export the qwix int8 run (python -m train_lib.quantize) with '
                      '--format=stablehlo')
  if fmt == 'onnx':
    from train_lib import export_onnx  # jax2onnx and onnxruntime: only ONNX exports pay for them
    export_onnx.check_onnx(config)
  run = exportable.load_run(workdir, step, ema)
  if fmt == 'stablehlo':
    return _stablehlo(run, out)
  return _onnx(run, out, quantize, calibration_batches)


def _stablehlo(run: exportable.Exportable, out: str) -> Exported:
  data = export_stablehlo.to_stablehlo(run)
  return _check_and_write(run, 'stablehlo', export_stablehlo.load_stablehlo(data), data, out)


def _onnx(run: exportable.Exportable, out: str, quantize: str | None, calibration_batches: int) -> Exported:
  from train_lib import export_onnx
  with tempfile.TemporaryDirectory() as scratch:
    float_path = os.path.join(scratch, 'float.onnx')
    export_onnx.to_onnx(run, float_path)
    float_onnx = export_onnx.onnx_session(float_path)
    if not quantize:
      return _check_and_write(run, 'onnx', float_onnx, epath.Path(float_path).read_bytes(), out)
    int8_path = os.path.join(scratch, 'int8.onnx')
    export_onnx.quantize_onnx(float_path, run, int8_path, calibration_batches)
    return _check_and_write(run, 'onnx', float_onnx, epath.Path(int8_path).read_bytes(), out,
                            int8=export_onnx.onnx_session(int8_path), float_bytes=os.path.getsize(float_path))


def _check_and_write(run: exportable.Exportable, fmt: str, float_export: Callable[[np.ndarray], np.ndarray],
                     data: bytes, out: str, int8: Callable[[np.ndarray], np.ndarray] | None = None,
                     float_bytes: int | None = None) -> Exported:
  """Writes `data` to `out` once the float export matches the JAX model (ExportMismatch if not);
  an int8 export is compared too, and reported."""
  comparison = exportable.compare(run, {fmt: float_export, **({'int8': int8} if int8 else {})})
  one = run.inputs[:1]
  batch_one = float(np.abs(np.asarray(float_export(one)) - np.asarray(run(one))).max())
  worst = max(comparison.max_abs_diff[fmt], batch_one)
  # A qwix-quantized run rounds activations to integers on the fly: float sums in another order
  # move some across a rounding step, so its export is reported, not bounded, as an int8 ONNX
  # graph is.
  if quantization.settings(run.config).mode == 'none' and not worst <= TOLERANCE:
    raise ExportMismatch(f"the {fmt} export's logits differ from the JAX model's by {worst:.3g} "
                         f'(> {TOLERANCE:g}); nothing written to {out}')
  storage.write_atomically(storage.path(out), data)
  return Exported(fmt, out, len(data), comparison, batch_one, float_bytes)


def summary(exported: Exported) -> str:
  """Three lines: the file, the largest logit differences, the accuracies."""
  c = exported.comparison
  kind = exported.format if exported.float_bytes is None else f'{exported.format} int8'
  size = f'{exported.num_bytes:,} bytes' + (f' (float {exported.float_bytes:,})' if exported.float_bytes else '')
  diffs = ', '.join(f'{name} {diff:.2g}' for name, diff in c.max_abs_diff.items())
  accuracies = ', '.join(f'{name} {value:.4f}' for name, value in {'jax': c.jax_accuracy, **c.accuracy}.items())
  return (f'{kind} -> {exported.path}: {size}\n'
          f'  max |logits - jax| on {c.split} ({c.num_examples} examples): {diffs}; at batch 1: '
          f'{exported.batch_one_diff:.2g}\n'
          f'  accuracy: {accuracies}')


def _define_flags() -> None:
  flags.DEFINE_string('workdir', None, "A run's workdir (it holds checkpoints/).", required=True)
  flags.DEFINE_enum('format', None, FORMATS, 'What to write.', required=True)
  flags.DEFINE_enum('quantize', None, QUANTIZATIONS, 'int8: static quantization of the ONNX graph.')
  flags.DEFINE_integer('step', None, 'Checkpoint step; default the latest.')
  flags.DEFINE_bool('ema', False, "Export the run's EMA weights.")
  flags.DEFINE_string('out', None, 'The file to write.', required=True)
  flags.DEFINE_integer('calibration_batches', 8, 'Training batches that calibrate int8 ranges.', lower_bound=1)


def _parse_flags(argv: list[str]) -> list[str]:
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:  # one line, not absl's usage text
    sys.exit(f'lamina: export: {e}')


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  log_filter.quiet_library_info()
  f = flags.FLAGS
  if not f['verbosity'].present:  # jax2onnx and onnxruntime log every conversion step at INFO
    absl_logging.set_verbosity(absl_logging.WARNING)
  # onnx_ir warns for each shape constant that jax2onnx leaves untyped: type annotations are
  # optional, and the export is checked against the JAX model anyway.
  logging.getLogger('onnx_ir.serde').setLevel(logging.ERROR)
  try:
    exported = export(f.workdir, f.format, f.out, step=f.step, ema=f.ema, quantize=f.quantize,
                      calibration_batches=f.calibration_batches)
  except (ConfigError, ExportMismatch) as e:
    sys.exit(f'lamina: export: {e}')
  print(summary(exported))


if __name__ == '__main__':
  _define_flags()
  app.run(main, flags_parser=_parse_flags)
