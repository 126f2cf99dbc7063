r"""lamina against plain PyTorch (eager): the same models, batches, optimizer and steps.

  python -m benchmarks.peers [--models=gpt,gpt_wide,digits_cnn,fashion_mnist_resnet,digits_diffusion,gpt2_small] [--steps=N | --steps=full]
                             [--warmup=10] [--compute_dtype=bfloat16] [--torch_dtype=float32,bfloat16]
                             [--repeats=N] [--same_init] [--json=FILE]

Rows: `gpt` is experiments/shakespeare_gpt.py (nanoGPT's CPU config), `gpt_wide` the same
GPT 4x wider (width 512, batch 32; 10 steps per lamina device call instead of 50),
`digits_cnn` and `fashion_mnist_resnet` their experiments, `digits_diffusion` the digits U-Net's
train step against diffusers' `UNet2DModel` of the same size (the library a diffusion user would
pick; its eval loss is the same noise-prediction loss), each in its own compute dtype
unless --compute_dtype says otherwise; `gpt2_small` (experiments/gpt2_small.py, 124 M parameters,
context 1024, batch 32) is for accelerators and runs only when named. On a GPU both sides run
on it: lamina in bf16, torch under bf16 autocast, each row with its larger accelerator batch
(Row.accelerator), and the ceilings are the chip's. Torch trains mirrors of the same networks (benchmarks/torch_models.py; the
parameter counts must agree) with the same optimizer, schedule and clipping
(benchmarks/torch_train.py), on the same batches: both sides read lamina's input
pipeline with the experiment's seed, augmentation included. lamina runs its real trainer.
`--same_init` starts torch from lamina's initial parameters instead of its own draw from
the same distributions.

What is timed, on both sides: a warm-up of whole lamina device calls, at least --warmup
steps long, is dropped; then --steps more (each row's own number by default, about 5 minutes
for all four here; rounded up to whole warm-up lengths), or with --steps=full the rest of
the experiment's own length, so that the final losses are those of the real experiment. Each step takes its batch from a
queue that a thread fills ahead (lamina's Feeder; torch_train.Prefetcher), so reading and
augmenting batches runs beside the steps on both sides. The final evaluation (the whole
eval split) is not timed. Losses: train loss is the mean over the last warm-up-length
window of steps; eval loss and accuracy cover the whole eval split (validation tokens
for the GPTs).

MFU = lamina's model FLOPs per step (the matmuls and convolutions of its train step,
which the mirrors share) x steps/s over the machine's f32 and bf16 matmul ceilings
(benchmarks/ceilings.py). Every measurement is its own child process, one at a time:
the ceilings, then per model lamina and torch back to back. A VM's speed drifts by 10-30%
within minutes, so `--repeats=N` alternates the two sides N times and pairs each lamina
run with the torch run after it. The bound column is the ratio lamina would reach at 100% MFU
of its own dtype's ceiling (the best matmul measured here) over torch's measured rate:
the most any implementation whose matmuls run no faster than that ceiling could show.

On a machine that other processes share, torch's OpenMP threads spin-wait for each other
and can run tens of times slower (a 2-core VM with one busy core: 40x); the header shows
the load average and OMP_WAIT_POLICY, which children inherit (PASSIVE avoids that).
"""

import dataclasses
import importlib
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

import flax
import jax
import jaxlib
import ml_collections
import numpy as np
from absl import app, flags
from flax import linen as nn

import input_pipeline
import kernels
from benchmarks import machine
from train_lib import allocator, compilation_cache, precision, state_init, tasks, train_and_evaluate
from train_lib.metric_writer import read_metrics
from train_lib.trainer import resolve_total_steps


@dataclasses.dataclass(frozen=True)
class Row:
  experiment: str
  steps: int  # timed steps by default
  arg: str = ''  # the experiment's config args
  model: dict = dataclasses.field(default_factory=dict)  # model overrides
  sizes: dict = dataclasses.field(default_factory=dict)  # config overrides a tiny run does without
  # Config overrides on a GPU or TPU (with bf16 compute): batches that keep the chip busy.
  accelerator: dict = dataclasses.field(default_factory=dict)


