"""Facts about the DDPM baseline, DDIM and the DDPM → EDM bridge (edmjax.ddpm).

The reference model throughout is the exact ε-model of Gaussian data N(m, s² I): for
x_t = a x_0 + b ε (a = sqrt(ᾱ_t), b = sqrt(1 − ᾱ_t)), ε*(x_t, t) = b (x_t − a m) /
(a² s² + b²). Under it every sampler is a linear map of its latents and noise, so its
output distribution is known exactly.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from edmjax import ddpm, oracle


def _normal(seed, shape, dtype=np.float32):
  """Test data from NumPy's generator (eager jax.random compiles every op)."""
  return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), dtype)


def _uniform(seed, shape, dtype=np.float32):
  """Uniform test data in [-1, 1) from NumPy's generator."""
  return jnp.asarray(np.random.default_rng(seed).uniform(-1, 1, shape), dtype)

S = 0.5  # data standard deviation of the Gaussian test data


def gaussian_eps(betas, mean=0.0, std=S):
  """Closed-form ε* of N(mean, std² I) data, written out independently."""
  tables = ddpm.ddpm_tables(betas)

  def eps_fn(x_t, t):
    a = jnp.asarray(tables.sqrt_alpha_bars, x_t.dtype)[t].reshape(-1, 1, 1, 1)
    b = jnp.asarray(tables.sqrt_one_minus_alpha_bars, x_t.dtype)[t].reshape(
        -1, 1, 1, 1)
    return b * (x_t - a * mean) / (a**2 * std**2 + b**2)

  return eps_fn


def exact_ancestral_std(betas, variance, std=S):
  """Std of ddpm_sampler's output under ε*: x_{t−1} = A_t x_t + σ_t z is linear."""
  tb = ddpm.ddpm_tables(betas)
  v = 1.0
  for t in range(len(betas) - 1, -1, -1):
    a2, b2 = tb.alpha_bars[t], 1 - tb.alpha_bars[t]
    coef = np.sqrt(b2) / (a2 * std**2 + b2)  # ε* = coef · x_t
    A = (1 - tb.betas[t] / np.sqrt(b2) * coef) / np.sqrt(tb.alphas[t])
    var_t = 0.0 if t == 0 else (tb.betas[t] if variance == "beta"
                                else tb.posterior_variance[t])
    v = A * A * v + var_t
  return np.sqrt(v)


# ----------------------------------------------------------------------------- tables


def test_linear_schedule_endpoints_and_alpha_bar():
  betas = ddpm.linear_beta_schedule()
  assert betas.dtype == np.float64 and betas.shape == (1000,)
  assert betas[0] == 1e-4 and betas[-1] == 0.02
  alpha_bar_T = ddpm.ddpm_tables(betas).alpha_bars[-1]
  np.testing.assert_allclose(alpha_bar_T, 4.04e-5, rtol=2e-3)  # Ho et al. 2020


def test_cosine_schedule_matches_its_formula():
  T, s = 1000, 0.008
  betas = ddpm.cosine_beta_schedule(T, s)
  assert betas.dtype == np.float64 and betas.shape == (T,)
  f = lambda t: np.cos((t / T + s) / (1 + s) * np.pi / 2) ** 2
  alpha_bars = ddpm.ddpm_tables(betas).alpha_bars
  unclipped = betas < 0.999
  assert unclipped[:-1].all() and betas[-1] == 0.999  # only the last step is clipped
  t = np.arange(T)[unclipped]
  np.testing.assert_allclose(alpha_bars[unclipped], f(t + 1) / f(0), rtol=1e-10)


