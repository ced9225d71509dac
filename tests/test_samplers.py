"""Tests of edmjax.samplers: what the mathematics and a user of the samplers see.

* Convergence orders against the exact probability-flow ODE solution for Gaussian
  data (float64). The last step of every sampler goes to σ = 0 with a first-order
  step, so the order is measured on the state x_{N−1} entering that step, at the last
  nonzero level σ_{N−1} (`Trajectory.x[-1]`), against the exact solution there.
* Distributions from ideal denoisers (Gaussian mixture, Gaussian).
* Exact identities (ablation = EDM sampler, churn outside its window = no churn,
  iDDPM levels), and that a sample depends only on its own key: batch size, device
  count and retracing do not change it.
* Clear ValueErrors at trace time.
"""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from edmjax import oracle
from edmjax import samplers
from edmjax import schedules
from gaussian_mixture import GMM_DENOISE, check_mixture

MEAN, STD = 0.3, 0.5                           # Gaussian data N(MEAN, STD² I)
GAUSS = oracle.gaussian_denoiser(MEAN, STD)
IMAGE = (2, 2, 1)


def _latents(batch, dtype=jnp.float32, seed=0, image=IMAGE):
  return jax.random.normal(jax.random.key(seed), (batch,) + image, dtype)


# ----------------------------------------------------------------------------- orders

ORDER_STEPS = (32, 64, 128)
ORDER_RANGE = dict(sigma_min=0.02, sigma_max=10.0)   # ρ = 7


def _edm(z, n):
  return samplers.edm_sampler(GAUSS, z, num_steps=n, return_trajectory=True,
                              **ORDER_RANGE)


def _solve_from_euler(z, n):
  sigmas = schedules.karras_sigmas(n, **ORDER_RANGE)
  return samplers.solve_from(GAUSS, z * sigmas[0], sigmas, solver="euler",
                             return_trajectory=True)


def _ablation(z, n, **kw):
  return samplers.ablation_sampler(GAUSS, z, num_steps=n, return_trajectory=True,
                                   **ORDER_RANGE, **kw)


def _dpmpp_2m(z, n):
  return samplers.dpmpp_2m_sampler(GAUSS, z, num_steps=n, return_trajectory=True,
                                   **ORDER_RANGE)


# name: (run(latents, n), whether the state is scaled by s(t) = 1/sqrt(1 + σ²), order)
ORDER_CASES = {
    "edm_sampler heun": (_edm, False, 2.0),
    "solve_from euler": (_solve_from_euler, False, 1.0),
    "ablation vp/vp heun": (functools.partial(
        _ablation, solver="heun", schedule="vp", scaling="vp"), True, 2.0),
    "ablation vp/vp euler": (functools.partial(
        _ablation, solver="euler", schedule="vp", scaling="vp"), True, 1.0),
    "ablation alpha=0.5 linear/vp": (functools.partial(
        _ablation, alpha=0.5, schedule="linear", scaling="vp"), True, 2.0),
    # The explicit midpoint rule (α = ½) is *third* order on the σ-ODE of Gaussian
    # data: its leading error term ∝ 4a³ + 6aa' + a'' vanishes for
    # dy/dσ = a(σ) y, a = σ/(s² + σ²). A fact of this problem, checked here.
    "ablation alpha=0.5 linear/none (3rd order here)": (functools.partial(
        _ablation, alpha=0.5), False, 3.0),
    "dpmpp_2m": (_dpmpp_2m, False, 2.0),
}


@pytest.mark.parametrize("case", list(ORDER_CASES))
def test_global_order_against_exact_gaussian_ode(case):
  run, scaled, order = ORDER_CASES[case]
  with jax.enable_x64(True):
    latents = _latents(4, jnp.float64)
    run = jax.jit(run, static_argnums=1)
    errors = []
    for n in ORDER_STEPS:
      _, traj = run(latents, n)
      chex.assert_shape(traj.x, (n,) + latents.shape)
      sigma_0, sigma_last = traj.sigma[0], traj.sigma[-1]          # σ_0, σ_{N−1}
      state = traj.x[-1] * jnp.sqrt(1 + sigma_last**2) if scaled else traj.x[-1]
      exact = oracle.gaussian_ode_solution(latents * sigma_0, sigma_0, sigma_last,
                                           MEAN, STD)
      errors.append(float(jnp.max(jnp.abs(state - exact))))
  slope = np.polyfit(np.log(ORDER_STEPS), np.log(errors), 1)[0]
  assert abs(slope + order) <= 0.15, (case, slope, errors)


