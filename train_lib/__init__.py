"""lamina's trainer. `train_and_evaluate(config, workdir)` is what tests and notebooks call."""

from train_lib.trainer import train_and_evaluate

__all__ = ['train_and_evaluate']
