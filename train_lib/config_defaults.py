"""Every key the trainer reads, with its default. Experiments start from `base_config()`.

The OPEN_SECTIONS' keys belong to what they choose (the model, the task, each evaluator,
frozen part and optimizer group), which check them by name. Every other section is
closed: an unknown key is an error.
"""

import ml_collections
from ml_collections import config_dict

from train_lib import mesh


def base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()
  c.seed = 0
  c.task = ml_collections.ConfigDict({'name': 'classification'})
  c.model = ml_collections.ConfigDict({'name': 'cnn'})
  c.data = ml_collections.ConfigDict({
      'name': 'digits',
      'data_dir': config_dict.placeholder(str),  # None: $TFDS_DATA_DIR or ~/tensorflow_datasets
      'train_split': 'train',
      'eval_split': 'test',
      'pp_train': '',
      'pp_eval': '',
      'worker_count': 0,  # grain worker processes; 0 reads in the training process
      'shuffle': True,
      'subset_seed': 0,  # which examples a few-label split such as 'train_per_class[10]' keeps
      # Text data sets: a tokenizer turns each split into one token stream, read as windows.
      'tokenizer': '',  # '' (not text), 'char', 'byte', 'bpe:N', 'unigram:N'
      'seq_len': 0,  # tokens per window
      'window_stride': 1,  # start-position spacing of training windows
  })
  c.batch_size = 128  # global, over all processes and devices
  c.eval_batch_size = 512
  c.total_steps = 1000
  c.num_epochs = config_dict.placeholder(float)  # when set, overrides total_steps
  c.steps_per_call = 1  # train steps fused into one device call (lax.scan)
  c.grad_accum_steps = 1  # micro-batches per step
  c.compute_dtype = 'float32'
  # 'auto': hand-written fast paths where they run (kernels/); 'xla': plain JAX everywhere.
  c.kernels = 'auto'
  c.param_dtype = 'float32'
  c.ema_decay = 0.0  # 0 disables the parameter EMA; when on, eval uses the EMA
  c.optimizer = ml_collections.ConfigDict({
      'name': 'adam',
      'learning_rate': 1e-3,
      'schedule': 'constant',
      'warmup_steps': 0,
      'end_factor': 0.0,  # final lr as a fraction of the peak (cosine, linear)
      'b1': 0.9,
      'b2': 0.999,
      'eps': 1e-8,
      'momentum': 0.9,
      'nesterov': False,
      'weight_decay': 0.0,
      'weight_decay_mask': 'kernels',
      'grad_clip_norm': 0.0,  # 0 disables clipping
      # Block i of L Transformer blocks trains at layer_decay**(L - i) x the rate; 0: off (train_lib/layer_decay.py).
      'layer_decay': 0.0,
      # Regex over parameter paths: what trains; the rest is frozen (train_lib/trainable.py).
      'trainable': '.*',
      # name -> {'params': regex over parameter paths, any field above}: train_lib/optimizers.py
      'groups': ml_collections.ConfigDict(),
      # Magnitude or N:M pruning of the kernels `params` matches, masks in the optimizer state (train_lib/pruning.py).
      'pruning': ml_collections.ConfigDict({
          'method': 'none', 'sparsity': 0.9, 'scope': 'global', 'initial_sparsity': 0.0, 'start_step': 0,
          'end_step': -1, 'every': 100, 'n': 2, 'm': 4, 'params': '.*kernel'}),
  })
  # qwix quantization of every model of the run, by module path (train_lib/quantization.py).
  c.quantization = ml_collections.ConfigDict({'mode': 'none', 'scheme': 'int8', 'modules': '.*', 'skip': ''})
  c.log_every = 50
  c.eval_every = 0  # 0: evaluate only at the end
  # name -> {'type', and optionally 'every', 'split', 'pp', 'batch_size' (default: eval_every,
  # data.eval_split, data.pp_eval, eval_batch_size) and the type's own keys}: train_lib/evaluators/.
  # Each writes '<name>/<metric>'; all of them run after the last step.
  c.evals = ml_collections.ConfigDict({'eval': {'type': 'per_example'}})
  # name -> {'workdir', 'step', 'ema'}: networks restored read-only from other runs (train_lib/frozen.py).
  c.frozen = ml_collections.ConfigDict()
  # Start from another run's weights (train_lib/init_from.py); a run with its own checkpoint resumes from that.
  c.init_from = ml_collections.ConfigDict({
      'workdir': '',  # '': start from scratch
      'step': config_dict.placeholder(int),  # None: the source's latest checkpoint
      'params': '.*',  # regex over parameter paths to load; the others start fresh
      'ema': False,  # load the source's EMA weights
  })
  c.checkpoint = ml_collections.ConfigDict({'every': 500, 'keep': 3, 'async_save': True})
  c.mesh = ml_collections.ConfigDict({'data': -1, 'fsdp': 1, 'tensor': 1, 'expert': 1})
  c.sharding_rules = mesh.DEFAULT_RULES
  # XLA options for the train and eval calls (train_lib/compiler_options.py); empty: XLA's defaults.
  c.compiler_options = ml_collections.ConfigDict()
  # jax.profiler trace of steps [first_step, first_step + num_steps) into WORKDIR/profile; 0 steps: off.
  c.profile = ml_collections.ConfigDict({'first_step': 10, 'num_steps': 0})
  c.tiny = False
  c.dry_run = False  # compile, print memory / FLOPs / shardings, and stop
  return c


OPEN_SECTIONS = ('model', 'task', 'compiler_options', 'evals', 'frozen', 'optimizer.groups')


def complete(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """`config` (a run's saved config) with every key added to base_config() since it was saved,
  at its default, so code reading today's keys reads old runs too. Open sections are the
  config's own and are left as they are."""

  def fill(target: ml_collections.ConfigDict, defaults: ml_collections.ConfigDict, prefix: str) -> None:
    for key, default in defaults.items():
      if f'{prefix}{key}' in OPEN_SECTIONS:
        continue
      if key not in target:
        target[key] = default
      elif isinstance(default, ml_collections.ConfigDict) and isinstance(target[key], ml_collections.ConfigDict):
        fill(target[key], default, f'{prefix}{key}.')

  fill(config, base_config(), '')
  return config
