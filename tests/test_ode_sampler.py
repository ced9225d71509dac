"""The adaptive probability-flow ODE sampler (`samplers.ode_sampler`, diffrax).

Facts: it reaches the exact Gaussian flow and the Heun 1,024-step reference of the
sampler study within its tolerance; its NFE is the count of denoiser calls; each
sample's steps are its own and its result does not depend on the batch; a
conditional denoiser sees its own batch; changing tolerances or σ does not
retrace; exceeding max_steps is a clear error (or a flag); sharded, each device
solves alone (no all-reduce); the registry's 'ode' is this function.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.experimental import io_callback
from sklearn.datasets import load_digits

from edmjax import oracle, sampling, samplers
from edmjax.model import Denoiser
from edmjax.samplers import ode
from edmjax.train import parallel

GAUSS = oracle.gaussian_denoiser(0.1, 0.5)


def _digits_gmm():
  """The sampler study's mixture: 10 components on the digits' class means, s = 0.2."""
  d = load_digits()
  images = (d.images / 16.0 * 2.0 - 1.0)[..., None]
  means = np.stack([images[d.target == k].mean(0) for k in range(10)])
  w = np.bincount(d.target, minlength=10) / len(d.target)
  return means, w


def _rms(a, b):
  return np.sqrt(np.mean((np.asarray(a) - np.asarray(b)) ** 2, axis=(1, 2, 3)))


@pytest.fixture(scope="module")
def run64():
  """ode_sampler in float64 with traced tolerances and σ range, compiled once."""
  def run(denoise, z, tol, sigma_min, sigma_max, to_zero):
    return ode.ode_sampler(denoise, z, rtol=tol, atol=tol, sigma_min=sigma_min,
                           sigma_max=sigma_max, denoise_to_zero=to_zero)
  return jax.jit(chex.assert_max_traces(run, n=2), static_argnums=(0, 5))


def test_reaches_the_exact_gaussian_flow_within_tolerance_without_retracing(run64):
  with jax.enable_x64(True):
    z = jax.random.normal(jax.random.key(0), (3, 8, 8, 1), jnp.float64)
    for tol, lo, hi in ((1e-4, 0.002, 80.0), (1e-6, 0.002, 80.0), (1e-6, 0.01, 20.0)):
      x, stats = run64(GAUSS, z, tol, lo, hi, False)
      exact = oracle.gaussian_ode_solution(hi * z, hi, lo, 0.1, 0.5)
      assert np.all(_rms(x, exact) < tol), (tol, _rms(x, exact))
      assert stats.nfe.shape == (3,) and np.all(stats.success)
    # Three tolerances and σ ranges, one trace (assert_max_traces counts per function).


def test_reaches_the_heun_1024_step_reference_of_the_sampler_study(run64):
  means, w = _digits_gmm()
  with jax.enable_x64(True):
    den = oracle.gmm_denoiser(jnp.asarray(means), jnp.full((10,), 0.2), jnp.asarray(w))
    z = jax.random.normal(jax.random.key(0), (4, 8, 8, 1), jnp.float64)
    ref = jax.jit(lambda z: samplers.edm_sampler(den, z, num_steps=1024))(z)
    nfe = []
    for tol in (1e-3, 1e-4, 1e-5):
      x, stats = run64(den, z, tol, 0.002, 80.0, True)
      err = _rms(x, ref)
      assert np.all(err < tol), (tol, err)
      nfe.append(np.asarray(stats.nfe))
    # Tighter tolerance, more evaluations, and far fewer than the reference's 2,047.
    assert np.all(nfe[0] < nfe[1]) and np.all(nfe[1] < nfe[2]) and nfe[2].max() < 400


@pytest.mark.parametrize("solver", ["tsit5", "heun"])   # FSAL and not
def test_nfe_is_the_number_of_denoiser_calls(solver):
  calls = []

  def counted(x, sigma):
    io_callback(lambda s: calls.append(1) or np.zeros((), np.float32),
                jax.ShapeDtypeStruct((), jnp.float32), sigma[0])
    return GAUSS(x, sigma)

  z = jax.random.normal(jax.random.key(1), (1, 4, 4, 1))
  x, stats = jax.jit(lambda z: ode.ode_sampler(counted, z, solver=solver, rtol=1e-3,
                                               atol=1e-3))(z)
  jax.block_until_ready(x)
  assert int(stats.nfe[0]) == len(calls)
  assert int(stats.nfe[0]) == ode.solver_nfe(solver, int(stats.num_steps[0])) + 1


def test_each_sample_has_its_own_steps_and_does_not_depend_on_the_batch():
  means, w = _digits_gmm()
  with jax.enable_x64(True):
    den = oracle.gmm_denoiser(jnp.asarray(means), jnp.full((10,), 0.2), jnp.asarray(w))
    z = jax.random.normal(jax.random.key(2), (6, 8, 8, 1), jnp.float64)
    run = jax.jit(lambda z: ode.ode_sampler(den, z, rtol=1e-4, atol=1e-4))
    x, stats = run(z)
    assert len(set(np.asarray(stats.nfe).tolist())) > 1    # different samples, different NFE
    for b in (0, 3):
      alone, alone_stats = run(z[b:b + 1])
      np.testing.assert_allclose(np.asarray(alone[0]), np.asarray(x[b]), atol=1e-12)
      assert int(alone_stats.nfe[0]) == int(stats.nfe[b])


def test_a_conditional_denoiser_sees_its_own_batch():
  # A denoiser closing over per-sample data (as an SR model closes over its
  # low-resolution images), traced under the caller's jit: the solve must call it
  # on the whole batch, row b at sample b's own σ, not once per sample.
  centres = jnp.asarray([-0.5, 0.0, 0.7]).reshape(3, 1, 1, 1)

  def solve(z, centres):
    def conditional(x, sigma):
      assert x.shape[0] == 3, x.shape
      return oracle.gaussian_denoiser(0.0, 0.5)(x - centres, sigma) + centres
    return ode.ode_sampler(conditional, z, rtol=1e-6, atol=1e-6, denoise_to_zero=False)

  z = jax.random.normal(jax.random.key(3), (3, 4, 4, 1))
  x, _ = jax.jit(solve)(z, centres)
  exact = oracle.gaussian_ode_solution(80.0 * z, 80.0, 0.002, centres, 0.5)
  np.testing.assert_allclose(np.asarray(x), np.asarray(exact), atol=2e-5)


def test_exceeding_max_steps_is_a_clear_error_or_a_flag():
  z = jax.random.normal(jax.random.key(4), (2, 4, 4, 1))
  with pytest.raises(jax.errors.JaxRuntimeError, match="max_steps=3"):
    jax.block_until_ready(jax.jit(lambda z: ode.ode_sampler(GAUSS, z, max_steps=3))(z))
  x, stats = jax.jit(lambda z: ode.ode_sampler(GAUSS, z, max_steps=3, throw=False))(z)
  assert not np.any(stats.success) and np.all(np.isnan(np.asarray(x)))
  assert np.all(np.asarray(stats.num_steps) == 3)


def test_sharded_each_device_solves_alone():
  mesh = parallel.make_mesh()
  assert mesh.devices.size == 8
  z = jax.random.normal(jax.random.key(5), (8, 4, 4, 1))
  solve = lambda z: ode.ode_sampler(GAUSS, z, rtol=1e-4, atol=1e-4)
  # Each program compiled once: its HLO read and then run.
  per_device = jax.jit(ode.per_device(solve, mesh)).lower(z).compile()
  assert "all-reduce" not in per_device.as_text()
  # Plain jit of a sharded batch agrees across devices at every step of the loop.
  coupled = jax.jit(solve, in_shardings=parallel.batch_sharding(mesh)).lower(z).compile()
  assert "all-reduce" in coupled.as_text()
  (x, stats), (want, want_stats) = per_device(z), coupled(z)
  np.testing.assert_allclose(np.asarray(x), np.asarray(want), atol=1e-6)
  np.testing.assert_array_equal(np.asarray(stats.nfe), np.asarray(want_stats.nfe))


def test_registry_ode_is_the_function():
  z = jax.random.normal(jax.random.key(6), (2, 4, 4, 1))
  spec = sampling.SamplerSpec("ode", rtol=1e-3, atol=1e-3, solver="dopri5")

  def both(z):
    # The spec's options reach the solve, and the model's range is clipped (NVlabs'
    # rule): from 80 on a model that supports σ <= 10, the solve starts at 10.
    got = sampling.sample(Denoiser(GAUSS, sigma_max=10.0), z, None, spec,
                          return_trajectory=True)
    want = ode.ode_sampler(GAUSS, z, rtol=1e-3, atol=1e-3, solver="dopri5",
                           sigma_max=10.0)
    return got, want

  (x, stats), (want, want_stats) = jax.jit(both)(z)
  np.testing.assert_array_equal(np.asarray(x), np.asarray(want))
  np.testing.assert_array_equal(np.asarray(stats.nfe), np.asarray(want_stats.nfe))
  # nfe() is the budget (as for 'dpm_adaptive'); each sample spends its own share.
  assert spec.nfe() == ode.solver_nfe("dopri5", 4096) + 1
  assert np.all(np.asarray(stats.nfe) < spec.nfe())
  with pytest.raises(ValueError, match="solver='rk4'"):
    sampling.SamplerSpec("ode", solver="rk4")
  with pytest.raises(ValueError, match="round_sigma"):
    sampling.sample(Denoiser(GAUSS, round_sigma=lambda s: s), z, None, spec)
