"""Preprocessing as a tiny language: "value_range(0, 1, in_max=16)|random_flip_lr|onehot(10)".

Ops are separated by `|`; each is `name` or `name(args)` where the args are
Python literals (read with `ast.literal_eval`, never eval). `parse` checks the
whole string eagerly — names and arguments — so a config can be validated
before anything compiles. The ops themselves live in `ops.py`.
"""

import ast
import inspect

import numpy as np

from input_pipeline import ops

Batch = ops.Batch


class Pipeline:
  """A parsed pp string: call it on a batch, with an rng when `random` is True."""

  def __init__(self, pp: str, steps: list[tuple[str, ops.Op]], random: bool):
    self.pp = pp
    self._steps = steps
    self.random = random

  def __call__(self, batch: Batch,
               rng: np.random.Generator | None = None) -> Batch:
    if self.random and rng is None:
      raise ValueError(f'pp {self.pp!r} has random ops and needs an rng')
    for text, op in self._steps:
      try:
        batch = op(batch, rng)
      except (ValueError, TypeError) as e:
        raise ValueError(f'pp op {text}: {e}') from None
    return batch

  def __reduce__(self):
    # Ops are closures; rebuilding from the text keeps the pipeline picklable
    # for grain's spawned worker processes.
    return parse, (self.pp,)

  def __repr__(self) -> str:
    return f'Pipeline({self.pp!r})'


def parse(pp: str) -> Pipeline:
  """Parses and checks a pp string; raises a one-line ValueError naming the bad op."""
  if not isinstance(pp, str):
    raise ValueError(f'pp must be a string, got {pp!r}')
  steps, random = [], False
  for text in _split_ops(pp):
    name, args, kwargs = _parse_op(text)
    if name not in ops.OPS:
      raise ValueError(f'unknown pp op {name!r} in {pp!r}; valid ops: '
                       f'{", ".join(sorted(ops.OPS))}')
    factory, is_random = ops.OPS[name]
    usage = f'{name}{inspect.signature(factory)}'.split(' ->')[0]
    try:
      steps.append((text, factory(*args, **kwargs)))
    except (TypeError, ValueError) as e:
      raise ValueError(f'pp op {text}: {e}; usage: {usage}') from None
    random |= is_random
  return Pipeline(pp, steps, random)


def _split_ops(pp: str) -> list[str]:
  """Splits on '|' outside brackets and quotes; drops empty pieces."""
  pieces, depth, quote, start = [], 0, None, 0
  for i, c in enumerate(pp):
    if quote:
      quote = None if c == quote else quote
    elif c in '\'"':
      quote = c
    elif c in '([{':
      depth += 1
    elif c in ')]}':
      depth -= 1
    elif c == '|' and depth == 0:
      pieces.append(pp[start:i])
      start = i + 1
  pieces.append(pp[start:])
  return [p.strip() for p in pieces if p.strip()]


def _parse_op(text: str) -> tuple[str, list, dict]:
  """'name' or 'name(literal, key=literal)' -> (name, args, kwargs)."""
  try:
    node = ast.parse(text, mode='eval').body
  except SyntaxError:
    node = None
  if isinstance(node, ast.Name):
    return node.id, [], {}
  if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)):
    raise ValueError(f'pp op {text!r} is not `name` or `name(args)`')
  try:
    args = [ast.literal_eval(a) for a in node.args]
    kwargs = {k.arg: ast.literal_eval(k.value) for k in node.keywords}
  except ValueError:
    raise ValueError(f'pp op {text}: arguments must be Python literals '
                     '(numbers, strings, lists, ...)') from None
  if None in kwargs:  # A `**mapping` argument.
    raise ValueError(f'pp op {text}: `**` arguments are not supported')
  return node.func.id, args, kwargs
