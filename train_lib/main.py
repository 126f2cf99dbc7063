"""Command line: python -m train_lib.main --config=experiments/X.py[:key=value,...] --workdir=DIR.

Without --config it runs the default experiment, experiments/digits_cnn.py.
Any value can be overridden with --config.some.key=value.
"""

import os
import sys

from absl import app, flags, logging
from ml_collections import config_flags

import experiments
from train_lib.errors import ConfigError, NonFiniteLossError, Preempted
from train_lib.trainer import train_and_evaluate

DEFAULT_CONFIG = os.path.join(os.path.dirname(experiments.__file__), 'digits_cnn.py')

config_flags.DEFINE_config_file('config', DEFAULT_CONFIG, 'Experiment config file[:args].', lock_config=True)
flags.DEFINE_string('workdir', None, 'Directory for checkpoints, metrics and TensorBoard files.', required=True)


def main(argv: list[str]) -> None:
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  try:
    train_and_evaluate(flags.FLAGS.config, flags.FLAGS.workdir)
  except ConfigError as e:
    sys.exit(f'lamina: config error: {e}')
  except NonFiniteLossError as e:
    sys.exit(f'lamina: training stopped: {e}')
  except Preempted as e:
    logging.warning('%s', e)
    sys.exit(Preempted.exit_code)


if __name__ == '__main__':
  app.run(main)
