"""A trained run as one pure function of its input batch: what every export starts from and is
checked against (train_lib/export.py; train_lib/export_stablehlo.py, train_lib/export_onnx.py).

  run = exportable.load_run('/tmp/lamina/fmnist_resnet')
  logits = run(run.inputs)                     # model.apply(variables, x, train=False)
  result = exportable.compare(run, {'onnx': export_onnx.onnx_session('model.onnx')})
  result.max_abs_diff['onnx'], result.accuracy['onnx'], result.jax_accuracy

The input is the batch key the run's task feeds its model: `task.input_key` (default 'image',
float32 [B, H, W, C]) for classification, 'inputs' (int32 [B, L]) for a language model.
"""

import dataclasses
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax import linen as nn

import input_pipeline
from train_lib import frozen, from_run
from train_lib.errors import ConfigError
from train_lib.tasks.distillation import DISTILLATION_FIELDS

# task.name -> (the batch key of the model's input, of the targets its accuracy reads).
_KEYS = {'classification': ('image', 'label'), 'language_model': ('inputs', 'targets')}


@dataclasses.dataclass(frozen=True, eq=False)  # eq=False: hashed by identity, so jax.jit takes it
class Exportable:
  """A run's model in inference mode (BatchNorm on its running statistics, no dropout), its
  variables, config and one real batch of its eval split (padding rows dropped)."""

  model: nn.Module
  variables: dict
  config: ml_collections.ConfigDict
  input_key: str
  label_key: str
  batch: dict[str, np.ndarray]
  workdir: str
  step: int

  @property
  def inputs(self) -> np.ndarray:
    """The model's input batch: real shapes and dtype, the batch dimension first."""
    return self.batch[self.input_key]

  def __call__(self, x: jax.Array) -> jax.Array:
    """The function every format exports: the logits of input batch `x`."""
    return self.model.apply(self.variables, x, train=False)


def model_task(config: ml_collections.ConfigDict) -> str:
  """The task that defines the run's model: a distilled student's own task, else the run's."""
  if config.task.name == 'distillation':
    return config.task.get('student', DISTILLATION_FIELDS['student'])
  return config.task.name


def check_task(config: ml_collections.ConfigDict) -> None:
  """Refuses, in one ConfigError line, a run whose model is not one function of one batch key."""
  if model_task(config) not in _KEYS:
    raise ConfigError(f"export takes classification and language-model runs (one model, one input); this run "
                      f"trained task '{config.task.name}'")


def load_run(workdir: str, step: int | None = None, ema: bool = False) -> Exportable:
  """The run in `workdir` at `step` (default the latest checkpoint), its EMA weights with `ema`.

  A missing checkpoint, an EMA the run did not keep and a task that export does not take are
  one ConfigError line each, before anything is restored or compiled. Exports compute in
  float32 whatever the run's compute_dtype: CPU runtimes have few bfloat16 kernels, and int8
  calibration starts from a float32 graph.
  """
  source = from_run.open_run(workdir, step, what='--workdir')
  config = source.config
  check_task(config)
  from_run.params_item(source, ema, what='--ema')
  model, variables = frozen.load(workdir, source.step, ema=ema)
  model, variables = _float32(model, variables)
  input_key, label_key = _KEYS[model_task(config)]
  if model_task(config) == 'classification':
    input_key = config.task.get('input_key', input_key)
    label_key = config.task.get('label_key', label_key)
  batch = next(_eval_batches(config))
  real = batch['mask'] > 0
  return Exportable(model, variables, config, input_key, label_key, {k: v[real] for k, v in batch.items()},
                    str(source.workdir), source.step)


def _float32(model: nn.Module, variables: dict) -> tuple[nn.Module, dict]:
  updates = {field: jnp.float32 for field in ('dtype', 'param_dtype') if hasattr(model, field)}
  cast = lambda a: a.astype(jnp.float32) if jnp.issubdtype(a.dtype, jnp.floating) else a
  return model.clone(**updates), jax.tree.map(cast, variables)


def _eval_batches(config: ml_collections.ConfigDict, split: str | None = None):
  return input_pipeline.make_eval_batches(config.data, split=split or config.data.eval_split,
                                          global_batch_size=config.eval_batch_size, process_index=0,
                                          process_count=1)


@dataclasses.dataclass(frozen=True)
class Comparison:
  """Exports against the JAX model over every example of a split once."""

  split: str
  num_examples: int
  jax_accuracy: float
  max_abs_diff: dict[str, float]  # export name -> largest |export - JAX| over every real output
  accuracy: dict[str, float]  # export name -> its argmax accuracy (per token for a language model)


def compare(exportable: Exportable, exports: Mapping[str, Callable[[np.ndarray], np.ndarray]],
            split: str | None = None) -> Comparison:
  """Runs the JAX model and each export (input batch -> logits) on `split` (default the run's
  eval split) in the run's eval batches; padding rows count nowhere."""
  split = split or exportable.config.data.eval_split
  forward = jax.jit(lambda variables, x: exportable.model.apply(variables, x, train=False))
  diffs = dict.fromkeys(exports, 0.0)
  hits = dict.fromkeys(['jax', *exports], 0.0)
  total = num_examples = 0
  for batch in _eval_batches(exportable.config, split):
    real = batch['mask'] > 0
    x = batch[exportable.input_key]
    reference = np.asarray(forward(exportable.variables, x))[real]
    labels, weights = _targets(exportable, batch, reference.ndim)
    hits['jax'] += float(((reference.argmax(-1) == labels) * weights).sum())
    for name, run in exports.items():
      logits = np.asarray(run(x))[real]
      diffs[name] = max(diffs[name], float(np.abs(logits - reference).max(initial=0.0)))
      hits[name] += float(((logits.argmax(-1) == labels) * weights).sum())
    total += float(weights.sum())
    num_examples += int(real.sum())
  accuracy = {name: count / total for name, count in hits.items()}
  return Comparison(split, num_examples, accuracy.pop('jax'), diffs, accuracy)


def _targets(exportable: Exportable, batch: dict, logits_ndim: int) -> tuple[np.ndarray, np.ndarray]:
  """The real rows' labels (class ids) and the weight of each prediction."""
  real = batch['mask'] > 0
  labels = batch[exportable.label_key][real]
  if labels.ndim == logits_ndim:  # one-hot labels, when the pp string made them
    labels = labels.argmax(-1)
  # A language model's windows weigh each target token (0 past the end of the text).
  weights = batch['weights'][real] if 'weights' in batch else np.ones(labels.shape, np.float32)
  return labels, weights