def test_posterior_tables_are_gaussian_conditioning():
  # q(x_{t−1} | x_t, x_0) from the joint Gaussian of (x_{t−1}, x_t) given x_0:
  # Cov(x_{t−1}, x_t) = sqrt(α_t)(1 − ᾱ_{t−1}), Var x_t = 1 − ᾱ_t.
  tb = ddpm.ddpm_tables(ddpm.linear_beta_schedule(200))
  abp, ab, al = tb.alpha_bars_prev, tb.alpha_bars, tb.alphas
  gain = np.sqrt(al) * (1 - abp) / (1 - ab)  # coefficient of x_t
  np.testing.assert_allclose(tb.posterior_mean_coef2, gain, rtol=1e-12)
  np.testing.assert_allclose(tb.posterior_mean_coef1, np.sqrt(abp) - gain * np.sqrt(ab),
                             rtol=1e-9, atol=1e-15)
  np.testing.assert_allclose(tb.posterior_variance,
                             (1 - abp) - gain * np.sqrt(al) * (1 - abp),
                             rtol=1e-9, atol=1e-15)
  assert tb.posterior_variance[0] == 0.0
  np.testing.assert_allclose(tb.sigmas, np.sqrt(1 / ab - 1), rtol=1e-12)
  assert np.all(np.diff(tb.sigmas) > 0)


# ----------------------------------------------------------------------------- q, loss


def test_q_sample_marginal_mean_and_variance():
  betas = ddpm.linear_beta_schedule()
  tb = ddpm.ddpm_tables(betas)
  m, n = 0.7, 20_000
  ts = np.array([0, 250, 999])
  x0 = m + S * _normal(0, (n, 1, 1, 1))
  noise = _normal(1, (n, 1, 1, 1))
  q = jax.jit(chex.assert_max_traces(n=1)(
      lambda x0, t, noise: ddpm.q_sample(x0, t, noise, tb)))
  for t in ts:
    xt = np.asarray(q(x0, jnp.full((n,), t), noise))  # new t: no retrace
    a2 = tb.alpha_bars[t]
    var = a2 * S**2 + 1 - a2
    assert abs(xt.mean() - np.sqrt(a2) * m) < 4.5 * np.sqrt(var / n)
    assert abs(xt.var() / var - 1) < 4.5 * np.sqrt(2 / n)
  # Without noise q_sample only scales by sqrt(ᾱ_t).
  out = ddpm.q_sample(x0[:3], jnp.array([0, 5, 999]), jnp.zeros((3, 1, 1, 1)), betas)
  chex.assert_trees_all_close(
      out, x0[:3] * tb.sqrt_alpha_bars[[0, 5, 999]].reshape(3, 1, 1, 1).astype(
          np.float32))


def test_ddpm_loss_is_zero_for_the_model_that_knows_x0():
  # For a fixed batch, ε = (x_t − sqrt(ᾱ_t) x_0)/sqrt(1 − ᾱ_t) recovers the noise.
  betas = ddpm.linear_beta_schedule()
  tb = ddpm.ddpm_tables(betas)
  x0 = _uniform(1, (8, 4, 4, 3))

  def eps_fn(x_t, t):
    a = jnp.asarray(tb.sqrt_alpha_bars, x_t.dtype)[t].reshape(-1, 1, 1, 1)
    b = jnp.asarray(tb.sqrt_one_minus_alpha_bars, x_t.dtype)[t].reshape(-1, 1, 1, 1)
    return (x_t - a * x0) / b

  loss = jax.jit(lambda key: ddpm.ddpm_loss(eps_fn, x0, key, betas))(
      jax.random.key(2))
  chex.assert_shape(loss, x0.shape)
  # float32 cancellation in (x_t − a x_0)/b is amplified by 1/b ≤ 100.
  chex.assert_trees_all_close(loss, jnp.zeros_like(loss), atol=1e-8)


def test_ddpm_loss_of_the_ideal_model_is_the_posterior_variance_of_noise():
  # E (ε*(x_t, t) − ε)² = Var[ε | x_t] = a² s² / (a² s² + b²) per element.
  with jax.enable_x64(True):
    betas = ddpm.linear_beta_schedule()
    tb = ddpm.ddpm_tables(betas)
    n = 8_000
    x0 = S * _normal(3, (n, 1, 1, 1), np.float64)
    loss_fn = jax.jit(lambda key, t: ddpm.ddpm_loss(gaussian_eps(betas), x0, key,
                                                    betas, t=t))
    for t in (10, 300, 900):
      loss = np.asarray(loss_fn(jax.random.key(4), jnp.full((n,), t)))
      a2, b2 = tb.alpha_bars[t], 1 - tb.alpha_bars[t]
      expected = a2 * S**2 / (a2 * S**2 + b2)
      assert abs(loss.mean() - expected) < 4.5 * loss.std() / np.sqrt(n)


