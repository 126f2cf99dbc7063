"""Components chosen by name from a config, with one-line errors that list the valid choices.

Tasks and evaluators are tables of name -> class; a new one is one file plus one entry
in its table. Each class declares `config_fields`, the keys of its config section with
their defaults, so a misspelt key fails before anything is built or compiled.
"""

from collections.abc import Iterable, Mapping
from typing import TypeVar

from train_lib.errors import ConfigError

T = TypeVar('T')


def lookup(table: Mapping[str, T], name: str, *, kind: str, where: str) -> T:
  """table[name]; an unknown name is a ConfigError naming `where` it came from and the valid names."""
  if name not in table:
    raise ConfigError(f"{where}: unknown {kind} '{name}'; valid {kind}s are {sorted(table)}")
  return table[name]


def check_keys(given: Iterable[str], valid: Iterable[str], *, where: str) -> None:
  """A ConfigError naming the keys of `given` that are not `valid`, and the valid ones."""
  unknown = sorted(set(given) - set(valid))
  if unknown:
    raise ConfigError(f'{where}: unknown key(s) {unknown}; valid keys are {sorted(valid)}')
