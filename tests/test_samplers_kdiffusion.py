"""Facts about k-diffusion's sampler set in edmjax (parity itself: tests/reference).

* Orders by regression against the exact probability-flow ODE of Gaussian data
  (float64), on the state entering the last step (σ_{N−1}), or the result at σ_min
  for DPM-Solver-fast; the adaptive solver's error is proportional to its tolerance.
* Stochastic samplers reproduce a Gaussian mixture (weights within 2 points, each
  component's mean and std within 2%).
* No retrace when σ values or keys change; a sample is the same at batch 4 and 16
  and on 1 and 8 devices; bad input raises a ValueError naming it.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from edmjax import oracle, samplers, sampling, schedules
from gaussian_mixture import GMM_DENOISE, check_mixture

MEAN, STD = 0.3, 0.5
GAUSS = oracle.gaussian_denoiser(MEAN, STD)
RANGE = dict(sigma_min=0.02, sigma_max=10.0)

def _latents(batch, dtype=jnp.float32, seed=0, image=(2, 2, 1)):
  return jax.random.normal(jax.random.key(seed), (batch,) + image, dtype)

# ----------------------------------------------------------------------------- orders

def _last_state_error(run, z, n):
  _, traj = run(z, n)
  s0, s_last = traj.sigma[0], traj.sigma[-1]
  exact = oracle.gaussian_ode_solution(z * s0, s0, s_last, MEAN, STD)
  return float(jnp.max(jnp.abs(traj.x[-1] - exact)))

ORDER_RANGE = dict(sigma_min=0.05, sigma_max=5.0, rho=3.0)


def _table(fn, **kw):
  return lambda z, n: fn(GAUSS, z, num_steps=n, return_trajectory=True, **ORDER_RANGE, **kw)


# name: (run(z, n), claimed global order); measured slopes over N = 8, 16, 32 in
# brackets.
ORDER_CASES = {
    "dpm_2": (_table(samplers.dpm_2_sampler), 2.0),                           # 2.22
    "dpmpp_2s_ancestral eta=0": (_table(samplers.dpmpp_2s_ancestral_sampler, eta=0.0),
                                 2.0),                                        # 2.06
    "dpmpp_2m_sde midpoint eta=0": (_table(samplers.dpmpp_2m_sde_sampler, eta=0.0),
                                    2.0),                                     # 1.90
    "dpmpp_2m_sde heun eta=0": (_table(samplers.dpmpp_2m_sde_sampler, eta=0.0,
                                       solver_type="heun"), 2.0),             # 2.08
    "lms order 2": (_table(samplers.lms_sampler, order=2), 2.0),              # 1.92
    "lms order 3": (_table(samplers.lms_sampler, order=3), 3.0),              # 2.77
}
ORDER_STEPS = (8, 16, 32)


@pytest.mark.parametrize("case", list(ORDER_CASES))
def test_global_order_against_exact_gaussian_ode(case):
  # Op by op: three short runs cost less than three compilations.
  run, order = ORDER_CASES[case]
  with jax.enable_x64(True), jax.disable_jit():
    z = _latents(4, jnp.float64)
    errors = [_last_state_error(run, z, n) for n in ORDER_STEPS]
  slope = np.polyfit(np.log(ORDER_STEPS), np.log(errors), 1)[0]
  assert abs(slope + order) <= 0.3, (case, slope, errors)


def test_dpmpp_3m_sde_is_second_order_as_written_in_k_diffusion():
  # k-diffusion's (and DPM-Solver's) 3M: its second divided difference
  # D2 ≈ h²D''/2 enters with φ_3, whose Taylor term needs h²D'', so the scheme is
  # second order (slopes 1.89 and 1.95 over N = 64..256; with 2·D2 it is third
  # order). Kept exactly as k-diffusion's, for parity (tests/reference).
  steps = (64, 128, 256)
  with jax.enable_x64(True):
    z = _latents(4, jnp.float64)
    run = jax.jit(lambda z, n: samplers.dpmpp_3m_sde_sampler(
        GAUSS, z, eta=0.0, num_steps=n, return_trajectory=True, **RANGE), static_argnums=1)
    errors = [_last_state_error(run, z, n) for n in steps]
  slope = np.polyfit(np.log(steps), np.log(errors), 1)[0]
  assert abs(slope + 2) <= 0.2, (slope, errors)


def test_ancestral_samplers_without_noise_are_their_ode_solvers():
  with jax.enable_x64(True), jax.disable_jit():
    z = _latents(4, jnp.float64)
    kw = dict(num_steps=8, **RANGE)
    np.testing.assert_allclose(samplers.dpm_2_ancestral_sampler(GAUSS, z, eta=0.0, **kw),
                               samplers.dpm_2_sampler(GAUSS, z, **kw), rtol=1e-12)
    np.testing.assert_allclose(samplers.dpmpp_sde_sampler(GAUSS, z, eta=0.0, **kw),
                               samplers.dpmpp_2s_ancestral_sampler(GAUSS, z, eta=0.0, **kw),
                               rtol=1e-12)


def test_dpm_fast_is_third_order_when_its_last_step_is_second_order():
  # nfe ≡ 2 (mod 3): every step of order 3 but the last, of order 2. (For nfe ≡ 0
  # or 1 the last step is of order 1 and limits the global order to 2.)
  nfes = (14, 26, 50)
  with jax.enable_x64(True), jax.disable_jit():
    z = _latents(4, jnp.float64)
    exact = oracle.gaussian_ode_solution(z * 10.0, 10.0, 0.02, MEAN, STD)
    errors = [float(jnp.max(jnp.abs(samplers.dpm_fast_sampler(GAUSS, z, nfe=n, **RANGE)
                                    - exact))) for n in nfes]
  slope = np.polyfit(np.log(nfes), np.log(errors), 1)[0]
  assert -3.7 <= slope <= -2.9, (slope, errors)   # measured −3.4
  assert samplers.dpm_fast_orders(14) == [3, 3, 3, 3, 2]

def test_dpm_adaptive_error_is_proportional_to_its_tolerance():
  tols = (3e-3, 3e-4, 3e-5)
  with jax.enable_x64(True):
    z = _latents(4, jnp.float64)
    exact = oracle.gaussian_ode_solution(z * 10.0, 10.0, 0.02, MEAN, STD)
    # Tolerances are traced: one compilation for all three.
    run = jax.jit(lambda tol: samplers.dpm_adaptive_sampler(
        GAUSS, z, order=2, rtol=tol, atol=tol / 10, return_info=True, **RANGE))
    errors, nfes = [], []
    for tol in tols:
      x, info = run(tol)
      errors.append(float(jnp.max(jnp.abs(x - exact))))
      nfes.append(int(info.nfe.max()))
      np.testing.assert_array_equal(info.nfe, 2 * info.steps)
  slope = np.polyfit(np.log(tols), np.log(errors), 1)[0]
  assert 0.7 <= slope <= 1.3, (slope, errors)          # measured 0.94
  assert nfes[0] < nfes[1] < nfes[2]


def test_lms_coefficients_integrate_polynomials_exactly():
  # Σ_j c_ij p(σ_{i−j}) = ∫ p over [σ_i, σ_{i+1}] for polynomials of degree < q.
  sigmas = schedules.karras_sigmas(6, 0.1, 5.0)
  c = samplers.lms_coefficients(sigmas, order=4)
  for i in range(3, 6):
    for degree in range(4):
      nodes = sigmas[i - np.arange(4)]
      integral = (sigmas[i + 1]**(degree + 1) - sigmas[i]**(degree + 1)) / (degree + 1)
      np.testing.assert_allclose(np.sum(c[i] * nodes**degree), integral, rtol=1e-12,
                                 atol=1e-14)

# ----------------------------------------------------------------------------- GMM

# Step counts chosen so that the discretization error is well inside 2% (measured
# worst deviations: weights 0.3–1.3 points, std 0.3–1.3%).
STOCHASTIC = {
    "dpm_2 churn": lambda z, k: samplers.dpm_2_sampler(
        GMM_DENOISE, z, k, num_steps=96, S_churn=20.0, S_min=0.05, S_max=50.0),
    "dpm_2_ancestral": lambda z, k: samplers.dpm_2_ancestral_sampler(
        GMM_DENOISE, z, k, num_steps=128),
    "dpmpp_2s_ancestral": lambda z, k: samplers.dpmpp_2s_ancestral_sampler(
        GMM_DENOISE, z, k, num_steps=64),
    "dpmpp_sde": lambda z, k: samplers.dpmpp_sde_sampler(GMM_DENOISE, z, k, num_steps=48),
    "dpmpp_2m_sde": lambda z, k: samplers.dpmpp_2m_sde_sampler(
        GMM_DENOISE, z, k, num_steps=128),
    "dpmpp_3m_sde": lambda z, k: samplers.dpmpp_3m_sde_sampler(
        GMM_DENOISE, z, k, num_steps=64),
    "dpm_fast eta=1": lambda z, k: samplers.dpm_fast_sampler(
        GMM_DENOISE, z, k, nfe=96, eta=1.0),
    "dpm_adaptive eta=1": lambda z, k: samplers.dpm_adaptive_sampler(
        GMM_DENOISE, z, k, eta=1.0, rtol=0.01, atol=0.002),
}


@pytest.fixture(scope="module")
def gmm_latents():
  return _latents(10_000, image=(4, 4, 1), seed=3)


@pytest.mark.parametrize("name", list(STOCHASTIC))
def test_stochastic_sampler_reproduces_gaussian_mixture(name, gmm_latents):
  check_mixture(jax.jit(STOCHASTIC[name])(gmm_latents, jax.random.key(1)))

# ----------------------------------------------------------------------------- keys

# Every new sampler, with noise where it has any; σ_min, σ_max as arguments.
KEYED = {
    "dpm_2": lambda z, k, lo, hi: samplers.dpm_2_sampler(
        GAUSS, z, k, num_steps=3, sigma_min=lo, sigma_max=hi, S_churn=5.0),
    "dpm_2_ancestral": lambda z, k, lo, hi: samplers.dpm_2_ancestral_sampler(
        GAUSS, z, k, num_steps=3, sigma_min=lo, sigma_max=hi),
    "lms": lambda z, k, lo, hi: samplers.lms_sampler(
        GAUSS, z, k, num_steps=4, sigma_min=lo, sigma_max=hi),
    "dpmpp_2s_ancestral": lambda z, k, lo, hi: samplers.dpmpp_2s_ancestral_sampler(
        GAUSS, z, k, num_steps=3, sigma_min=lo, sigma_max=hi),
    "dpmpp_sde": lambda z, k, lo, hi: samplers.dpmpp_sde_sampler(
        GAUSS, z, k, num_steps=3, sigma_min=lo, sigma_max=hi),
    "dpmpp_2m_sde": lambda z, k, lo, hi: samplers.dpmpp_2m_sde_sampler(
        GAUSS, z, k, num_steps=3, sigma_min=lo, sigma_max=hi),
    "dpmpp_3m_sde": lambda z, k, lo, hi: samplers.dpmpp_3m_sde_sampler(
        GAUSS, z, k, num_steps=4, sigma_min=lo, sigma_max=hi),
    "dpm_fast": lambda z, k, lo, hi: samplers.dpm_fast_sampler(
        GAUSS, z, k, nfe=5, sigma_min=lo, sigma_max=hi, eta=1.0),
    "dpm_adaptive": lambda z, k, lo, hi: samplers.dpm_adaptive_sampler(
        GAUSS, z, k, sigma_min=lo, sigma_max=hi, eta=1.0, max_steps=64),
}


def _all_keyed(z, k, lo, hi):
  """Every sampler of KEYED in one program (one compilation instead of nine)."""
  return {name: fn(z, k, lo, hi) for name, fn in KEYED.items()}


_RUN_ALL = jax.jit(chex.assert_max_traces(_all_keyed, n=1))


def test_no_retrace_when_sigmas_or_keys_change():
  z = _latents(4, seed=5)
  outs = [jax.tree.map(np.asarray, _RUN_ALL(z, jax.random.split(jax.random.key(seed), 4),
                                            lo, hi))
          for seed, (lo, hi) in enumerate([(0.002, 80.0), (0.01, 20.0), (0.05, 5.0)])]
  for name in KEYED:
    assert np.all(np.isfinite(outs[0][name])), name
    assert not np.array_equal(outs[0][name], outs[1][name]), name


# One sampler per way of drawing noise: churn (dpm_2), one draw per step
# (dpm_2_ancestral; dpmpp_2s_ancestral, dpmpp_2m_sde and dpmpp_3m_sde draw through
# the same `noise_keys` / `step_noise(keys, i)`), two per step (dpmpp_sde), steps in
# λ (dpm_fast), per-sample step counts (dpm_adaptive).
DEVICE_CASES = ("dpm_2", "dpm_2_ancestral", "dpmpp_sde", "dpm_fast", "dpm_adaptive")


def test_a_sample_is_the_same_at_batch_4_and_16_and_on_1_and_8_devices():
  # The σ range is a constant here, so every table is built on the host (float64,
  # cast once) and all three programs compute the same numbers bit for bit. (With
  # a traced range the tables are computed inside each program, and XLA:CPU may
  # round exp/log of different programs differently in the last bit.)
  assert jax.device_count() >= 8, "tests/conftest.py forces 8 CPU devices"
  run = jax.jit(lambda z, k: {name: KEYED[name](z, k, 0.002, 80.0) for name in DEVICE_CASES})
  z = _latents(16, seed=5)
  keys = jax.random.split(jax.random.key(7), 16)
  full = run(z, keys)
  small = run(z[:4], keys[:4])
  sharding = NamedSharding(jax.make_mesh((8,), ("data",)), P("data"))
  sharded = run(jax.device_put(z, sharding), jax.device_put(keys, sharding))
  for name in DEVICE_CASES:
    np.testing.assert_array_equal(np.asarray(small[name]), np.asarray(full[name])[:4],
                                  err_msg=name)
    np.testing.assert_array_equal(np.asarray(sharded[name]), np.asarray(full[name]),
                                  err_msg=name)


def test_dpm_adaptive_budget_exhausted_is_flagged_and_nan():
  z = _latents(3)
  x, info = jax.jit(lambda z: samplers.dpm_adaptive_sampler(
      GAUSS, z, rtol=1e-6, atol=1e-7, max_steps=5, return_info=True))(z)
  assert np.all(np.asarray(info.budget_exceeded))
  np.testing.assert_array_equal(np.asarray(info.steps), 5)
  assert np.all(np.isnan(np.asarray(x)))

def test_dpm_adaptive_trajectory_records_the_accepted_steps():
  z = _latents(2)
  x, info, traj = jax.jit(lambda z: samplers.dpm_adaptive_sampler(
      GAUSS, z, max_steps=40, return_info=True, return_trajectory=True))(z)
  for b in range(2):
    n = int(info.n_accept[b])
    sig = np.asarray(traj.sigma[:, b])
    assert sig[0] == pytest.approx(80.0) and np.all(np.diff(sig[:n]) < 0)
    assert np.all(np.isnan(sig[n:]))
  chex.assert_trees_all_close(traj.x[0], z * 80.0, rtol=1e-6)

# ----------------------------------------------------------------------------- registry

REGISTRY_CASES = {  # name: the schedule its spec asks for (each schedule used)
    "dpm_2": "exponential", "dpm_2_ancestral": "polyexponential", "lms": "vp",
    "dpmpp_2s_ancestral": "karras", "dpmpp_sde": "exponential",
    "dpmpp_2m_sde": "polyexponential", "dpmpp_3m_sde": "vp",
}


@pytest.mark.parametrize("name", list(REGISTRY_CASES))
def test_registry_runs_the_sampler_it_names(name):
  schedule = REGISTRY_CASES[name]
  spec = sampling.SamplerSpec(name, num_steps=4, schedule=schedule, rho=2.0)
  table = sampling.sigma_table(GAUSS, 4, 0.002, 80.0, 2.0, schedule)
  z = _latents(3)
  key = jax.random.key(2)
  with jax.disable_jit():
    want = getattr(samplers, f"{name}_sampler")(GAUSS, z, key, sigmas=table)
    np.testing.assert_array_equal(np.asarray(sampling.sample(GAUSS, z, key, spec)),
                                  np.asarray(want))
  two = ("dpm_2", "dpm_2_ancestral", "dpmpp_2s_ancestral", "dpmpp_sde")
  assert spec.nfe() == (7 if name in two else 4)
  assert spec.needs_key() == (name not in ("dpm_2", "lms"))


def test_registry_schedules_are_the_named_tables():
  np.testing.assert_array_equal(sampling.sigma_table(GAUSS, 6, 0.01, 20.0, 1.0, "exponential"),
                                schedules.exponential_sigmas(6, 0.01, 20.0))
  np.testing.assert_array_equal(
      sampling.sigma_table(GAUSS, 6, 0.01, 20.0, 2.5, "polyexponential"),
      schedules.polyexponential_sigmas(6, 0.01, 20.0, 2.5))
  # 'vp' fit to the original VP range is k-diffusion's get_sigmas_vp.
  lo, hi = schedules.vp_default_sigma_range()
  np.testing.assert_allclose(sampling.sigma_table(GAUSS, 8, lo, hi, 7.0, "vp"),
                             schedules.vp_sigmas(8), rtol=1e-12)
  assert sampling.SamplerSpec("dpm_fast", nfe=12).nfe() == 12
  assert sampling.SamplerSpec("dpm_adaptive", max_steps=50, order=2).nfe() == 100

# ----------------------------------------------------------------------------- errors

Z = np.zeros((2, 2, 2, 1), np.float32)
ERROR_CASES = {
    "lms order": (lambda: samplers.lms_sampler(GAUSS, Z, order=5), "order=5"),
    "2m sde solver": (lambda: samplers.dpmpp_2m_sde_sampler(
        GAUSS, Z, jax.random.key(0), solver_type="euler"), "solver_type='euler'"),
    "sde r": (lambda: samplers.dpmpp_sde_sampler(GAUSS, Z, jax.random.key(0), r=1.5),
              "r=1.5"),
    "ancestral key": (lambda: samplers.dpm_2_ancestral_sampler(GAUSS, Z), "key=None"),
    "3m key": (lambda: samplers.dpmpp_3m_sde_sampler(GAUSS, Z), "key=None"),
    "negative eta": (lambda: samplers.dpmpp_2s_ancestral_sampler(GAUSS, Z, eta=-1.0),
                     "eta"),
    "dpm_2 churn key": (lambda: samplers.dpm_2_sampler(GAUSS, Z, S_churn=1.0),
                        "S_churn=1.0"),
    "fast nfe": (lambda: samplers.dpm_fast_sampler(GAUSS, Z, nfe=0), "nfe"),
    "fast range": (lambda: samplers.dpm_fast_sampler(GAUSS, Z, sigma_min=5.0, sigma_max=1.0),
                   "sigma_min=5.0"),
    "adaptive order": (lambda: samplers.dpm_adaptive_sampler(GAUSS, Z, order=4),
                       "order=4"),
    "adaptive atol": (lambda: samplers.dpm_adaptive_sampler(GAUSS, Z, atol=0.0), "atol"),
    "adaptive budget": (lambda: samplers.dpm_adaptive_sampler(GAUSS, Z, max_steps=0),
                        "max_steps=0"),
    "table": (lambda: samplers.dpmpp_2m_sde_sampler(GAUSS, Z, None, eta=0.0,
                                                    sigmas=np.array([1.0, 2.0, 0.0])),
              "strictly decreasing"),
    "spec schedule": (lambda: sampling.SamplerSpec("lms", schedule="cosine"),
                      "schedule='cosine'"),
    "spec r": (lambda: sampling.SamplerSpec("dpmpp_sde", r=2.0), "r=2.0"),
}

@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_bad_input_raises_value_error_naming_it(case):
  call, message = ERROR_CASES[case]
  with pytest.raises(ValueError) as info:
    call()
  assert message in str(info.value), str(info.value)