# ----------------------------------------------------------------------------- GMM

@pytest.fixture(scope="module")
def gmm_latents():
  return _latents(10_000, image=(4, 4, 1))


def test_edm_sampler_reproduces_gaussian_mixture(gmm_latents):
  # Heun, 64 steps. At the paper's 18 steps each component comes out ~6% too wide
  # here: the discretization error of Heun's method for these narrow components,
  # which falls as N^-2 (0.1–0.6% at 64 steps).
  run = jax.jit(lambda z: samplers.edm_sampler(GMM_DENOISE, z, num_steps=64))
  check_mixture(run(gmm_latents))


def test_algorithm2_with_churn_reproduces_gaussian_mixture(gmm_latents):
  # γ_i = 20/128 inside [0.05, 50]; measured std errors +0.7 to +1.2%.
  run = jax.jit(lambda z, key: samplers.edm_sampler(
      GMM_DENOISE, z, key, num_steps=128, S_churn=20.0, S_min=0.05, S_max=50.0))
  check_mixture(run(gmm_latents, jax.random.key(1)))


def test_euler_ancestral_reproduces_gaussian_std():
  # First order: the std is ~4% low at 128 steps, ~0.7% at 512.
  latents = _latents(4096, image=(4, 4, 1))
  run = jax.jit(lambda z, key: samplers.euler_ancestral_sampler(
      GAUSS, z, key, num_steps=512))
  x = run(latents, jax.random.key(1))
  assert abs(float(jnp.std(x)) / STD - 1) <= 0.02
  assert abs(float(jnp.mean(x)) - MEAN) <= 0.02


# ----------------------------------------------------------------------------- identities


@pytest.mark.parametrize("jit", [True, False], ids=["jit+churn", "eager"])
def test_ablation_edm_linear_none_heun_equals_edm_sampler(jit):
  # Eager runs op by op (slow on CPU), so it runs the deterministic sampler only.
  maybe_jit = jax.jit if jit else (lambda f: f)
  with jax.enable_x64(True):
    latents = _latents(4, jnp.float64)
    key = jax.random.key(3)
    common = dict(num_steps=10, sigma_min=0.002, sigma_max=80.0,
                  S_churn=5.0 if jit else 0.0)
    edm = maybe_jit(lambda z, k: samplers.edm_sampler(GAUSS, z, k, **common))
    ablation = maybe_jit(lambda z, k: samplers.ablation_sampler(
        GAUSS, z, k, solver="heun", discretization="edm", schedule="linear",
        scaling="none", alpha=1.0, **common))
    a, b = edm(latents, key), ablation(latents, key)
    chex.assert_trees_all_close(a, b, rtol=1e-12, atol=1e-12)
    chex.assert_type(a, jnp.float64)


@pytest.mark.parametrize("sampler", ["edm", "ablation vp/vp"])
def test_churn_outside_its_window_equals_no_churn_exactly(sampler):
  if sampler == "edm":
    run = functools.partial(samplers.edm_sampler, GAUSS, num_steps=6)
  else:
    run = functools.partial(samplers.ablation_sampler, GAUSS, num_steps=6,
                            schedule="vp", scaling="vp")
  latents = _latents(4)
  # S_max = 1e-4 lies below every level (σ_min = 0.002): γ_i = 0 for every step,
  # and then t_hat = t_i and x_hat = x_i exactly (selected, not recomputed).
  churned = jax.jit(lambda z, k: run(z, k, S_churn=30.0, S_max=1e-4))(
      latents, jax.random.key(0))
  plain = jax.jit(lambda z: run(z))(latents)
  np.testing.assert_array_equal(np.asarray(churned), np.asarray(plain))
  # Eager (op by op) gives the same samples up to float32 rounding: XLA fuses the
  # jitted program (and may contract a·b + c into one FMA), eager does not.
  chex.assert_trees_all_close(run(latents), plain, rtol=1e-5, atol=1e-6)


