"""The one trainer: `train_and_evaluate(config, workdir)` for every task.

config -> checks -> mesh -> data -> task, frozen parts, evaluators -> sharded state
(restored or fresh) -> loop of jitted calls of K steps -> metrics / evaluators / checkpoints.
"""

import math

import jax
import ml_collections
import numpy as np
from absl import logging
from flax import linen as nn
from jax.sharding import Mesh

import input_pipeline
import kernels
from train_lib import (accounting, compiler_options, config_check, dry_run, evaluators, frozen, init_from,
                       log_filter, precision, quantization, state_init, steps, tasks, workdir as workdir_lib)
from train_lib.checkpointing import Checkpointer
from train_lib.errors import ConfigError, NonFiniteLossError, Preempted
from train_lib.feeder import Feeder
from train_lib.mesh import batch_sharding, data_parallel_size, make_mesh, replicated, replicated_to_host
from train_lib.metric_writer import MetricWriter
from train_lib.preemption import PreemptionWatcher
from train_lib.profiling import Profiler
from train_lib.progress import Progress


def resolve_total_steps(config: ml_collections.ConfigDict, train_examples: int) -> int:
  """total_steps, or num_epochs over the train split; a whole number of device calls."""
  k = config.steps_per_call
  if config.num_epochs is None:
    if config.total_steps % k:
      raise ConfigError(f'total_steps={config.total_steps} must be a multiple of steps_per_call={k}')
    return config.total_steps
  steps_needed = math.ceil(config.num_epochs * train_examples / config.batch_size)
  return math.ceil(steps_needed / k) * k


def _peek(iterator) -> dict:
  """The first batch, with the iterator put back where it was."""
  start = iterator.get_state()
  batch = next(iterator)
  iterator.set_state(start)
  return batch


def _summarize(pending: list[dict]) -> dict[str, float]:
  """Means of the train metrics over the calls since the last log; stops on NaN/inf."""
  host = replicated_to_host(pending)
  bad = min(int(m['first_nonfinite_step']) for m in host)
  if bad != steps.ALL_FINITE:
    raise NonFiniteLossError(
        f'train/loss became non-finite at step {bad}; lower optimizer.learning_rate or set optimizer.grad_clip_norm')
  keys = [k for k in host[0] if k != 'first_nonfinite_step']
  return {f'train/{k}': float(np.mean([m[k] for m in host])) for k in keys}


class Run:
  """The pieces of one run, built and checked before anything is compiled or written.

  Built under the mesh and the logical-axis rules, which shape inference needs.
  """

  def __init__(self, config: ml_collections.ConfigDict, workdir: str, mesh: Mesh):
    self.config = config
    self.mesh = mesh
    self.rules = logical_rules(config)
    self.compiler_options = compiler_options.from_config(config)
    self.process_index, self.process_count = jax.process_index(), jax.process_count()
    self.workdir = workdir_lib.resolve(workdir)
    config_check.validate_batch_layout(config, data_parallel_size(mesh, self.rules), self.process_count)
    self.frozen_parts = frozen.parts(config)
    data_info = input_pipeline.dataset_info(config.data)
    self.task = tasks.get(config, data_info)
    self.total_steps = resolve_total_steps(config, input_pipeline.num_examples(config.data, config.data.train_split))
    self.tx = self.task.make_optimizer(self.total_steps)
    loader = input_pipeline.make_train_loader(
        config.data, global_batch_size=config.batch_size, seed=config.seed,
        process_index=self.process_index, process_count=self.process_count)
    self.iterator = iter(loader)
    self.sample = _peek(self.iterator)
    self.rng = jax.random.PRNGKey(config.seed)
    self.create_state = state_init.boxed_state_fn(self.task, self.tx, self.sample, use_ema=config.ema_decay > 0)
    abstract, shardings = state_init.state_shardings(self.create_state, self.rng, mesh, self.rules)
    # Frozen parts join the state replicated, with their saved shapes.
    self.frozen_spec = frozen.abstract_variables(self.frozen_parts, mesh)
    self.abstract_state = abstract.replace(frozen=jax.tree.map(
        lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype), self.frozen_spec))
    self.shardings = shardings.replace(frozen=jax.tree.map(lambda s: s.sharding, self.frozen_spec))
    self.init_plan = init_from.plan(config, self.workdir, abstract, shardings)
    self.evaluators = evaluators.build(config, evaluators.Context(
        config=config, task=self.task, mesh=mesh, rules=self.rules, state_shardings=self.shardings,
        workdir=self.workdir, compiler_options=self.compiler_options))
    workdir_lib.prepare(self.workdir)  # last check: a bad config leaves no directory behind

  def evaluate(self, state, step: int, *, is_last: bool, writer: MetricWriter | None = None) -> dict[str, float]:
    """The scalars of every evaluator due at `step`, as '<name>/<key>'; images go to `writer`."""
    scalars = {}
    for evaluator in self.evaluators:
      if evaluator.due(step, is_last):
        result = evaluator.run(state)
        scalars.update({f'{evaluator.name}/{key}': value for key, value in result.scalars.items()})
        if writer is not None and result.images:
          writer.write_images(step, {f'{evaluator.name}/{key}': image for key, image in result.images.items()})
    return scalars