def test_ddpm_loss_types_and_uniform_t():
  betas = ddpm.linear_beta_schedule(10)
  tb = ddpm.ddpm_tables(betas)
  x0 = jnp.zeros((5, 1, 1, 1))
  err = jnp.array([-3.0, -0.5, 0.0, 0.2, 2.0]).reshape(5, 1, 1, 1)
  noise = jnp.ones((5, 1, 1, 1))
  t = jnp.array([0, 3, 9, 4, 7])

  def eps_fn(x_t, t):  # predicts the noise with a known error
    b = jnp.asarray(tb.sqrt_one_minus_alpha_bars, x_t.dtype)[t].reshape(-1, 1, 1, 1)
    return x_t / b + err

  mse = ddpm.ddpm_loss(eps_fn, x0, None, betas, t=t, noise=noise)
  chex.assert_trees_all_close(mse, err**2, rtol=1e-5, atol=1e-6)
  huber = ddpm.ddpm_loss(eps_fn, x0, None, betas, t=t, noise=noise,
                         loss_type="huber", huber_delta=1.0)
  expected = jnp.where(jnp.abs(err) <= 1, 0.5 * err**2, jnp.abs(err) - 0.5)
  chex.assert_trees_all_close(huber, expected, rtol=1e-5, atol=1e-6)
  # With noise = 0 and ε = t the loss reveals t: uniform over {0, …, 9}.
  n = 20_000
  t_loss = ddpm.ddpm_loss(lambda x, t: jnp.broadcast_to(
      t.astype(x.dtype).reshape(-1, 1, 1, 1), x.shape),
                          jnp.zeros((n, 1, 1, 1)), jax.random.key(4), betas,
                          noise=jnp.zeros((n, 1, 1, 1)))
  drawn = np.sqrt(np.asarray(t_loss).ravel()).round().astype(int)
  freq = np.bincount(drawn, minlength=10) / n
  assert freq.shape == (10,)
  np.testing.assert_allclose(freq, 0.1, atol=4.5 * np.sqrt(0.09 / n))


# ----------------------------------------------------------------------------- samplers


@pytest.mark.parametrize("variance", ["beta", "posterior"])
def test_ddpm_sampler_reproduces_gaussian_data(variance):
  betas = ddpm.linear_beta_schedule()
  n = 4_000
  latents = _normal(5, (n, 2, 2, 1))
  sample = jax.jit(lambda lat, key: ddpm.ddpm_sampler(
      gaussian_eps(betas), lat, key, betas, variance=variance))
  x = np.asarray(sample(latents, jax.random.key(6)))
  chex.assert_shape(x, (n, 2, 2, 1))
  exact = exact_ancestral_std(betas, variance)
  assert abs(exact / S - 1) < 0.01          # the discrete chain is nearly exact ...
  assert abs(x.std() / S - 1) < 0.02        # ... and so is the sampler
  assert abs(x.std() / exact - 1) < 4.5 / np.sqrt(2 * x.size)
  assert abs(x.mean()) < 4.5 * S / np.sqrt(x.size)


def exact_ddim_std(betas, num_steps, eta, std=S):
  """Std of ddim_sampler's output under ε*: each step is x_s = A x_t + σ z."""
  ab = ddpm.ddpm_tables(betas).alpha_bars
  taus = ddpm.ddim_timesteps(num_steps, len(betas))
  v = 1.0
  for a_t, a_s in zip(ab[taus], np.append(ab[taus[1:]], 1.0)):
    coef = np.sqrt(1 - a_t) / (a_t * std**2 + 1 - a_t)  # ε* = coef · x_t
    sigma = eta * np.sqrt((1 - a_s) / (1 - a_t) * (1 - a_t / a_s))
    A = (np.sqrt(a_s / a_t) * (1 - np.sqrt(1 - a_t) * coef)
         + np.sqrt(1 - a_s - sigma**2) * coef)
    v = A * A * v + sigma**2
  return np.sqrt(v)


