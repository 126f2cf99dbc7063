r"""What each edge-deployment step costs in accuracy and buys in size and latency: one table.

  python -m benchmarks.edge --float=/tmp/lamina/fmnist_resnet --student=/tmp/lamina/fmnist_distill \
      --qat=/tmp/lamina/fmnist_qat --pruned=/tmp/lamina/fmnist_prune90,/tmp/lamina/fmnist_prune24 \
      --scratch=/tmp/lamina/edge [--reps=50] [--json=FILE]

Rows: the float run; a distilled student; int8 post-training quantization (weights and
activations) of the float run, and of the quantization-aware run; int4 weights; each pruned
run; the float run exported to ONNX, in float and int8 (onnxruntime's static QDQ). The derived
runs and files are written under --scratch (and reused when there). Every row is scored on the
whole test split. Bytes are the weights as stored (int4 two to a byte) and zlib-compressed
(level 9), which is where a pruned model's exact zeros shrink. Latency is the median over
--reps calls of one batch of 1 and of 64 test images, after a warm-up, in JAX (XLA:CPU, the
run's own kernels setting) or in onnxruntime on the CPU. A row whose flag is empty is left out.
"""

import dataclasses
import json
import os
import time
import zlib
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags, logging

import kernels
from benchmarks import machine
from train_lib import export_onnx, exportable, log_filter
from train_lib.quantize import quantize_run

flags.DEFINE_string('float', '/tmp/lamina/fmnist_resnet', 'The trained float run.')
flags.DEFINE_string('student', '', 'A run distilled from it (experiments/fashion_mnist_distill.py).')
flags.DEFINE_string('qat', '', 'Its quantization-aware fine-tuning (experiments/fashion_mnist_qat.py).')
flags.DEFINE_list('pruned', [], 'Pruned runs of it (experiments/fashion_mnist_prune.py).')
flags.DEFINE_string('scratch', '/tmp/lamina/edge', 'Where the derived runs and ONNX files go.')
flags.DEFINE_integer('reps', 50, 'Timed calls per latency.')
flags.DEFINE_string('json', None, 'Also write the rows here.')


@dataclasses.dataclass(frozen=True)
class Row:
  name: str
  runtime: str
  accuracy: float
  num_bytes: int
  compressed_bytes: int
  latency_ms: dict[int, float]  # batch size -> median milliseconds per call


def stored_bytes(variables: dict) -> bytes:
  """The weights as a file would hold them: each array's raw bytes, int4 packed two to a byte."""
  chunks = []
  for leaf in jax.tree.leaves(variables):
    array = np.asarray(leaf)
    if jax.dtypes.itemsize_bits(array.dtype) == 4:
      nibbles = np.asarray(jax.lax.bitcast_convert_type(leaf, jnp.uint4)).astype(np.uint8).ravel()
      nibbles = np.pad(nibbles, (0, len(nibbles) % 2))  # an odd count's last byte holds one
      array = nibbles[::2] | (nibbles[1::2] << 4)
    chunks.append(array.tobytes())
  return b''.join(chunks)


def median_ms(fn: Callable[[np.ndarray], object], x: np.ndarray, reps: int) -> float:
  """Median wall time of `fn(x)` over `reps` calls, after two warm-up calls."""
  for _ in range(2):
    jax.block_until_ready(fn(x))
  times = []
  for _ in range(reps):
    start = time.perf_counter()
    jax.block_until_ready(fn(x))
    times.append(time.perf_counter() - start)
  return 1e3 * float(np.median(times))


BATCH_SIZES = (1, 64)


def _latencies(fn: Callable[[np.ndarray], object], inputs: np.ndarray, reps: int) -> dict[int, float]:
  return {size: median_ms(fn, inputs[:size], reps) for size in BATCH_SIZES}