def logical_rules(config: ml_collections.ConfigDict) -> tuple:
  return tuple(tuple(rule) for rule in config.sharding_rules)


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, float]:
  """Trains (resuming from the latest checkpoint in `workdir`), evaluates, returns final metrics."""
  log_filter.quiet_library_info()
  config_check.validate(config)
  compiler_options.validate(compiler_options.from_config(config))
  mesh = make_mesh(config.mesh)
  with jax.set_mesh(mesh), nn.logical_axis_rules(logical_rules(config)), kernels.use(config.kernels):
    return _train(Run(config, workdir, mesh))


def _compile(run: Run):
  """(The train call AOT-compiled for the state's and the batches' shardings, model FLOPs per step per device)."""
  k = run.config.steps_per_call
  train_batches = batch_sharding(run.mesh, run.rules, leading_dims=1)
  batch_spec = jax.tree.map(
      lambda x: jax.ShapeDtypeStruct((k, run.config.batch_size, *x.shape[1:]), x.dtype, sharding=train_batches),
      run.sample)
  train_call = steps.make_train_call(
      run.task, run.tx, accum_steps=run.config.grad_accum_steps, ema_decay=run.config.ema_decay)
  state_spec = state_init.with_shardings(run.abstract_state, run.shardings)
  compiled = jax.jit(train_call, in_shardings=(run.shardings, train_batches),
                     out_shardings=(run.shardings, replicated(run.mesh)), donate_argnums=0,
                     ).lower(state_spec, batch_spec).compile(compiler_options=run.compiler_options)
  return compiled, accounting.matmul_flops(train_call, state_spec, batch_spec) / (k * run.mesh.size)


def _save(checkpointer: Checkpointer, writer: MetricWriter, step: int, state, data_state: bytes, *,
          force: bool = False) -> None:
  """Saves a checkpoint once metrics.jsonl holds every record up to `step`, so a resume from
  it finds them; writing the metrics overlaps the checkpoint's blocking part."""
  metrics_written = writer.flush()
  checkpointer.save(step, state, data_state, force=force)
  if metrics_written:
    metrics_written.result()