@pytest.mark.parametrize("num_steps", [1000, 100])
def test_ddim_eta_one_samples_gaussian_data(num_steps):
  # With every step, η = 1 reproduces the data (within 1%); with 100 steps the
  # coarse chain under-disperses (std 0.47 for s = 0.5: the reverse conditional
  # has more variance than the posterior σ² once steps are large). Both are
  # matched by the exact linear recursion.
  betas = ddpm.linear_beta_schedule()
  n = 4_000
  latents = _normal(7, (n, 2, 2, 1))
  x = np.asarray(jax.jit(lambda lat, key: ddpm.ddim_sampler(
      gaussian_eps(betas), lat, betas, num_steps=num_steps, eta=1.0, key=key))(
          latents, jax.random.key(8)))
  exact = exact_ddim_std(betas, num_steps, 1.0)
  assert abs(x.std() / exact - 1) < 4.5 / np.sqrt(2 * x.size)
  assert abs(x.mean()) < 4.5 * S / np.sqrt(x.size)
  if num_steps == 1000:
    assert abs(x.std() / S - 1) < 0.02
    np.testing.assert_allclose(exact, exact_ancestral_std(betas, "posterior"),
                               rtol=1e-9)
  else:
    assert 0.90 < exact / S < 0.96


def test_ddim_eta_one_on_every_step_is_ddpm_with_posterior_variance():
  # σ² of DDIM at η = 1 is β̃_t and its mean is μ̃_t(x̂_0, x_t) (Song et al. 2021,
  # Sec. 4.1); both samplers draw noise from fold_in(fold_in(key, b), step).
  with jax.enable_x64(True):
    betas = ddpm.linear_beta_schedule(100, 1e-3, 0.2)
    eps_fn = gaussian_eps(betas, mean=0.3)
    latents = _normal(9, (3, 2, 2, 1), np.float64)
    key = jax.random.key(10)
    x_ddim, traj_ddim = ddpm.ddim_sampler(eps_fn, latents, betas, num_steps=100,
                                          eta=1.0, key=key, return_trajectory=True)
    x_ddpm, traj_ddpm = ddpm.ddpm_sampler(eps_fn, latents, key, betas,
                                          variance="posterior",
                                          return_trajectory=True)
    chex.assert_shape([traj_ddim, traj_ddpm], (101, 3, 2, 2, 1))
    assert x_ddim.dtype == jnp.float64
    chex.assert_trees_all_close(traj_ddim, traj_ddpm, rtol=1e-9, atol=1e-12)
    chex.assert_trees_all_close(traj_ddim[0], latents)
    chex.assert_trees_all_close(traj_ddim[-1], x_ddim)


def test_ddim_eta_zero_is_euler_on_the_probability_flow_ode():
  # DDIM η = 0 is Euler for dx̄/dσ = ε(x) in x̄ = x/sqrt(ᾱ) (Song et al. 2021, Eq. 14):
  # under ε* each step multiplies x̄ by 1 + (σ_s − σ_t) σ_t / (s² + σ_t²). It converges
  # at first order to the exact ODE map x̄(0) = x̄(σ_{T−1}) s / sqrt(s² + σ_{T−1}²).
  with jax.enable_x64(True):
    betas = ddpm.linear_beta_schedule()
    tb = ddpm.ddpm_tables(betas)
    latents = _normal(11, (4, 2, 2, 1), np.float64)
    x_bar = latents / np.sqrt(tb.alpha_bars[-1])
    exact = oracle.gaussian_ode_solution(x_bar, tb.sigmas[-1], 0.0, 0.0, S)
    errors = {}
    for num_steps in (100, 1000):
      out = ddpm.ddim_sampler(gaussian_eps(betas), latents, betas,
                              num_steps=num_steps)
      sig = np.append(tb.sigmas[ddpm.ddim_timesteps(num_steps, 1000)], 0.0)
      euler = np.prod(1 + (sig[1:] - sig[:-1]) * sig[:-1] / (S**2 + sig[:-1] ** 2))
      chex.assert_trees_all_close(out, x_bar * euler, rtol=1e-10)
      errors[num_steps] = float(jnp.max(jnp.abs(out / exact - 1)))
    assert errors[1000] < 5e-3                       # measured: 3.0e-3
    assert 8 < errors[100] / errors[1000] < 12       # first order in the step