def jax_row(name: str, workdir: str, reps: int) -> Row:
  run = exportable.load_run(workdir)
  accuracy = exportable.compare(run, {}).jax_accuracy
  with kernels.use(run.config.kernels):  # the kernels the run's model is traced with
    compiled = {size: jax.jit(run).lower(run.inputs[:size]).compile() for size in BATCH_SIZES}
  latencies = _latencies(lambda x: compiled[len(x)](x), run.inputs, reps)
  stored = stored_bytes(run.variables)
  return Row(name, 'jax', accuracy, len(stored), len(zlib.compress(stored, 9)), latencies)


def onnx_row(name: str, path: str, run: exportable.Exportable, reps: int) -> Row:
  session = export_onnx.onnx_session(path)
  accuracy = exportable.compare(run, {'onnx': session}).accuracy['onnx']
  data = open(path, 'rb').read()
  return Row(name, 'onnxruntime', accuracy, len(data), len(zlib.compress(data, 9)),
             _latencies(session, run.inputs, reps))


def _derived_run(source: str, out: str, scheme: str) -> str:
  """The `scheme` PTQ run of `source` in `out`, written unless it is there."""
  if not os.path.isdir(os.path.join(out, 'checkpoints')):
    quantize_run(source, out, scheme)
  return out


def rows(float_run: str, *, student: str = '', qat: str = '', pruned: Sequence[str] = (),
         scratch: str = '/tmp/lamina/edge', reps: int = 50) -> list[Row]:
  """The table's rows for the float run in `float_run` and the runs derived from it (a row whose
  run is '' is left out); quantized runs and ONNX files are written under `scratch`."""
  os.makedirs(scratch, exist_ok=True)
  jax_runs = [('float', float_run)]
  if student:
    jax_runs.append(('distilled student', student))
  jax_runs.append(('int8 PTQ', _derived_run(float_run, os.path.join(scratch, 'int8'), 'int8')))
  if qat:
    jax_runs.append(('QAT, int8', _derived_run(qat, os.path.join(scratch, 'qat_int8'), 'int8')))
  jax_runs.append(('int4 weights', _derived_run(float_run, os.path.join(scratch, 'int4_weights'), 'int4_weights')))
  jax_runs += [(f'pruned: {os.path.basename(p.rstrip("/"))}', p) for p in pruned]
  table = []
  for name, workdir in jax_runs:
    logging.info('Measuring %s (%s)', name, workdir)
    table.append(jax_row(name, workdir, reps))
  run = exportable.load_run(float_run)
  float_path = os.path.join(scratch, 'float.onnx')
  if not os.path.exists(float_path):
    export_onnx.to_onnx(run, float_path)
  table.append(onnx_row('ONNX float', float_path, run, reps))
  if exportable.model_task(run.config) == 'classification':  # int8 ONNX is refused for language models
    int8_path = os.path.join(scratch, 'int8.onnx')
    if not os.path.exists(int8_path):
      export_onnx.quantize_onnx(float_path, run, int8_path)
    table.append(onnx_row('ONNX int8', int8_path, run, reps))
  return table


def format_table(table: list[Row]) -> str:
  base = table[0]
  lines = ['| model | runtime | test accuracy | bytes | zlib bytes | ms, batch 1 | ms, batch 64 |',
           '|---|---|---|---|---|---|---|']
  for row in table:
    lines.append(f'| {row.name} | {row.runtime} | {100 * row.accuracy:.2f}% ({100 * (row.accuracy - base.accuracy):+.2f}) '
                 f'| {row.num_bytes:,} | {row.compressed_bytes:,} ({base.compressed_bytes / row.compressed_bytes:.1f}x) '
                 f'| {row.latency_ms[1]:.3f} | {row.latency_ms[64]:.2f} |')
  return '\n'.join(lines)


def main(argv: list[str]) -> None:
  del argv
  log_filter.quiet_library_info()
  f = flags.FLAGS
  table = rows(f.float, student=f.student, qat=f.qat, pruned=f.pruned, scratch=f.scratch, reps=f.reps)
  print(f'# edge: {machine.describe()}\n')
  print(format_table(table))
  if f.json:
    with open(f.json, 'w') as out:
      json.dump({'machine': machine.describe(), 'rows': [dataclasses.asdict(r) for r in table]}, out, indent=1)


if __name__ == '__main__':
  app.run(main)
