"""Gaussian diffusion (Ho et al. 2020): the noise schedule and its closed forms.

  q(x_t | x_0) = N(sqrt(abar_t) x_0, (1 - abar_t) I)

t runs 0 .. T-1 (t = 0 is the first noising step); abar_{-1} = 1. DDPM's posterior
q(x_{t-1} | x_t, x_0) is the sampler's (train_lib/diffusion/samplers.py). Schedules: 'linear'
(beta from 1e-4 to 0.02 over T = 1000, scaled for other T as in Nichol & Dhariwal 2021) and
'cosine' (their abar(t) = cos^2((t/T + s) / (1 + s) pi/2), betas clipped at 0.999).
The tables are float64 numpy arrays (a sampler's coefficients near t = 0 are differences of
numbers close to 1); training and sampling read them as float32.

A network predicts 'epsilon' (the noise) or 'v' = sqrt(abar) eps - sqrt(1 - abar) x_0
(Salimans & Ho 2022); `predicted_x0_eps` turns either into (x_0, eps).
"""

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

SCHEDULES = ('linear', 'cosine')
PREDICTIONS = ('epsilon', 'v')


def betas(name: str, num_steps: int) -> np.ndarray:
  """The [num_steps] float64 betas of schedule `name`."""
  if name == 'linear':
    scale = 1000 / num_steps
    return np.linspace(scale * 1e-4, scale * 0.02, num_steps, dtype=np.float64)
  if name == 'cosine':
    s = 0.008
    f = np.cos((np.arange(num_steps + 1, dtype=np.float64) / num_steps + s) / (1 + s) * math.pi / 2) ** 2
    return np.minimum(1 - f[1:] / f[:-1], 0.999)
  raise ValueError(f'unknown noise schedule {name!r}; valid schedules are {list(SCHEDULES)}')


@dataclasses.dataclass(frozen=True)
class NoiseSchedule:
  """Per-step tables [T] (float64); index them with integer timesteps."""

  betas: np.ndarray
  alphas_cumprod: np.ndarray

  @property
  def num_steps(self) -> int:
    return self.betas.shape[0]


def make(name: str, num_steps: int = 1000) -> NoiseSchedule:
  """The schedule `name` over `num_steps` steps."""
  b = betas(name, num_steps)
  return NoiseSchedule(betas=b, alphas_cumprod=np.cumprod(1 - b))


def _at(table: np.ndarray, t: jax.Array, like: jax.Array) -> jax.Array:
  """table[t] (float32) for [B] timesteps, shaped to broadcast against `like` [B, ...]."""
  return jnp.asarray(table, jnp.float32)[t].reshape(t.shape + (1,) * (like.ndim - t.ndim))


def q_sample(schedule: NoiseSchedule, x0: jax.Array, t: jax.Array, noise: jax.Array) -> jax.Array:
  """x_t drawn from q(x_t | x_0) with the given standard normal `noise`."""
  abar = _at(schedule.alphas_cumprod, t, x0)
  return jnp.sqrt(abar) * x0 + jnp.sqrt(1 - abar) * noise


def target(schedule: NoiseSchedule, prediction: str, x0: jax.Array, noise: jax.Array, t: jax.Array) -> jax.Array:
  """What the network is trained to output for x_t = q_sample(x0, t, noise)."""
  if prediction == 'epsilon':
    return noise
  abar = _at(schedule.alphas_cumprod, t, x0)
  return jnp.sqrt(abar) * noise - jnp.sqrt(1 - abar) * x0


def predicted_x0_eps(schedule: NoiseSchedule, prediction: str, output: jax.Array, xt: jax.Array,
                     t: jax.Array) -> tuple[jax.Array, jax.Array]:
  """(x_0, eps) implied by the network's `output` at x_t."""
  abar = _at(schedule.alphas_cumprod, t, xt)
  if prediction == 'epsilon':
    return (xt - jnp.sqrt(1 - abar) * output) / jnp.sqrt(abar), output
  return jnp.sqrt(abar) * xt - jnp.sqrt(1 - abar) * output, jnp.sqrt(1 - abar) * xt + jnp.sqrt(abar) * output


def eps_from_x0(schedule: NoiseSchedule, x0: jax.Array, xt: jax.Array, t: jax.Array) -> jax.Array:
  """The noise that takes x_0 to x_t (after x_0 was clipped, say)."""
  abar = _at(schedule.alphas_cumprod, t, xt)
  return (xt - jnp.sqrt(abar) * x0) / jnp.sqrt(1 - abar)