ROWS = {
    'gpt': Row('shakespeare_gpt', steps=100, accelerator={'batch_size': 256}),
    # At this width a step far outweighs a device call's dispatch: 10 steps a call keep the warm-up short.
    'gpt_wide': Row('shakespeare_gpt', steps=20, model={'width': 512}, sizes={'batch_size': 32, 'steps_per_call': 10},
                    accelerator={'batch_size': 256}),
    'digits_cnn': Row('digits_cnn', steps=200, accelerator={'batch_size': 512}),
    'fashion_mnist_resnet': Row('fashion_mnist_resnet', steps=100, accelerator={'batch_size': 1024}),
    # The U-Net's train step against diffusers' UNet2DModel of the same size (no feature classifier:
    # sample quality is not what this row measures).
    'digits_diffusion': Row('digits_diffusion', steps=200, arg='classifier=', accelerator={'batch_size': 1024}),
    # Sized for an accelerator (28 TFLOP a step): not in the default rows.
    'gpt2_small': Row('gpt2_small', steps=50),
}
DEFAULT_ROWS = ['gpt', 'gpt_wide', 'digits_cnn', 'fashion_mnist_resnet', 'digits_diffusion']

flags.DEFINE_list('models', DEFAULT_ROWS, 'Rows to measure (gpt2_small too, on an accelerator).')
flags.DEFINE_string('steps', '', "Timed steps after the warm-up ('': each row's own, a few seconds to a minute "
                    "a side), or 'full' for each experiment's whole length.")
flags.DEFINE_integer('warmup', 10, 'Untimed steps first (rounded up to whole lamina device calls).')
flags.DEFINE_string('compute_dtype', '', "lamina's compute dtype ('' keeps each experiment's own).")
flags.DEFINE_list('torch_dtype', None, "torch rows: 'float32' (eager) and/or 'bfloat16' (autocast); by default "
                  'float32 on a CPU, bfloat16 on a GPU.')
flags.DEFINE_integer('repeats', 1, 'Measure each row this many times, lamina and torch alternating (the machine '
                     'drifts): rates are the medians, the ratio the median of each lamina run over the torch run after it.')
flags.DEFINE_bool('same_init', False, "Start torch from lamina's initial parameters.")
flags.DEFINE_bool('tiny', False, "Each experiment's tiny=True config, GPTs on synthetic_text: smoke tests only.")
flags.DEFINE_string('json', None, 'Also write the rows here.')
flags.DEFINE_string('_measure', None, "Internal: 'ceilings', 'lamina:ROW' or 'torch:ROW:DTYPE' in this process.")

FLAGS = flags.FLAGS


def on_accelerator() -> bool:
  return jax.default_backend() != 'cpu'


def row_config(row: str, *, tiny: bool = False, compute_dtype: str = '') -> ml_collections.ConfigDict:
  """The experiment config a row trains (on a GPU or TPU: in bf16, with the row's larger batch)."""
  spec = ROWS[row]
  arg = ','.join(filter(None, [spec.arg, 'tiny=True' if tiny else '']))
  config = importlib.import_module(f'experiments.{spec.experiment}').get_config(arg)
  config.model.update(spec.model)
  if not tiny:
    config.update(spec.sizes)
    if on_accelerator():
      config.update(spec.accelerator)
      config.compute_dtype = 'bfloat16'
  if tiny and config.task.name == 'language_model':
    config.data.name = 'synthetic_text'  # a validation split of 200 sentences, not 111k tokens
  if compute_dtype:
    config.compute_dtype = compute_dtype
  return config


