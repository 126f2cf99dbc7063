r"""Command line: post-training quantization (PTQ) of a trained run into a new run.

  python -m train_lib.quantize --workdir=/tmp/lamina/fmnist_resnet --out=/tmp/lamina/fmnist_int8 \
      --scheme=int8 [--skip=REGEX] [--calibration_batches=16]

The new run holds the source's checkpoint with its weights quantized by qwix
(train_lib/quantization.py: int8 or int4 values with per-channel float scales) and its config
with `quantization.mode='ptq'`; it is then evaluated by the source's own evaluators, whose
figures go to its metrics.jsonl as a run's do. It restores, samples, serves and feeds other
runs (as a teacher, say) like the float run, but does not train: to train with quantization,
run the experiment with quantization.mode='qat'. 'int8_static' calibrates its activation
scales on `--calibration_batches` batches of the source's training pipeline. The weights
quantized are the ones the source evaluates with (its EMA when it kept one).
"""

import copy
import sys

import jax
import jax.numpy as jnp
import ml_collections
from absl import app, flags, logging
from flax import linen as nn

import kernels
from train_lib import (config_check, config_defaults, frozen, from_run, log_filter, quantization, state_init, tasks,
                       trainer)
from train_lib import workdir as workdir_lib
from train_lib.checkpointing import Checkpointer
from train_lib.errors import ConfigError
from train_lib.mesh import make_mesh
from train_lib.metric_writer import MetricWriter


def ptq_config(source: from_run.SourceRun, scheme: str, *, modules: str = '.*',
               skip: str = '') -> ml_collections.ConfigDict:
  """The source's config, quantized: complete at the source's step, plain XLA ops (which qwix
  intercepts), float32 where an op stays in float (qwix's weight-only path hands it float32
  activations), no EMA (the quantized weights are the ones evaluation uses), and plain SGD, whose
  empty state is all a run that never trains needs to store beside its weights."""
  config = copy.deepcopy(source.config)
  config.quantization.update({'mode': 'ptq', 'scheme': scheme, 'modules': modules, 'skip': skip})
  config.num_epochs = None
  config.total_steps = source.step
  config.kernels = 'xla'
  config.compute_dtype = 'float32'
  config.ema_decay = 0.0
  config.init_from.workdir = ''
  config.optimizer = config_defaults.base_config().optimizer
  config.optimizer.name = 'sgd'
  return config


def quantized_params(task, float_variables: dict, batches, num_batches: int) -> dict:
  """The float params quantized as `task`'s PTQ model wants them; static activation scales are
  the means of ranges seen on `num_batches` of `batches`."""
  sample = next(batches)
  abstract = jax.eval_shape(lambda: task.init_variables(jax.random.key(0), sample))['params']
  stats = {}
  if quantization.SCHEMES[quantization.settings(task.config).scheme].static_activations:
    calibrating = quantization.calibrating(task.model, task.config)
    for i in range(num_batches):
      batch = sample if i == 0 else next(batches)
      _, updated = calibrating.apply({**float_variables, **stats}, task.inputs(batch), train=False,
                                     mutable=['quant_stats'])
      stats = {'quant_stats': updated['quant_stats']}
  return quantization.quantize_params(float_variables['params'], abstract, stats.get('quant_stats', {}))


def quantize_run(workdir: str, out: str, scheme: str, *, modules: str = '.*', skip: str = '',
                 calibration_batches: int = 16, step: int | None = None) -> dict[str, float]:
  """Writes the PTQ run of the run in `workdir` to `out`; returns its evaluation scalars."""
  source = from_run.open_run(workdir, step, what='--workdir')
  if from_run.checkpoint_steps(workdir_lib.resolve(out) / 'checkpoints'):
    raise ConfigError(f'--out: {out} already holds a run; choose a new directory')
  if not hasattr(tasks.TASKS.get(source.config.task.name), 'inputs'):
    raise ConfigError(f"--workdir: task '{source.config.task.name}' is not a classifier or a language model; "
                      'post-training quantization takes those')
  config = ptq_config(source, scheme, modules=modules, skip=skip)
  config_check.validate(config)
  _, float_variables = frozen.load(workdir, source.step, ema=source.config.ema_decay > 0)
  mesh = make_mesh(config.mesh)
  with jax.set_mesh(mesh), nn.logical_axis_rules(trainer.logical_rules(config)), kernels.use(config.kernels):
    run = trainer.Run(config, out, mesh)
    params = quantized_params(run.task, float_variables, run.iterator, calibration_batches)
    state = state_init.init_state(run.create_state, run.rng, run.shardings.replace(frozen={}))
    model_state = {k: v for k, v in float_variables.items() if k != 'params'}
    state = state.replace(step=jnp.asarray(source.step, state.step.dtype),
                          params=jax.device_put(params, run.shardings.params),
                          model_state=jax.device_put(model_state, run.shardings.model_state))
    checkpointer = Checkpointer(run.workdir / 'checkpoints', config.checkpoint, config, _tokenizer(source))
    checkpointer.save(source.step, state, run.iterator.get_state(), force=True)
    checkpointer.wait()
    checkpointer.close()
  logging.info('Wrote the %s run of %s (step %d) to %s', scheme, workdir, source.step, out)
  scalars = trainer.train_and_evaluate(config, out)
  writer = MetricWriter(out, enabled=jax.process_index() == 0, resume_step=source.step)
  writer.write(source.step, scalars)
  writer.close()
  return scalars


def _tokenizer(source: from_run.SourceRun):
  return from_run.read_json(source, 'tokenizer') if source.has_item('tokenizer') else None


def _define_flags() -> None:
  """The command line's flags; defined only when run as a program, so importing this module (a
  benchmark does) defines none."""
  flags.DEFINE_string('workdir', None, "The trained run's workdir (it holds checkpoints/).", required=True)
  flags.DEFINE_string('out', None, 'Workdir of the quantized run to write; it must not hold a run yet.', required=True)
  flags.DEFINE_enum('scheme', 'int8', list(quantization.SCHEMES), 'What to quantize (train_lib/quantization.py).')
  flags.DEFINE_string('skip', '', 'Regex of module paths kept in float, e.g. "head".')
  flags.DEFINE_string('modules', '.*', 'Regex of module paths the scheme quantizes.')
  flags.DEFINE_integer('calibration_batches', 16, 'Training batches that calibrate static activation scales.')
  flags.DEFINE_integer('step', None, "The source's checkpoint step; default the latest.")


def main(argv: list[str]) -> None:
  del argv
  log_filter.quiet_library_info()
  f = flags.FLAGS
  try:
    scalars = quantize_run(f.workdir, f.out, f.scheme, modules=f.modules, skip=f.skip,
                           calibration_batches=f.calibration_batches, step=f.step)
  except ConfigError as e:
    sys.exit(f'lamina: {e}')
  print(' | '.join(f'{k} {v:.4f}' for k, v in sorted(scalars.items())))


if __name__ == '__main__':
  _define_flags()
  app.run(main)