def _train(run: Run) -> dict[str, float]:
  config = run.config
  k = config.steps_per_call
  if config.dry_run:
    train_call, flops = _compile(run)
    logging.info('%s', dry_run.report(run.abstract_state, run.shardings, train_call, flops))
    return {'perf/model_flops_per_step': flops}

  tokenizer = input_pipeline.dataset_tokenizer(config.data)
  checkpointer = Checkpointer(run.workdir / 'checkpoints', config.checkpoint, config,
                              tokenizer.to_json() if tokenizer else None)
  start, state = checkpointer.restore_latest(state_init.with_shardings(run.abstract_state, run.shardings), run.iterator)
  if state is None:
    state = state_init.init_state(run.create_state, run.rng, run.shardings.replace(frozen={}))
    if run.init_plan:
      state = init_from.load(run.init_plan, state)
  else:
    logging.info('Resuming from the checkpoint at step %d', start)
  # Checkpoints hold no frozen part: each comes from its own run, on a fresh start as on resume.
  state = state.replace(frozen=frozen.restore(run.frozen_parts, run.frozen_spec))
  if run.process_index == 0:
    workdir_lib.write_config(run.workdir, config)
  writer = MetricWriter(run.workdir, enabled=run.process_index == 0, resume_step=start)
  if start >= run.total_steps:
    logging.info('The run in %s is already complete at step %d', run.workdir, start)
    writer.close()
    checkpointer.close()
    return run.evaluate(state, start, is_last=True)
  if quantization.settings(config).mode == 'ptq':
    raise ConfigError(f"quantization.mode='ptq': the run in {run.workdir} has no quantized checkpoint at step "
                      f'{run.total_steps}; write one with python -m train_lib.quantize, or train with mode '
                      "'qat'")
  # Compiled only when there are steps to take: a complete run (a post-training quantized one
  # among them, whose int8 weights have no gradient) is evaluated without it.
  train_call, flops = _compile(run)

  feeder = Feeder(run.iterator, steps_per_call=k, sharding=batch_sharding(run.mesh, run.rules, leading_dims=1),
                  process_count=run.process_count)
  watcher = PreemptionWatcher()
  peak, peak_source = accounting.peak_flops_per_device(precision.resolve(config.compute_dtype), run.workdir)
  logging.info('Compute dtype %s; model FLOPs per step per device: %.3g; peak %.3g FLOP/s per device (%s)',
               precision.resolve(config.compute_dtype), flops, peak, peak_source)
  logging.info('kernels=%s%s', config.kernels,
               f' ({kernels.describe(built_only=True)})' if config.kernels == 'auto' else '')
  progress = Progress(run.total_steps, start, config.batch_size, flops, peak, run.task.tokens_per_example)
  profiler = Profiler(run.workdir / 'profile', config.profile)
  pending, record, step = [], {}, start
  try:
    while step < run.total_steps:
      profiler.before_call(step)
      batches, data_state = feeder.next()
      state, metrics = train_call(state, batches)
      step += k
      pending.append(metrics)
      if len(pending) > 1:
        # At most two calls in flight: an unbounded queue of calls with cross-process
        # collectives starves XLA:CPU's threads (seen as a gloo deadlock), and holds memory.
        jax.block_until_ready(pending[-2])
      if watcher.should_stop(step):
        _summarize(pending)
        _save(checkpointer, writer, step, state, data_state, force=True)
        checkpointer.wait()
        raise Preempted(f'SIGTERM: saved a checkpoint at step {step}; rerun the same command to resume')
      is_last = step == run.total_steps
      saving = (config.checkpoint.every and step % config.checkpoint.every == 0) or is_last
      record = {}
      # A checkpoint step is also logged: a run resumed from it has every step's metrics (none
      # left pending), and a state that went NaN is never saved.
      if step % config.log_every == 0 or saving:
        record.update(_summarize(pending))
        record.update(progress.rates(step))
        pending = []
      record.update(run.evaluate(state, step, is_last=is_last, writer=writer))
      if record:
        writer.write(step, record)
        if run.process_index == 0:
          logging.info('%s', progress.line(step, record))
      if saving:
        _save(checkpointer, writer, step, state, data_state)
  finally:
    profiler.close()
    feeder.close()
    watcher.close()
    checkpointer.wait()
    checkpointer.close()
    writer.close()
  return record
