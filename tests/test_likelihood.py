"""Log-likelihoods and bits/dim through the probability-flow ODE (`edmjax.likelihood`).

Facts, against closed forms of the ideal denoisers (float64): Gaussian data give
N(x; μ, (s² + σ_min²) I) to 1e-4 nats per dimension, term by term (the integral
Δ = (d/2) log((s² + σ_max²)/(s² + σ_min²)) > 0 upwards from σ_min, the prior at the
exact flow's end point); the Gaussian mixture gives its own density at σ_min;
Hutchinson's estimate is unbiased; bits/dim of a Gaussian model equals −log₂ of the
exact probability of each 8-bit bin (normal CDFs); every offset and range is fixed.
"""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats as scipy_stats

from edmjax import likelihood, oracle
from edmjax.model import Denoiser, EpsModel

D = 64  # 8 × 8 × 1
S_MIN, S_MAX = 0.002, 80.0


def _gaussian_logpdf(x, mean, var):
  return np.sum(-0.5 * np.log(2 * np.pi * var) - (x - mean) ** 2 / (2 * var), axis=(1, 2, 3))


def _gmm_logpdf(x, means, stds, weights, sigma):
  var = stds ** 2 + sigma ** 2                                          # (K,)
  sq = np.sum((x[:, None] - means[None]) ** 2, axis=(2, 3, 4))         # (B, K)
  logs = np.log(weights) - 0.5 * D * np.log(2 * np.pi * var) - sq / (2 * var)
  return np.logaddexp.reduce(logs, axis=1)


@pytest.fixture(scope="module")
def exact64():
  """log_likelihood(exact) in float64 at rtol = atol = 1e-8, compiled once per model."""
  def run(denoise, x, sigma_min):
    return likelihood.log_likelihood(denoise, x, None, sigma_min=sigma_min, rtol=1e-8,
                                     atol=1e-8, return_parts=True)
  return jax.jit(run, static_argnums=0)


MEAN = np.linspace(-0.3, 0.4, D).reshape(8, 8, 1)      # per-pixel mean and std
STD = np.linspace(0.2, 0.6, D)[::-1].reshape(8, 8, 1)
ZERO_MEAN = oracle.gaussian_denoiser(0.0, STD)


@pytest.fixture(scope="module")
def gauss64():
  """log_likelihood(exact) of Gaussian data with std STD and a traced mean (one trace)."""
  def run(mean, x):
    return likelihood.log_likelihood(oracle.gaussian_denoiser(mean, STD), x, None,
                                     sigma_min=S_MIN, rtol=1e-8, atol=1e-8,
                                     return_parts=True)
  return jax.jit(chex.assert_max_traces(run, n=1))


def test_gaussian_term_by_term(gauss64):
  with jax.enable_x64(True):
    x = MEAN + STD * np.asarray(jax.random.normal(jax.random.key(0), (3, 8, 8, 1),
                                                  jnp.float64))
    out = gauss64(jnp.asarray(MEAN), jnp.asarray(x))
    # Δ: the divergence integral from σ_min up to σ_max, positive.
    delta = np.sum(0.5 * np.log((STD**2 + S_MAX**2) / (STD**2 + S_MIN**2)))
    np.testing.assert_allclose(np.asarray(out.delta), delta, rtol=1e-9)
    # The latent is the exact flow's end point, the prior N(0, σ_max² I) at it.
    z = oracle.gaussian_ode_solution(jnp.asarray(x), S_MIN, S_MAX, MEAN, STD)
    np.testing.assert_allclose(np.asarray(out.latent), np.asarray(z), rtol=1e-7)
    np.testing.assert_allclose(np.asarray(out.prior),   # to the solve's rtol = 1e-8
                               _gaussian_logpdf(np.asarray(z), 0.0, S_MAX**2), rtol=1e-8)
    assert np.all(np.asarray(out.stats.success))


def test_gaussian_in_total(gauss64):
  # The density of the data at σ_min, N(x; μ, (s² + σ_min²) I), with the prior
  # N(0, σ_max² I) standing in for the data's own σ_max marginal (for mean μ that
  # costs a zero-mean error of about ‖μ‖/σ_max nats per image, hence μ = 0 here;
  # the test above checks the ODE part with μ ≠ 0 exactly).
  with jax.enable_x64(True):
    x = STD * np.asarray(jax.random.normal(jax.random.key(10), (3, 8, 8, 1), jnp.float64))
    out = gauss64(jnp.zeros_like(MEAN), jnp.asarray(x))
    want = _gaussian_logpdf(x, 0.0, STD**2 + S_MIN**2)
    assert np.all(np.abs(np.asarray(out.log_density) - want) / D < 1e-4)


