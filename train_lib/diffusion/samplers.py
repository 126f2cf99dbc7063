"""DDPM ancestral sampling and DDIM sampling, each one jitted `lax.scan` over its steps.

Both walk a descending subsequence of the T training timesteps ('trailing' spacing: it
starts at t = T - 1, where x_T ~ N(0, I) really is the model's input; Lin et al. 2024) and
step from t to the next one p (abar_{-1} = 1 after the last):

  DDPM: x_p ~ q(x_p | x_t, x0) of the process respaced onto the subsequence, whose betas are
        1 - abar_t / abar_p (Nichol & Dhariwal 2021); with all T steps, Ho et al.'s sampler with
        the posterior variance beta~_t.
  DDIM: x_p = sqrt(abar_p) x0 + sqrt(1 - abar_p - sigma^2) eps + sigma z, with
        sigma = eta sqrt((1 - abar_p) / (1 - abar_t)) sqrt(1 - abar_t / abar_p) (Song et al. 2021,
        eq. 12): eta = 0 is deterministic, eta = 1 is DDPM's update.

The model enters as `denoise(x_t, t) -> (x0, eps)`; the task builds it from its network's
output (train_lib/diffusion/schedule.py), classifier-free guidance included.
"""

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from train_lib.diffusion import schedule as schedule_lib

SAMPLERS = ('ddpm', 'ddim')

Denoise = Callable[[jax.Array, jax.Array], tuple[jax.Array, jax.Array]]


@dataclasses.dataclass(frozen=True)
class Sampler:
  """How to sample: `steps` denoising steps of `name`; DDIM's `eta`; x0 clipped to [-1, 1]; the
  classifier-free guidance scale of a class-conditional model (None: no guidance; 1 is the same)."""

  name: str = 'ddim'
  steps: int = 50
  eta: float = 0.0
  clip_x0: bool = True
  guidance: float | None = None

  def check(self, num_train_steps: int) -> 'Sampler':
    """Itself, or a one-line ValueError naming the bad field and what it may be."""
    if self.name not in SAMPLERS:
      raise ValueError(f'unknown sampler {self.name!r}; valid samplers are {list(SAMPLERS)}')
    if isinstance(self.steps, bool) or not isinstance(self.steps, int) or not 1 <= self.steps <= num_train_steps:
      raise ValueError(f'sampler steps must be an int in 1..{num_train_steps} (the training steps), got {self.steps!r}')
    if not isinstance(self.eta, (int, float)) or self.eta < 0:
      raise ValueError(f'sampler eta must be a number >= 0, got {self.eta!r}')
    if self.guidance is not None and (not isinstance(self.guidance, (int, float)) or self.guidance < 0):
      raise ValueError(f'guidance must be a number >= 0 (or None), got {self.guidance!r}')
    if self.name == 'ddpm' and self.eta != 0:
      raise ValueError("eta is DDIM's: DDPM always adds the posterior noise (eta=1 in DDIM's terms); "
                       "use sampler 'ddim' with eta")
    return self


def timesteps(num_train_steps: int, steps: int) -> np.ndarray:
  """The descending [steps] timesteps a sampler visits, from T - 1 ('trailing' spacing)."""
  return (np.round(np.arange(num_train_steps, 0, -num_train_steps / steps)) - 1).astype(np.int32)


def ddpm_coefficients(abar_t: np.ndarray, abar_p: np.ndarray) -> tuple[np.ndarray, ...]:
  """(a, b, sigma) of x_p = a x0 + b x_t + sigma z: the posterior q(x_p | x_t, x0) of the process
  respaced from t to p, whose beta is 1 - abar_t / abar_p. float64: near t = 0 it is a difference
  of numbers close to 1."""
  beta = 1 - abar_t / abar_p
  a = np.sqrt(abar_p) * beta / (1 - abar_t)
  b = np.sqrt(1 - beta) * (1 - abar_p) / (1 - abar_t)
  return a, b, np.sqrt(beta * (1 - abar_p) / (1 - abar_t))


def ddim_coefficients(abar_t: np.ndarray, abar_p: np.ndarray, eta: float) -> tuple[np.ndarray, ...]:
  """(a, b, sigma) of x_p = a x0 + b eps + sigma z: DDIM's generalised update (eq. 12)."""
  sigma = eta * np.sqrt((1 - abar_p) / (1 - abar_t) * (1 - abar_t / abar_p))
  return np.sqrt(abar_p), np.sqrt(np.maximum(1 - abar_p - sigma**2, 0.0)), sigma


def sample(denoise: Denoise, schedule: schedule_lib.NoiseSchedule, sampler: Sampler, rng: jax.Array,
           shape: tuple[int, ...]) -> jax.Array:
  """x_0 of shape `shape` ([B, ...]) from x_T ~ N(0, I) drawn with `rng`, in one scan."""
  ts = timesteps(schedule.num_steps, sampler.steps)
  abar = np.append(schedule.alphas_cumprod, 1.0)  # abar[-1] = 1: the last step lands on x_0
  abar_t, abar_p = abar[ts], abar[np.append(ts[1:], -1)]
  if sampler.name == 'ddpm':
    coefficients = ddpm_coefficients(abar_t, abar_p)
  else:
    coefficients = ddim_coefficients(abar_t, abar_p, sampler.eta)

  def step(x, inputs):
    t, index, a, b, sigma = inputs
    t = jnp.full(shape[:1], t, jnp.int32)
    x0, eps = denoise(x, t)
    if sampler.clip_x0:
      x0 = jnp.clip(x0, -1.0, 1.0)
      eps = schedule_lib.eps_from_x0(schedule, x0, x, t)
    noise = jax.random.normal(jax.random.fold_in(rng, index), shape, x.dtype)
    return a * x0 + b * (x if sampler.name == 'ddpm' else eps) + sigma * noise, None

  x_T = jax.random.normal(jax.random.fold_in(rng, len(ts)), shape, jnp.float32)
  per_step = (jnp.asarray(ts), jnp.arange(len(ts)), *(jnp.asarray(c, jnp.float32) for c in coefficients))
  x, _ = jax.lax.scan(step, x_T, per_step)
  return x