def plan(config: ml_collections.ConfigDict, steps: str, warmup: int) -> tuple[int, int]:
  """(warm-up steps, total steps); the warm-up is whole device calls, the total whole warm-ups unless 'full'."""
  k = config.steps_per_call
  window = k * -(-warmup // k)
  if steps == 'full':
    total = resolve_total_steps(config, input_pipeline.num_examples(config.data, config.data.train_split))
    if total <= window:
      raise ValueError(f'the full run ({total} steps) is no longer than the warm-up ({window})')
    return window, total
  return window, window + window * -(-int(steps) // window)


def train_batches(config: ml_collections.ConfigDict) -> Iterator[dict]:
  """The batch stream lamina's trainer reads for `config` (one process)."""
  return iter(input_pipeline.make_train_loader(config.data, global_batch_size=config.batch_size, seed=config.seed,
                                               process_index=0, process_count=1))


def lamina_start(config: ml_collections.ConfigDict, *, abstract: bool = False):
  """(task, optimizer, initial train state) as lamina's trainer creates them (shapes only when `abstract`)."""
  task = tasks.get(config, input_pipeline.dataset_info(config.data))
  tx = task.make_optimizer(config.total_steps)
  create = state_init.boxed_state_fn(task, tx, next(train_batches(config)), use_ema=False)
  rng = jax.random.PRNGKey(config.seed)
  return task, tx, nn.meta.unbox(jax.eval_shape(create, rng) if abstract else jax.jit(create)(rng))


def _config_and_plan() -> tuple[ml_collections.ConfigDict, int, int]:
  """This child's (config, warm-up steps, total steps)."""
  row = FLAGS._measure.split(':')[1]
  config = row_config(row, tiny=FLAGS.tiny, compute_dtype=FLAGS.compute_dtype)
  return (config, *plan(config, FLAGS.steps or str(ROWS[row].steps), FLAGS.warmup))


def _common(config: ml_collections.ConfigDict, warmup: int, total: int, params: int) -> dict:
  return {'warmup': warmup, 'steps': total - warmup, 'params': params, 'examples_per_step': config.batch_size,
          'tokens_per_example': config.data.seq_len if config.task.name == 'language_model' else None}


def _measure_lamina() -> dict:
  """The real trainer for warm-up + steps; the rate of the timed windows from metrics.jsonl."""
  config, warmup, total = _config_and_plan()
  config.num_epochs = None
  config.total_steps = total
  config.log_every = warmup  # logging syncs the host: windows of whole device calls
  config.eval_every = 0
  config.checkpoint.every = 0
  # The final evaluation is the per-example one both sides have (a generator's samples are not compared).
  config.evals = {name: cfg for name, cfg in config.evals.items() if cfg.type == 'per_example'}
  with tempfile.TemporaryDirectory() as workdir:
    final = train_and_evaluate(config, workdir)
    records = read_metrics(workdir)
  windows = [(r['step'] - before['step'], r['perf/steps_per_sec']) for before, r in zip(records, records[1:])]
  seconds = sum(n / rate for n, rate in windows)
  params = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(lamina_start(config, abstract=True)[2].params))
  return {**_common(config, warmup, total, params), 'dtype': np.dtype(precision.dtype(config.compute_dtype)).name,
          'steps_per_sec': sum(n for n, _ in windows) / seconds,
          'flops_per_step': final['perf/model_flops_per_step'] * jax.device_count(),
          'train_loss': final['train/loss'], 'eval_loss': final['eval/loss'],
          'eval_accuracy': final.get('eval/accuracy')}


def _measure_torch(dtype: str) -> dict:
  """The torch mirror on the same batch stream, timed from the end of the warm-up to its last step."""
  from benchmarks import torch_train  # torch: imported only where it runs
  config, warmup, total = _config_and_plan()
  run = torch_train.TorchRun(config, total, dtype, lamina_start(config)[2].params if FLAGS.same_init else None)
  batches = torch_train.Prefetcher(train_batches(config), run.device)
  losses = []
  for step in range(total):
    if step == warmup:
      run.synchronize()
      start = time.perf_counter()
    losses.append(run.train_step(batches.next()))
  run.synchronize()
  steps_per_sec = (total - warmup) / (time.perf_counter() - start)
  losses = [float(loss) for loss in losses]
  last_window = (total - 1) // warmup * warmup  # the steps lamina's last train/loss averages
  params = sum(p.numel() for p in run.model.parameters())
  final = run.evaluate()
  return {**_common(config, warmup, total, params), 'dtype': dtype, 'steps_per_sec': steps_per_sec,
          'train_loss': float(np.mean(losses[last_window:])), 'eval_loss': final['eval/loss'],
          'eval_accuracy': final.get('eval/accuracy')}


def _measure_ceilings() -> dict:
  import torch

  from benchmarks import ceilings
  return {'ceilings': ceilings.measure(), 'matmul_size': ceilings.SIZE, 'load_average': os.getloadavg()[0],
          'machine': (f'{machine.describe()}; jaxlib {jaxlib.__version__}, flax {flax.__version__}, '
                      f'torch {torch.__version__} ({torch.get_num_threads()} threads, '
                      f'OMP_WAIT_POLICY={os.environ.get("OMP_WAIT_POLICY", "unset")}); '
                      f'malloc: {"tcmalloc" if allocator.in_use() else "system"}, both sides; '
                      f'lamina kernels=auto: {kernels.describe()}')}


def _measure(what: str) -> dict:
  kind, *rest = what.split(':')
  if kind == 'ceilings':
    return _measure_ceilings()
  if kind == 'lamina':
    return _measure_lamina()
  return _measure_torch(rest[1])


def _child(what: str) -> dict:
  argv = [sys.executable, '-m', 'benchmarks.peers', f'--_measure={what}', f'--steps={FLAGS.steps}',
          f'--warmup={FLAGS.warmup}', f'--compute_dtype={FLAGS.compute_dtype}',
          f'--{"" if FLAGS.same_init else "no"}same_init', f'--{"" if FLAGS.tiny else "no"}tiny']
  print(f'benchmarks.peers: measuring {what}', file=sys.stderr)
  # Both sides under the allocator train_lib.main runs lamina with (tcmalloc where the machine has it).
  result = subprocess.run(argv, capture_output=True, text=True, env=allocator.environment())
  if result.returncode:
    sys.exit(f'benchmarks.peers: {what} failed:\n{result.stderr[-3000:]}')
  return json.loads(result.stdout.strip().splitlines()[-1])


def _row(row: str, laminas: list[dict], torches: list[dict], ceilings: dict) -> dict:
  """One table row from paired runs: laminas[i] was measured just before torches[i]."""
  lamina, torch_ = laminas[0], torches[0]
  if lamina['params'] != torch_['params']:
    sys.exit(f'benchmarks.peers: {row}: the torch mirror has {torch_["params"]:,} parameters, lamina '
             f'{lamina["params"]:,}; the models differ')
  per_step = lamina['examples_per_step'] * (lamina['tokens_per_example'] or 1)
  result = {'model': row, 'lamina_dtype': lamina['dtype'], 'torch_dtype': torch_['dtype'],
            'lamina_params': lamina['params'], 'torch_params': torch_['params'],
            'unit': 'tokens/s' if lamina['tokens_per_example'] else 'examples/s',
            'flops_per_step': lamina['flops_per_step'], 'warmup': lamina['warmup'], 'steps': lamina['steps']}
  for side, runs in (('lamina', laminas), ('torch', torches)):
    steps_per_sec = float(np.median([m['steps_per_sec'] for m in runs]))
    result[f'{side}_steps_per_sec'] = steps_per_sec
    result[f'{side}_rate'] = steps_per_sec * per_step
    for dtype, c in ceilings['ceilings'].items():
      result[f'{side}_mfu_{dtype}'] = steps_per_sec * lamina['flops_per_step'] / c['ceiling']
    for key in ('train_loss', 'eval_loss', 'eval_accuracy'):
      result[f'{side}_{key}'] = runs[0][key]  # the same seeded run each time
  result['ratios'] = [l['steps_per_sec'] / t['steps_per_sec'] for l, t in zip(laminas, torches)]
  result['ratio'] = float(np.median(result['ratios']))
  # lamina at 100% MFU of its own dtype's ceiling over torch's rate: the headroom the measured ceiling leaves
  # (None for a dtype with no ceiling measured, e.g. float16).
  ceiling = ceilings['ceilings'].get(lamina['dtype'])
  result['ratio_bound'] = (None if ceiling is None
                          else ceiling['ceiling'] / (result['torch_steps_per_sec'] * lamina['flops_per_step']))
  return result


def _pair(row: dict, key: str, fmt: str) -> str:
  return ' / '.join(fmt.format(row[f'{side}_{key}']) for side in ('lamina', 'torch'))


def _table(rows: list[dict]) -> str:
  columns = {
      'model': lambda r: r['model'],
      'dtype lamina/torch': lambda r: f'{r["lamina_dtype"]} / {r["torch_dtype"]}',
      'params': lambda r: f'{r["lamina_params"]:,}',
      'unit': lambda r: r['unit'],
      'lamina': lambda r: f'{r["lamina_rate"]:,.0f}',
      'torch': lambda r: f'{r["torch_rate"]:,.0f}',
      'lamina/torch': lambda r: f'{r["ratio"]:.2f}' + (
          f' ({min(r["ratios"]):.2f}-{max(r["ratios"]):.2f})' if len(r['ratios']) > 1 else ''),
      'bound': lambda r: '-' if r['ratio_bound'] is None else f'{r["ratio_bound"]:.2f}',
      'MFU f32 l/t': lambda r: _pair(r, 'mfu_float32', '{:.1%}'),
      'MFU bf16 l/t': lambda r: _pair(r, 'mfu_bfloat16', '{:.1%}'),
      'train loss l/t': lambda r: _pair(r, 'train_loss', '{:.4f}'),
      'eval loss l/t': lambda r: _pair(r, 'eval_loss', '{:.4f}'),
      'eval acc l/t': lambda r: ('-' if r['unit'] == 'tokens/s' or r['lamina_eval_accuracy'] is None
                                 else _pair(r, 'eval_accuracy', '{:.2%}')),
  }
  cells = [list(columns)] + [[cell(r) for cell in columns.values()] for r in rows]
  widths = [max(len(line[i]) for line in cells) for i in range(len(columns))]
  return '\n'.join('  '.join(v.ljust(w) for v, w in zip(line, widths)).rstrip() for line in cells)


def _header(machine: dict, rows: list[dict]) -> str:
  lines = [f'Machine: {machine["machine"]}; load average {machine["load_average"]:.2f} before the first measurement']
  for dtype, c in machine['ceilings'].items():
    accumulation = '' if dtype == 'float32' else ' in, f32 accumulation'
    lines.append(f'{dtype}{accumulation} matmul ceiling ({machine["matmul_size"]}^3): {c["ceiling"] / 1e9:,.0f} '
                 f'GFLOP/s (jax {c["jax"] / 1e9:,.0f}, torch {c["torch"] / 1e9:,.0f})')
  plans = ', '.join(f'{r["model"]} {r["warmup"]} + {r["steps"]}' for r in rows[::len(FLAGS.torch_dtype)])
  lines.append(f'Steps (warm-up + timed): {plans}. Rates in tokens/s for the GPTs, examples/s otherwise.')
  lines.append("bound: the ratio lamina would reach at 100% MFU of its dtype's ceiling, the most this machine's "
               'measured matmul rate allows.')
  if FLAGS.repeats > 1:
    lines.append(f'Each row measured {FLAGS.repeats} times, lamina and torch alternating: median rates; the ratio '
                 'is the median of the paired ratios (their range in brackets).')
  return '\n'.join(lines) + '\n'


def main(argv: list[str]) -> None:
  del argv
  if importlib.util.find_spec('torch') is None:
    sys.exit("benchmarks.peers needs PyTorch: pip install -e '.[bench]'")
  if FLAGS._measure:
    compilation_cache.enable()  # as train_lib.main does: repeated rows load their programs
    print(json.dumps(_measure(FLAGS._measure)))
    return
  if jax.default_backend() not in ('cpu', 'gpu'):
    sys.exit(f'benchmarks.peers: torch cannot run on this {jax.default_backend()} beside lamina; '
             'python -m benchmarks.throughput measures lamina alone there')
  if FLAGS.repeats < 1:
    sys.exit(f'benchmarks.peers: --repeats must be at least 1, got {FLAGS.repeats}')
  if FLAGS.steps not in ('', 'full') and not FLAGS.steps.isdigit():
    sys.exit(f"benchmarks.peers: --steps must be a number of steps, 'full' or '', got {FLAGS.steps!r}")
  from benchmarks.torch_train import DTYPES
  FLAGS.torch_dtype = FLAGS.torch_dtype or (['bfloat16'] if on_accelerator() else ['float32'])
  for name, values, valid in (('model', FLAGS.models, list(ROWS)), ('torch_dtype', FLAGS.torch_dtype, DTYPES)):
    if set(values) - set(valid):
      sys.exit(f'benchmarks.peers: unknown {name} {sorted(set(values) - set(valid))}; valid: {list(valid)}')
  machine = _child('ceilings')
  rows = []
  for row in FLAGS.models:
    laminas, torches = [], {dtype: [] for dtype in FLAGS.torch_dtype}
    for _ in range(FLAGS.repeats):
      laminas.append(_child(f'lamina:{row}'))
      for dtype in FLAGS.torch_dtype:
        torches[dtype].append(_child(f'torch:{row}:{dtype}'))
    rows += [_row(row, laminas, torches[dtype], machine) for dtype in FLAGS.torch_dtype]
  print(_header(machine, rows))
  print(_table(rows))
  if FLAGS.json:
    with open(FLAGS.json, 'w') as f:
      json.dump({'machine': machine, 'rows': rows}, f, indent=2)


if __name__ == '__main__':
  app.run(main)
