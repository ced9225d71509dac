"""Facts about σ(t), s(t) and the time-step discretizations of EDM Table 1."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from edmjax import schedules as S


def test_karras_sigmas_endpoints_and_formula():
  sig = S.karras_sigmas(18)
  assert sig.dtype == np.float64 and sig.shape == (19,)
  np.testing.assert_allclose(sig[[0, 17, 18]], [80.0, 0.002, 0.0], rtol=1e-14)
  assert np.all(np.diff(sig) < 0)
  # Eq. 5: σ_i^{1/ρ} is linear in i.
  np.testing.assert_allclose(np.diff(sig[:-1]**(1 / 7), n=2), 0, atol=1e-13)


def test_karras_sigmas_traced_matches_host_float64():
  with jax.enable_x64(True):
    traced = jax.jit(lambda a, b: S.karras_sigmas(10, a, b, 7.0))(
        jnp.float64(0.002), jnp.float64(80.0))
    np.testing.assert_allclose(np.asarray(traced), S.karras_sigmas(10), rtol=1e-13)


@pytest.mark.parametrize("sched", ["vp", "ve", "linear"])
def test_sigma_inverse_and_derivative(sched):
  with jax.enable_x64(True):
    s = S.make_schedule(sched, "vp")
    t = jnp.linspace(0.05, 1.0, 7, dtype=jnp.float64)
    chex.assert_trees_all_close(s.sigma_inv(s.sigma(t)), t, rtol=1e-12)
    dsigma = jax.vmap(jax.grad(s.sigma))(t)
    chex.assert_trees_all_close(s.sigma_deriv(t), dsigma, rtol=1e-10)
    ds = jax.vmap(jax.grad(s.s))(t)
    chex.assert_trees_all_close(s.s_deriv(t), ds, rtol=1e-10)
    chex.assert_trees_all_close(s.s(t), 1 / jnp.sqrt(1 + s.sigma(t)**2), rtol=1e-12)


def test_vp_closed_form_scaling_equals_generic():
  t = np.linspace(0.01, 1.0, 9)
  vp = S.vp_schedule()
  np.testing.assert_allclose(vp.s(t), 1 / np.sqrt(1 + vp.sigma(t)**2), rtol=1e-13)
  np.testing.assert_allclose(vp.s_deriv(t), S.make_schedule("vp", "vp").s_deriv(t),
                             rtol=1e-12)


def test_vp_refit_recovers_original_betas():
  beta_d, beta_min = S.vp_refit_betas(*S.vp_default_sigma_range(1e-3), 1e-3)
  np.testing.assert_allclose([beta_d, beta_min], [19.9, 0.1], rtol=1e-10)
  smin, smax = S.vp_default_sigma_range()
  np.testing.assert_allclose([smin, smax], [0.0104860, 152.16697], rtol=1e-5)


def test_vp_steps_hit_the_requested_range():
  sig = S.vp_sigma_steps(12, 0.002, 80.0)
  np.testing.assert_allclose(sig[[0, -1]], [80.0, 0.002], rtol=1e-12)
  assert np.all(np.diff(sig) < 0)


def test_ve_steps_are_geometric():
  sig = S.ve_sigma_steps(9, 0.02, 100.0)
  np.testing.assert_allclose(sig[[0, -1]], [100.0, 0.02], rtol=1e-12)
  ratios = sig[1:] / sig[:-1]
  np.testing.assert_allclose(ratios, ratios[0], rtol=1e-12)


def test_iddpm_table():
  u = S.iddpm_u_table()
  assert u.shape == (1001,) and u[1000] == 0.0
  assert np.all(np.diff(u) < 0)
  # u_{j-1}² + 1 = (u_j² + 1) / max(ᾱ_{j-1}/ᾱ_j, C_1)
  j = np.arange(1, 1001)
  ratio = np.maximum(S.iddpm_alpha_bar(j - 1) / S.iddpm_alpha_bar(j), 0.001)
  np.testing.assert_allclose(u[j - 1]**2 + 1, (u[j]**2 + 1) / ratio, rtol=1e-12)
  np.testing.assert_allclose(u[999], 0.0064254, rtol=1e-4)  # NVlabs' iDDPM sigma_min


def test_iddpm_steps_use_table_levels_and_agree_under_trace():
  u = S.iddpm_u_table()
  host = S.iddpm_sigma_steps(18, 0.002, 81.0)
  assert np.all(np.isin(host, u))
  assert host[0] == u[u <= 81.0][0] and host[-1] == u[999]
  dev = jax.jit(lambda a, b: S.iddpm_sigma_steps(18, a, b))(jnp.float32(0.002),
                                                            jnp.float32(81.0))
  np.testing.assert_allclose(np.asarray(dev), host, rtol=1e-6)


def test_round_half_even_division_is_exact():
  p = np.arange(0, 5000)
  for q in (1, 2, 3, 7, 17):
    np.testing.assert_array_equal(S._round_half_even_div(p, q), np.round(p / q))


def test_iddpm_round_sigma_is_nearest():
  u = S.iddpm_u_table()
  sig = np.array([0.5, 3.0, u[10] * 1.0000001])
  idx = S.iddpm_round_sigma(sig, return_index=True)
  np.testing.assert_array_equal(idx, np.argmin(np.abs(sig[:, None] - u), axis=1))
  assert idx[2] == 10
  dev = S.iddpm_round_sigma(jnp.asarray(sig, jnp.float32))
  np.testing.assert_allclose(np.asarray(dev), u[idx], rtol=1e-6)


def test_sigma_steps_dispatch():
  for name in S.DISCRETIZATIONS:
    steps = S.sigma_steps(name, 6, 0.01, 50.0)
    assert steps.shape == (6,) and np.all(np.diff(steps) < 0)


@pytest.mark.parametrize(
    "call, match",
    [(lambda: S.karras_sigmas(1), "num_steps=1"),
     (lambda: S.karras_sigmas(5, 3.0, 2.0), "sigma_min=3.0 must be smaller"),
     (lambda: S.karras_sigmas(5, 0.0, 2.0), "sigma_min must be > 0, got 0.0"),
     (lambda: S.karras_sigmas(5, rho=-1.0), "rho must be > 0"),
     (lambda: S.sigma_steps("cosine", 5, 0.1, 1.0), "discretization='cosine'"),
     (lambda: S.make_schedule("cosine"), "schedule='cosine'"),
     (lambda: S.make_schedule("vp", "ve"), "scaling='ve'"),
     (lambda: S.iddpm_sigma_steps(5, 1e-6, 1e-5), "no iDDPM level")])
def test_bad_input_is_named(call, match):
  with pytest.raises(ValueError, match=match):
    call()
