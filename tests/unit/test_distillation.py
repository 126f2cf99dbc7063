"""The distillation loss and the task's checks (the teacher is a frozen part: tests/integration)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from train_lib import tasks
from train_lib.config_defaults import base_config
from train_lib.errors import ConfigError
from train_lib.tasks.distillation import distillation_kl

DATA_INFO = {'num_classes': 10}


def test_the_kl_term_is_zero_for_identical_logits():
  logits = jax.random.normal(jax.random.key(0), (8, 10)) * 5
  assert float(distillation_kl(logits, logits, 4.0, jnp.ones(8))) == 0.0


def test_the_kl_term_is_t_squared_times_the_kl_of_the_softened_distributions():
  student, teacher = jax.random.normal(jax.random.key(1), (2, 6, 10))
  temperature = 3.0
  p = np.asarray(jax.nn.softmax(teacher / temperature), np.float64)
  q = np.asarray(jax.nn.softmax(student / temperature), np.float64)
  expected = temperature**2 * np.mean(np.sum(p * (np.log(p) - np.log(q)), -1))
  np.testing.assert_allclose(float(distillation_kl(student, teacher, temperature, jnp.ones(6))), expected, rtol=1e-5)


def test_the_kl_term_averages_over_the_weighted_positions_only():
  student, teacher = jax.random.normal(jax.random.key(2), (2, 3, 5, 7))  # [B, L, vocab], as a language model's
  weights = jnp.array([[1, 1, 1, 0, 0], [1, 0, 0, 0, 0], [0, 0, 0, 0, 0]], jnp.float32)
  real = distillation_kl(student[weights > 0][None], teacher[weights > 0][None], 2.0, jnp.ones((1, 4)))
  # Padding past the end of the text is left out, whatever its logits.
  padded_student = jnp.where(weights[..., None] > 0, student, 1e3)
  np.testing.assert_allclose(float(distillation_kl(padded_student, teacher, 2.0, weights)), float(real), rtol=1e-6)


def _config(**task):
  config = base_config()
  config.model = {'name': 'cnn', 'features': (4,), 'hidden': ()}
  config.task = {'name': 'distillation', **task}
  return config


@pytest.mark.parametrize('task, message', [
    ({'student': 'gan'}, r"task.student: unknown student task 'gan'; valid student tasks are \['classification', "
                         r"'language_model'\]"),
    ({'alpha': 1.5}, r'task.alpha \(the weight of the teacher term\) must be in \[0, 1\], got 1.5'),
    ({'temperature': 0.0}, r'task.temperature must be > 0, got 0.0'),
    ({'temprature': 2.0}, r"task 'distillation': unknown key\(s\) \['temprature'\]"),
    ({}, r"config.frozen has no part 'teacher'"),
])
def test_a_bad_distillation_setting_is_one_line(task, message):
  with pytest.raises(ConfigError, match=message) as error:
    tasks.get(_config(**task), DATA_INFO)
  assert '\n' not in str(error.value)
