"""config.compiler_options: they reach the compiled train call and leave the numbers alone."""

import jax
import numpy as np
from flax import linen as nn

from experiments import common
from tests.conftest import small_digits_config
from train_lib import trainer, train_and_evaluate
from train_lib.metric_writer import read_metrics


def _compiled_train_call_text(config, workdir) -> str:
  mesh = trainer.make_mesh(config.mesh)
  with jax.set_mesh(mesh), nn.logical_axis_rules(trainer.logical_rules(config)):
    compiled, _ = trainer._compile(trainer.Run(config, workdir, mesh))
  return compiled.as_text()


def test_options_change_the_compiled_train_call(tmp_path):
  tuned = small_digits_config()
  assert dict(tuned.compiler_options) == common.CPU_LIBRARY_FUSIONS  # the default experiment opts in
  plain = small_digits_config()
  plain.compiler_options = {}
  assert _compiled_train_call_text(tuned, str(tmp_path / 'a')) != _compiled_train_call_text(plain, str(tmp_path / 'b'))


def test_library_fusions_train_like_xla_defaults(tmp_path):
  runs = {}
  for name, options in (('tuned', common.CPU_LIBRARY_FUSIONS), ('plain', {})):
    config = small_digits_config()
    config.compiler_options = options
    train_and_evaluate(config, str(tmp_path / name))
    runs[name] = read_metrics(str(tmp_path / name))
  losses = {name: [r['train/loss'] for r in records if 'train/loss' in r] for name, records in runs.items()}
  assert len(losses['tuned']) == 4
  np.testing.assert_allclose(losses['tuned'], losses['plain'], rtol=1e-4)
  assert runs['tuned'][-1]['eval/accuracy'] == runs['plain'][-1]['eval/accuracy']
