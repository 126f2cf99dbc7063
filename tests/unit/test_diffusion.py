"""Gaussian diffusion: the schedules' closed forms, the samplers' updates, the diffusion task's checks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from train_lib.diffusion import samplers, schedule as schedule_lib

T = 1000


def test_linear_schedule_ends_where_ddpm_says():
  # Ho et al.: betas 1e-4 .. 0.02 over 1000 steps leave abar_T ~ 4e-5 (x_T is almost pure noise).
  abar = np.asarray(schedule_lib.make('linear', T).alphas_cumprod, np.float64)
  assert 4.0e-5 < abar[-1] < 4.1e-5
  np.testing.assert_allclose(abar[:3], np.cumprod(1 - np.array([1e-4, 1e-4 + 1.99e-2 / 999, 1e-4 + 2 * 1.99e-2 / 999])),
                             rtol=1e-6)


def test_cosine_schedule_follows_its_closed_form():
  abar = np.asarray(schedule_lib.make('cosine', T).alphas_cumprod, np.float64)
  f = lambda t: np.cos((t / T + 0.008) / 1.008 * np.pi / 2) ** 2
  t = np.array([0, 100, 500, 900])
  np.testing.assert_allclose(abar[t], f(t + 1) / f(0), rtol=1e-5)
  assert np.all(np.diff(abar) < 0)


def test_forward_noising_matches_q_of_xt_given_x0():
  schedule = schedule_lib.make('cosine', T)
  x0 = jnp.full((20000, 1), 0.7)
  t = jnp.full((20000,), 300)
  xt = schedule_lib.q_sample(schedule, x0, t, jax.random.normal(jax.random.key(0), x0.shape))
  abar = float(schedule.alphas_cumprod[300])
  assert abs(float(xt.mean()) - np.sqrt(abar) * 0.7) < 0.02
  assert abs(float(xt.var()) - (1 - abar)) < 0.02


@pytest.mark.parametrize('name', ['linear', 'cosine'])
def test_ddpm_update_at_stride_one_is_bayes_rule_of_the_two_gaussians(name):
  """q(x_{t-1} | x_t, x0) ∝ q(x_t | x_{t-1}) q(x_{t-1} | x0): the product of two Gaussians in x_{t-1}."""
  schedule = schedule_lib.make(name, T)
  b = schedule_lib.betas(name, T)
  abar = np.cumprod(1 - b)
  t = np.array([1, 10, 400, 999])
  abar_prev = abar[t - 1]
  precision = 1 / (1 - abar_prev) + (1 - b[t]) / b[t]
  x0_coef, xt_coef, sigma = samplers.ddpm_coefficients(schedule.alphas_cumprod[t], schedule.alphas_cumprod[t - 1])
  np.testing.assert_allclose(x0_coef, np.sqrt(abar_prev) / (1 - abar_prev) / precision, rtol=1e-8)
  np.testing.assert_allclose(xt_coef, np.sqrt(1 - b[t]) / b[t] / precision, rtol=1e-8)
  np.testing.assert_allclose(sigma**2, 1 / precision, rtol=1e-8)


def test_ddim_eta_1_draws_ddpm_noise_and_eta_0_none():
  abar = schedule_lib.make('cosine', T).alphas_cumprod
  t, p = np.array([999, 500, 20]), np.array([979, 480, 0])
  np.testing.assert_allclose(samplers.ddim_coefficients(abar[t], abar[p], 1.0)[2],
                             samplers.ddpm_coefficients(abar[t], abar[p])[2], rtol=1e-10)
  assert not np.any(samplers.ddim_coefficients(abar[t], abar[p], 0.0)[2])


@pytest.mark.parametrize('prediction', ['epsilon', 'v'])
def test_ddim_with_eta_1_over_all_steps_is_ddpm(prediction):
  """The whole chain, same noise, a network stand-in that depends on x_t and t."""
  schedule = schedule_lib.make('linear', T)

  def denoise(x, t):
    output = jnp.tanh(x) * (t[:, None, None, None] / T)
    return schedule_lib.predicted_x0_eps(schedule, prediction, output, x, t)

  shape = (3, 4, 4, 1)
  ddpm = samplers.sample(denoise, schedule, samplers.Sampler('ddpm', T, clip_x0=False), jax.random.key(0), shape)
  ddim = samplers.sample(denoise, schedule, samplers.Sampler('ddim', T, eta=1.0, clip_x0=False), jax.random.key(0),
                         shape)
  np.testing.assert_allclose(ddim, ddpm, rtol=1e-4, atol=1e-4)
  deterministic = samplers.sample(denoise, schedule, samplers.Sampler('ddim', T, eta=0.0, clip_x0=False),
                                  jax.random.key(0), shape)
  assert np.abs(np.asarray(deterministic) - np.asarray(ddpm)).max() > 0.1


def test_sampler_visits_trailing_timesteps():
  assert list(samplers.timesteps(T, 10)) == [999, 899, 799, 699, 599, 499, 399, 299, 199, 99]
  np.testing.assert_array_equal(samplers.timesteps(T, T), np.arange(T)[::-1])
  assert samplers.timesteps(T, 50)[0] == 999 and samplers.timesteps(T, 50)[-1] == 19


def test_v_prediction_inverts():
  schedule = schedule_lib.make('cosine', T)
  rng = np.random.default_rng(2)
  x0, eps = (jnp.asarray(rng.normal(size=(4, 3)), jnp.float32) for _ in range(2))
  t = jnp.array([0, 10, 500, 999])
  xt = schedule_lib.q_sample(schedule, x0, t, eps)
  got_x0, got_eps = schedule_lib.predicted_x0_eps(schedule, 'v', schedule_lib.target(schedule, 'v', x0, eps, t), xt, t)
  np.testing.assert_allclose(got_x0, x0, atol=1e-4)
  np.testing.assert_allclose(got_eps, eps, atol=1e-4)


@pytest.mark.parametrize('settings, message', [
    ({'name': 'euler'}, "unknown sampler 'euler'; valid samplers are ['ddpm', 'ddim']"),
    ({'name': 'ddim', 'steps': 1001}, 'steps must be an int in 1..1000'),
    ({'name': 'ddpm', 'steps': 1000, 'eta': 0.5}, "eta is DDIM's"),
    ({'name': 'ddim', 'guidance': -1.0}, 'guidance must be a number >= 0'),
])
def test_bad_sampler_is_one_line(settings, message):
  with pytest.raises(ValueError) as error:
    samplers.Sampler(**settings).check(T)
  assert message in str(error.value) and '\n' not in str(error.value)


@pytest.mark.parametrize('sampler', [samplers.Sampler('ddpm', T), samplers.Sampler('ddim', 50),
                                     samplers.Sampler('ddim', 50, eta=1.0)])
def test_the_exact_denoiser_of_three_points_samples_those_points_evenly(sampler):
  """With the optimal x0 prediction (the posterior mean over a 3-point data set), every sampler
  must land on the data, each point about a third of the time."""
  schedule = schedule_lib.make('cosine', T)
  data = jnp.array([[0.8, -0.5, 0.1], [-0.7, 0.6, -0.9], [0.2, 0.9, 0.5]])

  def denoise(x, t):
    abar = jnp.asarray(schedule.alphas_cumprod, jnp.float32)[t][:, None, None]
    distances = jnp.sum((x[:, None, :] - jnp.sqrt(abar) * data[None]) ** 2, axis=-1)
    x0 = jax.nn.softmax(-distances / (2 * (1 - abar[:, :, 0])), axis=-1) @ data
    return x0, schedule_lib.eps_from_x0(schedule, x0, x, t)

  out = samplers.sample(denoise, schedule, sampler, jax.random.key(0), (1500, 3))
  distances = jnp.linalg.norm(out[:, None] - data[None], axis=-1)
  assert float(distances.min(axis=1).max()) < 1e-3
  shares = np.bincount(np.asarray(distances.argmin(axis=1)), minlength=3) / 1500
  np.testing.assert_allclose(shares, 1 / 3, atol=0.05)