def test_iddpm_discretization_uses_levels_of_the_u_table():
  u = schedules.iddpm_u_table()
  with jax.enable_x64(True):
    latents = _latents(2, jnp.float64)
    _, traj = samplers.ablation_sampler(GAUSS, latents, num_steps=12,
                                        discretization="iddpm", return_trajectory=True)
    assert np.all(np.isin(np.asarray(traj.sigma), u)), traj.sigma
    assert traj.sigma[0] == u[np.sum(u > 81.0)]  # the largest level <= σ_max = 81
    # round_sigma puts any discretization onto the table (NVlabs' net.round_sigma).
    samples, traj = samplers.ablation_sampler(
        GAUSS, latents, num_steps=12, sigma_min=u[-2],
        round_sigma=schedules.iddpm_round_sigma, return_trajectory=True)
    assert np.all(np.isin(np.asarray(traj.sigma), u[:-1])), traj.sigma
    chex.assert_tree_all_finite(samples)


def test_euler_ancestral_with_eta_zero_is_euler():
  with jax.enable_x64(True):
    latents = _latents(4, jnp.float64)
    sigmas = schedules.karras_sigmas(8)
    a = samplers.euler_ancestral_sampler(GAUSS, latents, None, sigmas=sigmas, eta=0.0)
    b = samplers.solve_from(GAUSS, latents * sigmas[0], sigmas, solver="euler")
    chex.assert_trees_all_close(a, b, rtol=1e-12, atol=1e-12)


def test_ancestral_step_splits_the_variance():
  down, up = samplers.ancestral_step(np.array([10.0, 1.0, 0.5]),
                                     np.array([5.0, 0.5, 0.0]))
  np.testing.assert_allclose(down**2 + up**2, [25.0, 0.25, 0.0], rtol=1e-14)
  np.testing.assert_allclose(up[:2], [np.sqrt(25 * 75 / 100), np.sqrt(0.25 * 0.75)])
  assert samplers.ancestral_step(2.0, 1.0, eta=0.0) == (1.0, 0.0)


def test_default_sigma_ranges_follow_nvlabs():
  # NVlabs/edm's generate.py (since 62072d2) takes the VP default from β_d = 19.9.
  lo, hi = samplers.default_sigma_range("vp")
  np.testing.assert_allclose(
      [lo, hi], [np.sqrt(np.expm1(0.5 * 19.9 * 1e-6 + 0.1e-3)),
                 np.sqrt(np.expm1(0.5 * 19.9 + 0.1))], rtol=1e-12)
  assert samplers.default_sigma_range("ve") == (0.02, 100.0)
  assert samplers.default_sigma_range("iddpm") == (0.002, 81.0)
  assert samplers.default_sigma_range("edm") == (0.002, 80.0)


# ----------------------------------------------------------------------------- outputs

TRAJECTORY_CASES = {
    "edm": lambda z: samplers.edm_sampler(GAUSS, z, num_steps=5, return_trajectory=True),
    "ablation vp": lambda z: samplers.ablation_sampler(
        GAUSS, z, num_steps=5, discretization="vp", schedule="vp", scaling="vp",
        return_trajectory=True),
    "euler_ancestral": lambda z: samplers.euler_ancestral_sampler(
        GAUSS, z, jax.random.key(0), num_steps=5, return_trajectory=True),
    "dpmpp_2m": lambda z: samplers.dpmpp_2m_sampler(GAUSS, z, num_steps=5,
                                                    return_trajectory=True),
}