def test_ddim_eta_zero_is_deterministic_and_ignores_the_key():
  betas = ddpm.linear_beta_schedule(50)
  latents = _normal(12, (2, 3, 3, 2))
  eps_fn = gaussian_eps(betas)
  a = ddpm.ddim_sampler(eps_fn, latents, betas, num_steps=10)
  b = ddpm.ddim_sampler(eps_fn, latents, betas, num_steps=10, key=jax.random.key(1))
  chex.assert_trees_all_equal(a, b)
  np.testing.assert_array_equal(ddpm.ddim_timesteps(10, 50),
                                [49, 44, 38, 33, 27, 22, 16, 11, 5, 0])
  np.testing.assert_array_equal(ddpm.ddim_timesteps(50, 50), np.arange(49, -1, -1))


@pytest.mark.parametrize("which", ["ddpm", "ddim"])
def test_a_sample_depends_only_on_its_own_key(which):
  betas = ddpm.linear_beta_schedule(50)
  eps_fn = gaussian_eps(betas)
  chex.clear_trace_counter()

  @jax.jit
  @chex.assert_max_traces(n=3)  # batch 16, batch 4, batch 4 with per-sample keys
  def sample(latents, key):
    if which == "ddpm":
      return ddpm.ddpm_sampler(eps_fn, latents, key, betas)
    return ddpm.ddim_sampler(eps_fn, latents, betas, num_steps=20, eta=0.7, key=key)

  key = jax.random.key(13)
  latents = _normal(14, (16, 2, 2, 1))
  big = sample(latents, key)
  small = sample(latents[:4], key)
  chex.assert_trees_all_close(small, big[:4], rtol=1e-6, atol=1e-6)
  # Explicit per-sample keys fold_in(key, b) give the same samples, in any order.
  keys = jax.vmap(lambda b: jax.random.fold_in(key, b))(jnp.arange(16))
  perm = np.array([5, 3, 11, 0])
  chex.assert_trees_all_close(sample(latents[perm], keys[perm]), big[perm],
                              rtol=1e-6, atol=1e-6)
  other = sample(latents[:4], jax.random.key(15))  # new key values: no retrace
  assert not np.allclose(other, small)


def test_clip_denoised_keeps_samples_in_range():
  betas = ddpm.linear_beta_schedule(100, 1e-3, 0.2)
  eps_fn = gaussian_eps(betas, std=3.0)  # data far outside [-1, 1]
  latents = _normal(16, (64, 2, 2, 1))
  key = jax.random.key(17)
  free = ddpm.ddpm_sampler(eps_fn, latents, key, betas)
  clipped = ddpm.ddpm_sampler(eps_fn, latents, key, betas, clip_denoised=True)
  assert float(jnp.max(jnp.abs(free))) > 2.0
  assert float(jnp.max(jnp.abs(clipped))) <= 1.0 + 1e-6  # last step returns x̂_0


# ----------------------------------------------------------------------------- bridge


def test_bridge_of_the_exact_eps_is_the_gaussian_oracle_at_table_sigmas():
  with jax.enable_x64(True):
    betas = ddpm.cosine_beta_schedule(1000)
    m = 0.25
    sigmas = ddpm.ddpm_sigmas(betas)
    idx = np.array([0, 1, 100, 500, 900, 998])
    x = _normal(18, (6, 3, 3, 1), np.float64) * 4.0
    sigma = jnp.asarray(sigmas[idx])
    denoise = ddpm.ddpm_as_denoiser(gaussian_eps(betas, mean=m), betas)
    expected = oracle.gaussian_denoiser(m, S)(x, sigma)
    chex.assert_trees_all_close(jax.jit(denoise)(x, sigma), expected,
                                rtol=1e-9, atol=1e-12)
    # The inverse bridge turns the oracle into the same closed-form ε*.
    t = jnp.asarray(idx)
    eps_back = ddpm.ddpm_eps_from_denoiser(oracle.gaussian_denoiser(m, S), betas)
    chex.assert_trees_all_close(eps_back(x, t), gaussian_eps(betas, mean=m)(x, t),
                                rtol=1e-9, atol=1e-12)


