r"""Throughput, FLOPs and MFU of named experiments, and their scaling over forced CPU devices.

  python -m benchmarks.throughput [--configs=digits_cnn,mnist1d,shakespeare_gpt,fashion_mnist_resnet] [--steps=60]
                                  [--scaling=digits_cnn] [--devices=1,2,4,8] [--json=FILE]

Each measurement is a fresh process (device counts are fixed at JAX start-up) that runs the
trainer for `--warmup` steps, then times `--steps` more (both rounded up to whole device calls
of the experiment's steps_per_call), with evaluation and checkpoints left to the end. The tables go to stdout with the machine they ran on.
"""

import json
import subprocess
import sys
import tempfile

from absl import app, flags

from train_lib import allocator

flags.DEFINE_list('configs', ['digits_cnn', 'mnist1d', 'shakespeare_gpt', 'fashion_mnist_resnet'],
                  'Experiments to time.')
flags.DEFINE_string('scaling', 'digits_cnn', 'Experiment for the device-scaling table ("" to skip).')
flags.DEFINE_list('devices', ['1', '2', '4', '8'], 'Forced CPU device counts for the scaling table.')
flags.DEFINE_integer('steps', 60, 'Timed steps (after warm-up).')
flags.DEFINE_integer('warmup', 10, 'Untimed steps first.')
flags.DEFINE_string('json', None, 'Also write the rows here.')
flags.DEFINE_string('_measure', None, 'Internal: measure this experiment in this process.')

COLUMNS = ('config', 'devices', 'mesh', 'global_batch', 'steps_per_sec', 'examples_per_sec', 'tokens_per_sec',
           'flops_per_step',
           'mfu')


def _measure(name: str) -> dict:
  """Runs in the child: trains warmup + steps and reads the timed window from metrics.jsonl."""
  from benchmarks import machine
  from train_lib import mesh as mesh_lib
  from train_lib import compilation_cache, train_and_evaluate
  from train_lib.metric_writer import read_metrics
  compilation_cache.enable()  # as train_lib.main does
  config = __import__(f'experiments.{name}', fromlist=['get_config']).get_config()
  config.num_epochs = None
  # Windows of whole device calls, at least --warmup steps long (logging syncs the host);
  # the first window is the warm-up and is dropped.
  window = config.steps_per_call * -(-flags.FLAGS.warmup // config.steps_per_call)
  warmup, steps = window, window * -(-flags.FLAGS.steps // window)
  config.total_steps = warmup + steps
  config.log_every = window
  config.eval_every = 0
  config.checkpoint.every = 0
  with tempfile.TemporaryDirectory() as workdir:
    train_and_evaluate(config, workdir)
    timed = [r for r in read_metrics(workdir) if r['step'] > warmup]
  import jax
  import numpy as np
  # Windows are equal in steps: the overall rate is the harmonic mean of theirs.
  rate = len(timed) / float(np.sum([1 / r['perf/steps_per_sec'] for r in timed]))
  sizes = dict(zip(mesh_lib.MESH_AXES, mesh_lib.axis_sizes(config.mesh, jax.device_count())))
  mesh = ','.join(f'{axis}={size}' for axis, size in sizes.items() if size > 1) or 'none'
  return {'config': name, 'devices': jax.device_count(), 'mesh': mesh, 'global_batch': config.batch_size,
          'steps_per_sec': rate, 'examples_per_sec': rate * config.batch_size,
          'tokens_per_sec': rate * config.batch_size * config.data.seq_len if config.data.seq_len else None,
          'flops_per_step': timed[-1]['perf/model_flops_per_step'] * jax.device_count(),
          'mfu': rate * timed[-1]['perf/mfu'] / timed[-1]['perf/steps_per_sec'], 'machine': machine.describe()}


def _run_child(name: str, devices: int | None) -> dict:
  env = allocator.environment()  # as train_lib.main runs: under tcmalloc where the machine has it
  if devices:
    env['XLA_FLAGS'] = f'--xla_force_host_platform_device_count={devices}'
    env['JAX_PLATFORMS'] = 'cpu'
  argv = [sys.executable, '-m', 'benchmarks.throughput', f'--_measure={name}', f'--steps={flags.FLAGS.steps}',
          f'--warmup={flags.FLAGS.warmup}']
  result = subprocess.run(argv, capture_output=True, text=True, env=env)
  if result.returncode:
    sys.exit(f'benchmarks.throughput: {name} on {devices or "default"} devices failed:\n{result.stderr[-2000:]}')
  return json.loads(result.stdout.strip().splitlines()[-1])


def _table(title: str, rows: list[dict]) -> str:
  formats = {'steps_per_sec': '{:.2f}', 'examples_per_sec': '{:,.0f}', 'tokens_per_sec': '{:,.0f}',
             'flops_per_step': '{:.3g}', 'mfu': '{:.1%}'}
  cells = [['-' if r[c] is None else formats.get(c, '{}').format(r[c]) for c in COLUMNS] for r in rows]
  widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(COLUMNS)]
  lines = [title, '  '.join(c.ljust(w) for c, w in zip(COLUMNS, widths))]
  lines += ['  '.join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
  return '\n'.join(lines)


def main(argv: list[str]) -> None:
  del argv
  if flags.FLAGS._measure:
    print(json.dumps(_measure(flags.FLAGS._measure)))
    return
  rows = [_run_child(name, None) for name in flags.FLAGS.configs]
  print(f'Machine: {rows[0]["machine"]}\n')
  print(_table('Throughput (default devices, each experiment\'s own batch and mesh)', rows))
  scaling = []
  if flags.FLAGS.scaling:
    scaling = [_run_child(flags.FLAGS.scaling, int(n)) for n in flags.FLAGS.devices]
    print()
    print(_table(f'Scaling: {flags.FLAGS.scaling}, same global batch, forced CPU devices', scaling))
  if flags.FLAGS.json:
    with open(flags.FLAGS.json, 'w') as f:
      json.dump({'throughput': rows, 'scaling': scaling}, f, indent=2)


if __name__ == '__main__':
  app.run(main)
