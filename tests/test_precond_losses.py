"""Facts about the preconditioning (Table 1) and the training losses (Eq. 8)."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from edmjax import losses as L
from edmjax import precond as P
from edmjax import schedules as S

SIGMAS = jnp.array([0.002, 0.05, 0.5, 1.0, 10.0, 80.0])


def _gaussian_denoiser(std):
  """Ideal denoiser of N(0, std² I) data."""
  return lambda x, sigma: (std**2 / (std**2 + sigma**2))[:, None, None, None] * x


def test_edm_scalings_unit_variance_input_and_target():
  # Var(y) = σ_d²: the network input c_in(y + n) and its effective target
  # (y − c_skip(y + n))/c_out both have unit variance at every σ (EDM Appendix B.6).
  sd = 0.5
  c = P.edm_scalings(SIGMAS, sd)
  chex.assert_trees_all_close(c.c_in**2 * (sd**2 + SIGMAS**2), jnp.ones(6), rtol=1e-6)
  target_var = ((1 - c.c_skip)**2 * sd**2 + c.c_skip**2 * SIGMAS**2) / c.c_out**2
  chex.assert_trees_all_close(target_var, jnp.ones(6), rtol=1e-5)
  chex.assert_trees_all_close(c.c_noise, jnp.log(SIGMAS) / 4)


def test_vp_c_noise_is_scaled_time():
  c = P.vp_scalings(SIGMAS)
  t = c.c_noise / 999
  chex.assert_trees_all_close(S.vp_sigma(t), SIGMAS, rtol=1e-4)
  chex.assert_trees_all_close(c.c_in, 1 / jnp.sqrt(1 + SIGMAS**2))
  chex.assert_trees_all_close(c.c_out, -SIGMAS)


def test_ve_scalings():
  c = P.ve_scalings(SIGMAS)
  chex.assert_trees_all_close(c.c_noise, jnp.log(0.5 * SIGMAS))
  chex.assert_trees_all_close((c.c_skip, c.c_in, c.c_out),
                              (jnp.ones(6), jnp.ones(6), SIGMAS))


def test_iddpm_c_noise_is_ddpm_time_index():
  u = S.iddpm_u_table()
  j = np.array([0, 1, 10, 500, 998, 999])
  with jax.enable_x64(True):
    c = P.iddpm_scalings(jnp.asarray(u[j]))
    np.testing.assert_array_equal(np.asarray(c.c_noise), 999 - j)


def test_make_denoiser_with_ideal_network_is_the_ideal_denoiser():
  # For N(0, s²) data the ideal raw network is F* = (D* − c_skip x)/c_out; wrapping it
  # reproduces D* under every preconditioning.
  s = 0.7
  x = jax.random.normal(jax.random.key(0), (6, 2, 2, 1)) * 3
  ideal = _gaussian_denoiser(s)(x, SIGMAS)
  for name, kwargs in (("edm", {}), ("vp", {}), ("ve", {}), ("iddpm", {})):
    scal = P.get_scalings(name, **kwargs)
    def F(x_in, c_noise, scal=scal):
      c = scal(SIGMAS)
      xx = x_in / c.c_in[:, None, None, None]
      d = _gaussian_denoiser(s)(xx, SIGMAS)
      return (d - c.c_skip[:, None, None, None] * xx) / c.c_out[:, None, None, None]
    D = P.make_denoiser(F, name)
    chex.assert_trees_all_close(D(x, SIGMAS), ideal, rtol=2e-5, atol=1e-6)


def test_make_denoiser_drops_extra_channels_and_keeps_dtype():
  x = jnp.ones((2, 4, 4, 3))
  F = lambda x_in, c_noise: jnp.concatenate([jnp.zeros_like(x_in), 7 * jnp.ones_like(x_in)], -1)
  D = P.make_denoiser(F, "iddpm")
  chex.assert_trees_all_close(D(x, jnp.array([1.0, 2.0])), x)
  Dbf = P.make_denoiser(lambda x_in, c: x_in, "edm", compute_dtype=jnp.bfloat16)
  out = Dbf(x, 1.0)
  assert out.dtype == jnp.float32
  chex.assert_shape(out, x.shape)


def test_make_denoiser_rejects_bad_sigma_and_shape():
  D = P.make_denoiser(lambda x, c: x, "edm")
  with pytest.raises(ValueError, match="sigma must be > 0, got 0.0"):
    D(jnp.ones((2, 4, 4, 1)), jnp.array([1.0, 0.0]))
  with pytest.raises(ValueError, match=r"expected \(batch,\)"):
    D(jnp.ones((2, 4, 4, 1)), jnp.ones(3))
  with pytest.raises(ValueError, match="4-D NHWC"):
    D(jnp.ones((2, 4, 4)), jnp.ones(2))
  with pytest.raises(ValueError, match="preconditioning='foo'"):
    P.make_denoiser(lambda x, c: x, "foo")


def test_edm_loss_of_ideal_denoiser_is_one_per_element():
  # With Var(y) = σ_d² and the ideal denoiser, E‖D* − y‖² = σ²σ_d²/(σ² + σ_d²) and
  # λ(σ) = (σ² + σ_d²)/(σσ_d)², so the expected EDM loss is exactly 1 at every σ.
  sd = 0.5
  key = jax.random.key(1)
  y = jax.random.normal(key, (4096, 2, 2, 1)) * sd
  sigma = jnp.tile(jnp.array([0.01, 0.5, 5.0, 50.0]), 1024)
  loss = L.edm_loss(_gaussian_denoiser(sd), y, jax.random.key(2), sigma=sigma,
                    sigma_data=sd, noise=None)
  per_sigma = loss.reshape(1024, 4, -1).mean(axis=(0, 2))
  np.testing.assert_allclose(per_sigma, 1.0, rtol=0.05)


def test_losses_are_deterministic_given_sigma_and_noise_and_match_formula():
  y = jax.random.normal(jax.random.key(3), (4, 3, 3, 2))
  n = jax.random.normal(jax.random.key(4), y.shape)
  sigma = jnp.array([0.1, 1.0, 3.0, 20.0])
  D = lambda x, s: 0.5 * x
  b = lambda v: v[:, None, None, None]
  expected = {
      "edm": b((sigma**2 + 0.25) / (sigma * 0.5)**2) * (0.5 * (y + b(sigma) * n) - y)**2,
      "vp": b(1 / sigma**2) * (0.5 * (y + b(sigma) * n) - y)**2,
  }
  for name, fn in (("edm", L.edm_loss), ("vp", L.vp_loss), ("ve", L.ve_loss)):
    jitted = jax.jit(lambda y, s, n, k, fn=fn: fn(D, y, k, sigma=s, noise=n))
    out1 = jitted(y, sigma, n, jax.random.key(0))
    out2 = jitted(y, sigma, n, jax.random.key(9))
    chex.assert_trees_all_equal(out1, out2)  # the key is unused: bitwise equal
    chex.assert_trees_all_close(out1, fn(D, y, None, sigma=sigma, noise=n), rtol=1e-6)
    chex.assert_shape(out1, y.shape)
    chex.assert_trees_all_close(out1, expected.get(name, expected["vp"]), rtol=1e-5)


def test_sigma_densities():
  key = jax.random.key(5)
  log_sigma = jnp.log(L.edm_sample_sigma(key, 200_000, P_mean=-1.2, P_std=1.2))
  np.testing.assert_allclose([log_sigma.mean(), log_sigma.std()], [-1.2, 1.2], atol=0.01)
  ve = L.ve_sample_sigma(key, 200_000, sigma_min=0.02, sigma_max=100.0)
  assert float(ve.min()) >= 0.02 and float(ve.max()) <= 100.0
  np.testing.assert_allclose(jnp.log(ve).mean(), 0.5 * (np.log(0.02) + np.log(100.0)),
                             atol=0.02)
  vp = L.vp_sample_sigma(key, 200_000)
  assert float(vp.min()) >= float(S.vp_sigma(1e-5)) * 0.999
  assert float(vp.max()) <= float(S.vp_sigma(1.0)) * 1.001


def test_loss_no_retrace_and_random_sigma():
  y = jnp.zeros((8, 4, 4, 1))
  D = lambda x, s: x * 0
  @jax.jit
  @chex.assert_max_traces(n=1)
  def f(y, key):
    return L.edm_loss(D, y, key)
  for i in range(3):
    out = f(y + i, jax.random.key(i))
    assert bool(jnp.all(jnp.isfinite(out)))


@pytest.mark.parametrize(
    "call, match",
    [(lambda: L.edm_loss(lambda x, s: x, jnp.ones((2, 4, 4)), jax.random.key(0)),
      "4-D NHWC"),
     (lambda: L.edm_loss(lambda x, s: x, jnp.ones((2, 4, 4, 1)), None), "key is required"),
     (lambda: L.edm_loss(lambda x, s: x, jnp.ones((2, 4, 4, 1)), None,
                         sigma=jnp.array([1.0, -1.0]), noise=jnp.ones((2, 4, 4, 1))),
      "sigma must be > 0, got -1.0"),
     (lambda: L.edm_loss(lambda x, s: x, jnp.ones((2, 4, 4, 1)), None,
                         sigma=jnp.ones(3), noise=jnp.ones((2, 4, 4, 1))),
      r"sigma has shape \(3,\)"),
     (lambda: L.edm_loss(lambda x, s: x, jnp.ones((2, 4, 4, 1)), jax.random.key(0),
                         sigma_data=0.0), "sigma_data must be > 0"),
     (lambda: L.ve_loss(lambda x, s: x, jnp.ones((2, 4, 4, 1)), jax.random.key(0),
                        sigma_min=5.0, sigma_max=1.0), "sigma_min=5.0 must be smaller")])
def test_loss_bad_input(call, match):
  with pytest.raises(ValueError, match=match):
    call()
