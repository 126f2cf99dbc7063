"""Command line: python -m train_lib.main --config=experiments/X.py[:key=value,...] --workdir=DIR.

Without --config it runs the default experiment, experiments/digits_cnn.py.
Any value can be overridden with --config.some.key=value.
"""

import os
import re
import sys

from train_lib import allocator

if __name__ == '__main__':
  # Before the imports below (about 5 s, jax's 3 s among them), so they run only once.
  allocator.reexec_under_tcmalloc()

# pylint: disable=wrong-import-position
from absl import app, flags, logging
from ml_collections import config_flags

import experiments
from train_lib import compilation_cache, runtime
from train_lib.errors import CheckpointError, ConfigError, NonFiniteLossError, Preempted
from train_lib.trainer import train_and_evaluate

DEFAULT_CONFIG = os.path.join(os.path.dirname(experiments.__file__), 'digits_cnn.py')



def _one_line(error: BaseException) -> str:
  """The useful last line of an error that absl or config_flags wrapped in a traceback."""
  lines = [l.strip() for l in str(error).splitlines() if l.strip() and not l.startswith('Pass --help')]
  last = lines[-1] if lines else type(error).__name__
  if isinstance(error, (AttributeError, KeyError)):  # an override of a key the config lacks
    hint = re.search(r'Did you mean "([\w.]+)" instead of "([\w.]+)"', str(error))
    if hint:
      return f"unknown config key '{hint.group(2)}' in a --config override; did you mean '{hint.group(1)}'?"
    key = re.search(r"'([\w.]+)'", str(error))
    return (f"unknown config key '{key.group(1) if key else last}' in a --config override; "
            'see the experiment file for valid keys')
  return re.sub(r'^FATAL Flags parsing error: |^[\w.]+(Error|Exception): ', '', last)


def _define_flags() -> None:
  try:
    # config_flags reads --config.key=value overrides from sys.argv right here.
    config_flags.DEFINE_config_file('config', DEFAULT_CONFIG, 'Experiment config file[:args].', lock_config=True)
  except Exception as e:
    sys.exit(f'lamina: config error: {_one_line(e)}')
  flags.DEFINE_string('workdir', None, 'Directory for checkpoints, metrics and TensorBoard files.', required=True)
  flags.DEFINE_string('coordinator_address', None, 'host:port of process 0, for a multi-process run.')
  flags.DEFINE_integer('num_processes', None, 'Processes in a multi-process run.')
  flags.DEFINE_integer('process_id', None, 'This process, 0..num_processes-1.')


def _parse_flags(argv: list[str]) -> list[str]:
  try:
    return flags.FLAGS(argv)
  except Exception as e:  # flag and config-file errors: one line, not a traceback
    sys.exit(f'lamina: config error: {_one_line(e)}')


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  logging.info('Memory allocator: %s', 'tcmalloc' if allocator.in_use() else
               'the system one (apt-get install libtcmalloc-minimal4: faster CPU steps)')
  runtime.initialize(flags.FLAGS.coordinator_address, flags.FLAGS.num_processes, flags.FLAGS.process_id)
  logging.info('Compilation cache: %s', compilation_cache.enable() or 'off')
  config = flags.FLAGS.config
  try:
    config.keys()
  except OSError as e:  # config_flags defers a missing file's error to first access
    sys.exit(f'lamina: config error: cannot load --config: {_one_line(e)}')
  try:
    train_and_evaluate(config, flags.FLAGS.workdir)
  except ConfigError as e:
    sys.exit(f'lamina: config error: {e}')
  except CheckpointError as e:
    sys.exit(f'lamina: cannot resume: {e}')
  except NonFiniteLossError as e:
    sys.exit(f'lamina: training stopped: {e}')
  except Preempted as e:
    logging.warning('%s', e)
    sys.exit(Preempted.exit_code)


if __name__ == '__main__':
  _define_flags()
  app.run(main, flags_parser=_parse_flags)