def test_round_sigma_picks_the_nearest_table_level():
  betas = ddpm.linear_beta_schedule()
  table = ddpm.ddpm_sigmas(betas)
  sigma = jnp.array([1e-4, table[3], 0.5 * (table[10] + table[11]) + 1e-6, 1.0, 80.0,
                     1e3], jnp.float32)
  index = ddpm.ddpm_round_sigma(sigma, betas, return_index=True)
  expected = np.argmin(np.abs(np.asarray(sigma, np.float64)[:, None] - table), 1)
  np.testing.assert_array_equal(index, expected)
  assert index[1] == 3 and index[2] == 11 and index[-1] == 999
  chex.assert_trees_all_close(ddpm.ddpm_round_sigma(sigma, betas),
                              table[expected].astype(np.float32))
  # The bridge passes the rounded step to the model: ε = t reveals it.
  probe = ddpm.ddpm_as_denoiser(
      lambda x, t: jnp.broadcast_to(t.astype(x.dtype).reshape(-1, 1, 1, 1), x.shape),
      betas)
  d = probe(jnp.zeros((6, 1, 1, 1)), sigma)
  np.testing.assert_allclose(-np.asarray(d).ravel() / np.asarray(sigma),
                             expected, rtol=1e-6)


# ----------------------------------------------------------------------------- errors


def test_bad_inputs_raise_value_errors_naming_the_value():
  betas = ddpm.linear_beta_schedule(10)
  eps_fn = gaussian_eps(betas)
  lat = jnp.zeros((2, 2, 2, 1))
  key = jax.random.key(0)
  with pytest.raises(ValueError, match="T=0"):
    ddpm.linear_beta_schedule(0)
  with pytest.raises(ValueError, match="T=0"):
    ddpm.cosine_beta_schedule(0)
  with pytest.raises(ValueError, match=r"beta_start=.*0\.02.*beta_end=.*0\.01"):
    ddpm.linear_beta_schedule(10, 0.02, 0.01)
  with pytest.raises(ValueError, match=r"betas must be < 1, got 1\.5"):
    ddpm.ddpm_tables(np.array([0.1, 1.5]))
  with pytest.raises(ValueError, match=r"t must lie in \[0, 10\), got 10"):
    ddpm.q_sample(lat, jnp.array([0, 10]), lat, betas)
  with pytest.raises(ValueError, match=r"got -1"):
    ddpm.ddpm_loss(eps_fn, lat, key, betas, t=jnp.array([-1, 3]))
  with pytest.raises(ValueError, match="loss_type='l1'"):
    ddpm.ddpm_loss(eps_fn, lat, key, betas, loss_type="l1")
  with pytest.raises(ValueError, match="variance='learned'"):
    ddpm.ddpm_sampler(eps_fn, lat, key, betas, variance="learned")
  with pytest.raises(ValueError, match=r"latents must be a 4-D NHWC.*\(2, 2, 1\)"):
    ddpm.ddpm_sampler(eps_fn, lat[0], key, betas)
  with pytest.raises(ValueError, match=r"latents must be a 4-D NHWC"):
    ddpm.ddim_sampler(eps_fn, lat[0], betas, num_steps=5)
  with pytest.raises(ValueError, match=r"eta must be >= 0, got -0\.5"):
    ddpm.ddim_sampler(eps_fn, lat, betas, num_steps=5, eta=-0.5, key=key)
  with pytest.raises(ValueError, match=r"eta=0\.5 .*key"):
    ddpm.ddim_sampler(eps_fn, lat, betas, num_steps=5, eta=0.5)
  with pytest.raises(ValueError, match="num_steps=11 exceeds.*T=10"):
    ddpm.ddim_sampler(eps_fn, lat, betas, num_steps=11)
  with pytest.raises(ValueError, match=r"key has shape \(3,\)"):
    ddpm.ddpm_sampler(eps_fn, lat, jax.random.split(key, 3), betas)