def test_the_denoisers_range_is_applied_the_nvlabs_way(exact64):
  # A model supporting σ >= 0.01 gives the density at 0.01, whatever is asked below it.
  with jax.enable_x64(True):
    x = jnp.asarray(0.1 + STD[None]) * jnp.ones((2, 1, 1, 1))
    net = Denoiser(ZERO_MEAN, sigma_min=0.01)
    out = exact64(net, x, S_MIN)
    want = _gaussian_logpdf(np.asarray(x), 0.0, STD**2 + 0.01**2)
    assert np.all(np.abs(np.asarray(out.log_density) - want) / D < 1e-4)


def test_gaussian_mixture_against_its_density(exact64):
  means = np.zeros((3, 8, 8, 1))       # mean zero overall, components far from it
  means[0, :, :4], means[1, :, :4], means[2, :, 4:] = 0.5, -0.5, 0.0
  stds, weights = np.array([0.3, 0.2, 0.4]), np.array([0.3, 0.3, 0.4])
  with jax.enable_x64(True):
    den = oracle.gmm_denoiser(jnp.asarray(means), jnp.asarray(stds), jnp.asarray(weights))
    x = np.array(oracle.gmm_sample(jax.random.key(1), 4, jnp.asarray(means),
                                   jnp.asarray(stds), jnp.asarray(weights)).x)
    x[3] = 0.0                                        # and a point between the modes
    out = exact64(den, jnp.asarray(x), S_MIN)
    # The ODE part exactly: the mixture's own density at σ_max at the latent, plus Δ.
    at_max = _gmm_logpdf(np.asarray(out.latent), means, stds, weights, S_MAX)
    np.testing.assert_allclose(at_max + np.asarray(out.delta),
                               _gmm_logpdf(x, means, stds, weights, S_MIN),
                               rtol=0, atol=1e-6 * D)
    # With the N(0, σ_max² I) prior in its place: within 1e-4 nats per dimension.
    err = np.abs(np.asarray(out.log_density) - _gmm_logpdf(x, means, stds, weights, S_MIN))
    assert np.all(err / D < 1e-4), err / D


def test_hutchinson_is_unbiased():
  means = np.zeros((2, 8, 8, 1))
  means[0], means[1] = 0.4, -0.4
  den = oracle.gmm_denoiser(jnp.asarray(means, jnp.float32), jnp.asarray([0.3, 0.5]),
                            jnp.asarray([0.5, 0.5], jnp.float32))
  x = jnp.full((1, 8, 8, 1), 0.1) * jnp.ones((64, 1, 1, 1))   # one point, 64 probe draws
  opts = dict(rtol=1e-6, atol=1e-6)
  exact, *estimates = jax.jit(lambda x, k: [
      likelihood.log_likelihood(den, x[:1], None, **opts)] + [
      likelihood.log_likelihood(den, x, k, divergence="hutchinson", probe=probe, **opts)
      for probe in likelihood.PROBES])(x, jax.random.key(2))
  for probe, est in zip(likelihood.PROBES, estimates):
    est = np.asarray(est, np.float64)
    se = est.std(ddof=1) / math.sqrt(est.size)
    assert se > 0, probe                              # the probes do vary the estimate
    assert abs(est.mean() - float(exact[0])) < 3 * se, (probe, est.mean(), exact, se)


def test_rademacher_exact_for_isotropic_jacobian_and_chunks_and_reverse_mode_agree():
  # For isotropic Gaussian data ∂D/∂x = c I, and vᵀ c I v = c d for every ±1 probe;
  # the exact trace in chunks of 5 basis vectors is the same; and a model with a
  # custom_vjp inside (no forward-mode rule, as edmjax.nn's conv2d) is differentiated
  # in reverse mode by 'auto' (the path autodiff='reverse' takes), to the same value.
  den = oracle.gaussian_denoiser(0.0, 0.5)

  @jax.custom_vjp
  def vjp_only(x, sigma):
    return den(x, sigma)

  vjp_only.defvjp(lambda x, s: (den(x, s), (x, s)),
                  lambda res, g: jax.vjp(den, *res)[1](g))
  with jax.enable_x64(True):
    x = jax.random.normal(jax.random.key(3), (2, 8, 8, 1), jnp.float64) * 0.5
    opts = dict(rtol=1e-9, atol=1e-9)
    runs = jax.jit(lambda x, k: (
        likelihood.log_likelihood(den, x, None, **opts),
        likelihood.log_likelihood(den, x, k, divergence="hutchinson", **opts),
        likelihood.log_likelihood(den, x, None, chunk_size=5, **opts),
        likelihood.log_likelihood(vjp_only, x, None, **opts)))(x, jax.random.key(4))
    for other in runs[1:]:
      np.testing.assert_allclose(np.asarray(other), np.asarray(runs[0]), rtol=1e-12)
    with pytest.raises(TypeError, match="custom_vjp"):
      likelihood.log_likelihood(vjp_only, x, None, autodiff="forward")


