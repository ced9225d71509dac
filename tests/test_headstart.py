"""Headstart sampling: one step is one denoiser call; closed form with an ideal denoiser."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from edmjax import oracle
from edmjax.samplers import from_image as hs


def test_one_step_is_one_denoiser_evaluation():
  calls = []
  den0 = oracle.gaussian_denoiser(0.1, 0.5)

  def den(x, sigma):
    calls.append(sigma)
    return den0(x, sigma)

  u = jax.random.normal(jax.random.key(0), (3, 4, 4, 2))
  n = jax.random.normal(jax.random.key(1), u.shape)
  out = hs.headstart(den, u, None, sigma_start=0.7, num_steps=1, noise=n)
  assert len(calls) == 1
  np.testing.assert_allclose(out, den0(u + 0.7 * n, jnp.full((3,), 0.7)), atol=1e-6)
  assert hs.headstart_nfe(1) == 1 and hs.headstart_nfe(4) == 4
  assert hs.headstart_nfe(4, "heun") == 7
  np.testing.assert_array_equal(hs.headstart_sigmas(0.7, 1), [0.7, 0.0])


def test_headstart_with_the_gaussian_oracle_matches_the_closed_form():
  """PF-ODE map of N(m, s²): x(0) = m + (x₀ − m)·s/sqrt(s² + σ_start²), at Heun's order 2."""
  m, s, sigma_start = 0.2, 0.5, 1.5
  den = oracle.gaussian_denoiser(m, s)
  with jax.enable_x64(True):
    u = jax.random.normal(jax.random.key(0), (2, 4, 4, 3), jnp.float64)
    n = jax.random.normal(jax.random.key(1), u.shape, jnp.float64)
    exact = m + (u + sigma_start * n - m) * s / np.sqrt(s**2 + sigma_start**2)
    errs = []
    for num_steps in (8, 16, 32):
      out = hs.headstart(den, u, None, sigma_start=sigma_start, num_steps=num_steps,
                         noise=n, sigma_min=1e-3, solver="heun")
      errs.append(float(jnp.max(jnp.abs(out - exact))))
  assert errs[-1] < 1e-2
  orders = np.log2(np.asarray(errs[:-1]) / np.asarray(errs[1:]))
  assert np.all(orders > 1.8), orders  # second order: doubling N divides the error by ~4


def test_a_sample_depends_only_on_its_own_key():
  den = oracle.gaussian_denoiser(0.0, 0.5)
  u = jax.random.normal(jax.random.key(0), (3, 4, 4, 1))
  keys = jax.random.split(jax.random.key(5), 3)
  full = hs.headstart(den, u, keys, sigma_start=0.5, num_steps=2)
  one = hs.headstart(den, u[1:2], keys[1:2], sigma_start=0.5, num_steps=2)
  np.testing.assert_allclose(full[1:2], one, atol=1e-6)


@pytest.mark.parametrize("sigma_start", [0.0, -0.5])
def test_nonpositive_sigma_start_is_an_error_naming_it(sigma_start):
  with pytest.raises(ValueError, match=f"sigma_start must be > 0, got {sigma_start!r}"):
    hs.headstart(oracle.gaussian_denoiser(0.0, 0.5), jnp.zeros((1, 4, 4, 1)),
                 jax.random.key(0), sigma_start=sigma_start)


def test_other_bad_inputs():
  with pytest.raises(ValueError, match="num_steps=0"):
    hs.headstart_sigmas(0.5, 0)
  with pytest.raises(ValueError, match="sigma_min=0.002 must be smaller than sigma_start=0.001"):
    hs.headstart_sigmas(0.001, 3)
  with pytest.raises(ValueError, match="key=None"):
    hs.headstart(oracle.gaussian_denoiser(0.0, 0.5), jnp.zeros((1, 4, 4, 1)), None,
                 sigma_start=0.5)