@pytest.mark.parametrize("case", list(TRAJECTORY_CASES))
def test_trajectory_shapes_start_and_dtype(case):
  # float32 latents keep float32 even with x64 on (no float64 leaks from the tables).
  with jax.enable_x64(True):
    latents = _latents(3)
    samples, traj = jax.jit(TRAJECTORY_CASES[case])(latents)
    chex.assert_shape(traj.sigma, (5,))
    chex.assert_shape([traj.x, traj.denoised], (5,) + latents.shape)
    chex.assert_type([samples, traj.sigma, traj.x, traj.denoised], jnp.float32)
    chex.assert_tree_all_finite((samples, traj))
    sigma_0 = traj.sigma[0]
    scale = sigma_0 / jnp.sqrt(1 + sigma_0**2) if case == "ablation vp" else sigma_0
    chex.assert_trees_all_close(traj.x[0], latents * scale, rtol=1e-6)
    assert np.all(np.diff(np.asarray(traj.sigma)) < 0)
    # No churn at step 0: denoised[0] = D(x_0 / s(t_0); σ_0).
    unscaled = traj.x[0] * jnp.sqrt(1 + sigma_0**2) if case == "ablation vp" else traj.x[0]
    expected = GAUSS(unscaled, jnp.full((3,), sigma_0))
    chex.assert_trees_all_close(traj.denoised[0], expected, rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- keys

def _churn_run(latents, keys):
  return samplers.edm_sampler(GAUSS, latents, keys, num_steps=8, S_churn=10.0)


_churn_jit = jax.jit(_churn_run)


@pytest.fixture(scope="module")
def batch16():
  latents = _latents(16, seed=5)
  keys = jax.random.split(jax.random.key(7), 16)
  return latents, keys, np.asarray(_churn_jit(latents, keys))


def test_samples_do_not_depend_on_batch_size(batch16):
  latents, keys, samples = batch16
  first4 = _churn_jit(latents[:4], keys[:4])
  np.testing.assert_array_equal(np.asarray(first4), samples[:4])  # exact


def test_one_key_means_fold_in_per_sample():
  latents = _latents(4, seed=5)
  key = jax.random.key(11)
  folded = jax.vmap(lambda b: jax.random.fold_in(key, b))(jnp.arange(4))
  np.testing.assert_array_equal(np.asarray(_churn_jit(latents, key)),
                                np.asarray(_churn_jit(latents, folded)))


def test_samples_identical_on_one_and_eight_devices(batch16):
  assert jax.device_count() >= 8, "tests/conftest.py forces 8 CPU devices"
  latents, keys, samples = batch16
  mesh = jax.make_mesh((8,), ("data",))
  sharding = NamedSharding(mesh, P("data"))
  sharded = _churn_jit(jax.device_put(latents, sharding), jax.device_put(keys, sharding))
  assert sharded.sharding.is_equivalent_to(sharding, sharded.ndim)
  np.testing.assert_array_equal(np.asarray(sharded), samples)  # exact


RETRACE_CASES = {
    "edm": lambda z, k, lo, hi: samplers.edm_sampler(
        GAUSS, z, k, num_steps=4, sigma_min=lo, sigma_max=hi, S_churn=1.0),
    "ablation": lambda z, k, lo, hi: samplers.ablation_sampler(
        GAUSS, z, k, num_steps=4, sigma_min=lo, sigma_max=hi, discretization="vp",
        schedule="vp", scaling="vp", S_churn=1.0),
    "euler_ancestral": lambda z, k, lo, hi: samplers.euler_ancestral_sampler(
        GAUSS, z, k, num_steps=4, sigma_min=lo, sigma_max=hi),
    "dpmpp_2m": lambda z, k, lo, hi: samplers.dpmpp_2m_sampler(
        GAUSS, z, k, num_steps=4, sigma_min=lo, sigma_max=hi),
}


@pytest.mark.parametrize("case", list(RETRACE_CASES))
def test_no_retrace_when_sigmas_keys_or_latents_change(case):
  run = jax.jit(chex.assert_max_traces(RETRACE_CASES[case], n=1))
  outs = []
  for seed, (lo, hi) in enumerate([(0.002, 80.0), (0.01, 20.0), (0.05, 5.0)]):
    out = run(_latents(4, seed=seed), jax.random.key(seed), lo, hi)
    chex.assert_tree_all_finite(out)
    outs.append(np.asarray(out))
  assert not np.array_equal(outs[0], outs[1])


# ----------------------------------------------------------------------------- errors

Z = np.zeros((2,) + IMAGE, np.float32)
ERROR_CASES = {
    "solver": (lambda: samplers.ablation_sampler(GAUSS, Z, solver="rk4"), "solver='rk4'"),
    "solve_from solver": (lambda: samplers.solve_from(
        GAUSS, Z, schedules.karras_sigmas(4), solver="midpoint"), "solver='midpoint'"),
    "discretization": (lambda: samplers.ablation_sampler(
        GAUSS, Z, discretization="cosine"), "discretization='cosine'"),
    "schedule": (lambda: samplers.ablation_sampler(GAUSS, Z, schedule="exp"),
                 "schedule='exp'"),
    "scaling": (lambda: samplers.ablation_sampler(GAUSS, Z, scaling="ve"),
                "scaling='ve'"),
    "num_steps": (lambda: samplers.edm_sampler(GAUSS, Z, num_steps=1), "num_steps=1"),
    "ablation num_steps": (lambda: samplers.ablation_sampler(GAUSS, Z, num_steps=1),
                           "num_steps=1"),
    "dpm num_steps": (lambda: samplers.dpmpp_2m_sampler(GAUSS, Z, num_steps=1),
                      "num_steps=1"),
    "sigma range": (lambda: samplers.edm_sampler(GAUSS, Z, sigma_min=5.0, sigma_max=1.0),
                    "sigma_min=5.0"),
    "ablation sigma range": (lambda: samplers.ablation_sampler(
        GAUSS, Z, sigma_min=2.0, sigma_max=2.0), "sigma_min=2.0"),
    "rho": (lambda: samplers.edm_sampler(GAUSS, Z, rho=0.0), "rho must be > 0, got 0.0"),
    "ablation rho": (lambda: samplers.ablation_sampler(GAUSS, Z, rho=-1.0),
                     "rho must be > 0, got -1.0"),
    "alpha zero": (lambda: samplers.ablation_sampler(GAUSS, Z, alpha=0.0), "alpha=0.0"),
    "alpha above one": (lambda: samplers.ablation_sampler(GAUSS, Z, alpha=1.5),
                        "alpha=1.5"),
    "latents 3-D": (lambda: samplers.edm_sampler(GAUSS, Z[0]), "shape (2, 2, 1)"),
    "latents 5-D": (lambda: samplers.dpmpp_2m_sampler(GAUSS, Z[None]),
                    "shape (1, 2, 2, 2, 1)"),
    "key count": (lambda: samplers.edm_sampler(
        GAUSS, Z, jax.random.split(jax.random.key(0), 3), S_churn=1.0), "shape (3,)"),
    "ancestral key count": (lambda: samplers.euler_ancestral_sampler(
        GAUSS, Z, jax.random.split(jax.random.key(0), 5)), "shape (5,)"),
    "missing key": (lambda: samplers.edm_sampler(GAUSS, Z, S_churn=2.0), "S_churn=2.0"),
    "missing ancestral key": (lambda: samplers.euler_ancestral_sampler(GAUSS, Z, None),
                              "key=None"),
    "traced churn without key": (lambda: jax.jit(
        lambda c: samplers.edm_sampler(GAUSS, Z, S_churn=c))(1.0), "key=None"),
    "table not ending in 0": (lambda: samplers.solve_from(
        GAUSS, Z, np.array([2.0, 1.0, 0.5])), "last level 0.5"),
    "round_sigma to 0": (lambda: samplers.edm_sampler(
        GAUSS, Z, round_sigma=schedules.iddpm_round_sigma), "sigma_min=0.002"),
    "table increasing": (lambda: samplers.solve_from(
        GAUSS, Z, np.array([1.0, 2.0, 0.0])), "strictly decreasing"),
}


@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_bad_input_raises_value_error_naming_it(case):
  call, message = ERROR_CASES[case]
  with pytest.raises(ValueError) as info:
    call()
  assert message in str(info.value), str(info.value)
