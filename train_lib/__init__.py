"""lamina's trainer. `train_and_evaluate(config, workdir)` is what tests and notebooks call.

Imported on first use: `python -m train_lib.main` imports this package first, and must
be able to re-execute itself under tcmalloc (train_lib/allocator.py) before paying for
jax, flax and tfds.
"""

__all__ = ['train_and_evaluate']


def __getattr__(name: str):
  if name == 'train_and_evaluate':
    from train_lib.trainer import train_and_evaluate  # pylint: disable=g-import-not-at-top
    return train_and_evaluate
  raise AttributeError(f'module {__name__!r} has no attribute {name!r}')