def test_bits_per_dim_equals_the_exact_probability_of_each_bin():
  # A Gaussian model: the probability of an 8-bit image is a product of normal-CDF
  # differences over each level's bin [x/127.5 − 1 ∓ 1/255] (variance s² + σ_min²).
  std = 0.5
  den = oracle.gaussian_denoiser(0.0, std)
  opts = dict(rtol=1e-8, atol=1e-8)
  draws = 64                      # dequantization draws per image (one per row)
  with jax.enable_x64(True):
    images = np.asarray(jax.random.randint(jax.random.key(5), (3, 8, 8, 1), 40, 216),
                        np.uint8)
    rows = np.repeat(images, draws, axis=0)
    key = jax.random.key(6)
    bpd, logp = jax.jit(lambda im, k: (
        likelihood.bits_per_dim(den, im, k, dtype=jnp.float64, **opts),
        likelihood.log_likelihood(den, likelihood.dequantize(im, k, jnp.float64), **opts)
    ))(rows, key)
  # The offset: bpd = −log p(z)/(d ln 2) + log₂ 127.5, the volume of one bin (2/255).
  np.testing.assert_allclose(np.asarray(bpd), -np.asarray(logp) / (D * math.log(2))
                             + math.log2(127.5), rtol=1e-12)
  centre = images / 127.5 - 1.0
  var = std**2 + S_MIN**2
  p = (scipy_stats.norm.cdf(centre + 1 / 255, 0.0, math.sqrt(var))
       - scipy_stats.norm.cdf(centre - 1 / 255, 0.0, math.sqrt(var)))
  exact = -np.sum(np.log2(p), axis=(1, 2, 3)) / D
  # One draw of u estimates the bound E_u[−log₂ p(z)]/d + log₂ 127.5 without bias;
  # for this model the bound is closed-form (z uniform on a bin of width w = 2/255
  # has E(z − μ)² = (c − μ)² + w²/12), and above the exact value by Jensen's gap,
  # about w²/(24 v ln 2) ≈ 1.5e-5 bits/dim.
  bound = (-np.sum(-0.5 * np.log(2 * np.pi * var) - (centre**2 + (2 / 255)**2 / 12)
                   / (2 * var), axis=(1, 2, 3)) / (D * math.log(2)) + math.log2(127.5))
  assert np.all(bound >= exact) and np.all(bound - exact < 2e-5)
  per_image = np.asarray(bpd).reshape(3, draws)
  se = per_image.std(axis=1, ddof=1) / math.sqrt(draws)
  assert np.all(np.abs(per_image.mean(axis=1) - bound) < 3 * se), (per_image.mean(1), bound, se)
  assert np.all(se < 2e-4)


def test_dequantization_fills_each_levels_bin_uniformly():
  levels = jnp.arange(256, dtype=jnp.uint8).reshape(1, 16, 16, 1) * jnp.ones(
      (64, 1, 1, 1), jnp.uint8)
  z = np.asarray(jax.jit(likelihood.dequantize)(levels, jax.random.key(8)), np.float64)
  centre = np.asarray(levels) / 127.5 - 1.0
  offset = (z - centre) * 127.5                      # u − 1/2, in units of one level
  assert offset.min() >= -0.5 and offset.max() < 0.5
  np.testing.assert_array_equal(np.rint((z + 1) * 127.5), np.asarray(levels))
  assert abs(offset.mean()) < 3 * math.sqrt(1 / 12 / offset.size)
  assert z.min() >= -1 - 1 / 255 and z.max() < 1 + 1 / 255


def test_bad_input_names_the_option():
  den = oracle.gaussian_denoiser(0.0, 0.5)
  x = jnp.zeros((1, 4, 4, 1))
  with pytest.raises(ValueError, match="divergence='trace'"):
    likelihood.log_likelihood(den, x, divergence="trace")
  with pytest.raises(ValueError, match="hutchinson"):
    likelihood.log_likelihood(den, x, None, divergence="hutchinson")
  with pytest.raises(ValueError, match="sigma_min"):
    likelihood.log_likelihood(den, x, sigma_min=80.0, sigma_max=0.002)   # reversed
  with pytest.raises(ValueError, match="ε-model"):
    likelihood.log_likelihood(EpsModel(lambda x, t: x, np.full(10, 0.01)), x)
  with pytest.raises(ValueError, match="round_sigma"):
    likelihood.log_likelihood(Denoiser(den, round_sigma=lambda s: s), x)
  with pytest.raises(ValueError, match="integers"):
    likelihood.bits_per_dim(den, x, jax.random.key(0))
  with pytest.raises(ValueError, match="0..255"):
    likelihood.bits_per_dim(den, jnp.full((1, 4, 4, 1), 300, jnp.int32), jax.random.key(0))
