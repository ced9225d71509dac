"""Facts about the ideal denoisers of edmjax.oracle.

Each test checks D* against an independent computation: quadrature of Bayes' rule,
Tweedie's formula by autodiff, a naive full softmax, or the ODE it must solve.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from edmjax import oracle


def _normal(seed, shape, dtype=np.float32):
  """Test data from NumPy's generator (eager jax.random compiles every op)."""
  return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), dtype)


def _uniform(seed, shape, dtype=np.float32):
  """Uniform test data in [-1, 1) from NumPy's generator."""
  return jnp.asarray(np.random.default_rng(seed).uniform(-1, 1, shape), dtype)


def _gmm_params(dtype=np.float64):
  means = np.stack([np.full((2, 2, 1), -1.0), np.full((2, 2, 1), 0.5),
                    np.array([[[2.0], [0.0]], [[1.0], [-2.0]]])]).astype(dtype)
  stds = np.array([0.3, 0.6, 0.2], dtype)
  weights = np.array([0.5, 0.3, 0.2], dtype)
  return means, stds, weights


def _log_p_sigma(x, sigma, means, stds, weights):
  """log p_σ(x) of one NHWC image under the noisy mixture (normalised)."""
  d = x.size
  var = stds**2 + sigma**2
  dist2 = jnp.sum(jnp.square(x[None] - means), axis=(1, 2, 3))
  return jax.nn.logsumexp(jnp.log(weights) - 0.5 * d * jnp.log(2 * jnp.pi * var)
                          - 0.5 * dist2 / var)


# ----------------------------------------------------------------------------- Gaussian


def test_gaussian_denoiser_equals_quadrature_posterior_mean():
  # 1-pixel images: E[y | x] by quadrature of p(y) N(x; y, σ²) over a fine grid.
  with jax.enable_x64(True):
    m, s = 0.3, 0.7
    x = np.array([-2.0, 0.1, 1.5, 4.0]).reshape(4, 1, 1, 1)
    sigma = np.array([0.1, 0.5, 1.0, 3.0])
    y = np.linspace(-12, 12, 200_001)
    logw = (-0.5 * ((y[None] - m) / s) ** 2
            - 0.5 * ((x.reshape(4, 1) - y[None]) / sigma[:, None]) ** 2)
    w = np.exp(logw - logw.max(axis=1, keepdims=True))
    expected = (w @ y / w.sum(axis=1)).reshape(4, 1, 1, 1)
    got = oracle.gaussian_denoiser(m, s)(jnp.asarray(x), jnp.asarray(sigma))
    assert got.dtype == jnp.float64
    chex.assert_trees_all_close(got, expected, rtol=1e-9, atol=1e-9)


def test_gaussian_denoiser_image_mean_and_dtype():
  mean = np.arange(12, dtype=np.float32).reshape(2, 3, 2) / 10
  denoise = oracle.gaussian_denoiser(mean, 0.5)
  x = jnp.ones((3, 2, 3, 2), jnp.float32)
  sigma = jnp.array([0.0, 0.5, 1e6], jnp.float32)
  out = jax.jit(denoise)(x, sigma)
  chex.assert_shape(out, (3, 2, 3, 2))
  assert out.dtype == jnp.float32
  chex.assert_trees_all_close(out[0], x[0])                   # σ = 0: identity
  chex.assert_trees_all_close(out[1], (mean + x[1]) / 2)      # s² = σ²: halfway
  chex.assert_trees_all_close(out[2], jnp.asarray(mean), atol=1e-6)  # σ → ∞: mean


def test_gaussian_ode_solution_solves_the_probability_flow_ode():
  # d x(σ)/dσ must equal (x − D*(x; σ))/σ at every σ (Karras et al. 2022, Eq. 1).
  with jax.enable_x64(True):
    m, s = 0.2, 0.4
    denoise = oracle.gaussian_denoiser(m, s)
    x1 = _normal(0, (3, 2, 2, 1), np.float64)
    sig1 = jnp.array([80.0, 5.0, 0.3])

    def path(sig2):
      return oracle.gaussian_ode_solution(x1, sig1, sig2, m, s)

    for sig2 in (jnp.array([10.0, 2.0, 0.05]), jnp.array([0.5, 0.5, 0.5])):
      x2 = path(sig2)
      _, dx = jax.jvp(path, (sig2,), (jnp.ones(3),))
      rhs = (x2 - denoise(x2, sig2)) / sig2.reshape(3, 1, 1, 1)
      chex.assert_trees_all_close(dx, rhs, rtol=1e-10, atol=1e-12)
    # Starting point is kept and the flow composes: σ1 → σa → σ2 equals σ1 → σ2.
    chex.assert_trees_all_close(path(sig1), x1, rtol=1e-12)
    mid = oracle.gaussian_ode_solution(x1, sig1, 1.0, m, s)
    chex.assert_trees_all_close(oracle.gaussian_ode_solution(mid, 1.0, 0.0, m, s),
                                path(0.0), rtol=1e-12)


# ----------------------------------------------------------------------------- mixture


def test_gmm_denoiser_is_tweedie_of_the_noisy_density():
  # Tweedie: D*(x; σ) = x + σ² ∇ log p_σ(x), with ∇ by autodiff of the mixture density.
  with jax.enable_x64(True):
    means, stds, weights = _gmm_params()
    denoise = jax.jit(oracle.gmm_denoiser(means, stds, weights))
    x = 2.0 * _normal(1, (5, 2, 2, 1), np.float64)
    sigma = jnp.array([0.01, 0.2, 0.7, 2.0, 30.0])
    score = jax.vmap(jax.grad(_log_p_sigma), (0, 0, None, None, None))(
        x, sigma, jnp.asarray(means), jnp.asarray(stds), jnp.asarray(weights))
    expected = x + sigma.reshape(5, 1, 1, 1) ** 2 * score
    out = denoise(x, sigma)
    assert out.dtype == jnp.float64
    chex.assert_trees_all_close(out, expected, rtol=1e-9, atol=1e-10)


def test_gmm_denoiser_float32_is_stable_at_small_sigma_and_far_inputs():
  means, stds, weights = _gmm_params(np.float32)
  denoise = jax.jit(oracle.gmm_denoiser(means, stds, weights))
  x = jnp.concatenate([jnp.full((1, 2, 2, 1), 300.0), jnp.asarray(means[2:3])])
  out = denoise(x, jnp.array([1e-3, 1e-4], jnp.float32))
  assert out.dtype == jnp.float32
  assert bool(jnp.all(jnp.isfinite(out)))
  chex.assert_trees_all_close(out[1], means[2], atol=1e-6)  # D*(m_k; σ→0) = m_k


def test_gmm_with_one_component_is_the_gaussian_denoiser():
  means = np.full((1, 2, 2, 1), 0.3)
  gmm = oracle.gmm_denoiser(means, np.array([0.5]), np.array([1.0]))
  gauss = oracle.gaussian_denoiser(0.3, 0.5)
  x = _normal(2, (4, 2, 2, 1))
  sigma = jnp.array([0.05, 0.5, 2.0, 50.0])
  chex.assert_trees_all_close(gmm(x, sigma), gauss(x, sigma), rtol=1e-5, atol=1e-6)


def test_gmm_sample_frequencies_and_assignment():
  means = np.stack([np.full((2, 2, 1), c) for c in (-4.0, 0.0, 4.0)])
  stds = np.array([0.3, 0.5, 0.2])
  weights = np.array([0.2, 0.5, 0.3])
  n = 20_000
  sample = jax.jit(oracle.gmm_sample, static_argnums=1)(
      jax.random.key(3), n, means, stds, weights)
  chex.assert_shape(sample.x, (n, 2, 2, 1))
  freq = np.bincount(np.asarray(sample.component), minlength=3) / n
  # 4.5 standard errors of a binomial proportion.
  np.testing.assert_allclose(freq, weights, atol=4.5 * np.sqrt(0.25 / n))
  for k in range(3):
    xs = np.asarray(sample.x)[np.asarray(sample.component) == k]
    assert abs(xs.mean() - means[k, 0, 0, 0]) < 0.02
    assert abs(xs.std() / stds[k] - 1) < 0.03
  # Components 8σ apart: the σ → 0 assignment recovers every draw's component.
  assign = oracle.gmm_assign(sample.x, means, stds, weights)
  np.testing.assert_array_equal(assign, sample.component)


# ----------------------------------------------------------------------------- data set


def _naive_dataset_denoiser(x, sigma, data):
  """Full softmax over the whole data set at once (the definition)."""
  dist2 = jnp.sum(jnp.square(x[:, None] - data[None]), axis=(2, 3, 4))
  w = jax.nn.softmax(-dist2 / (2 * sigma[:, None] ** 2), axis=1)
  return jnp.einsum("bn,nhwc->bhwc", w, data)


@pytest.mark.parametrize("chunk_size", [1, 7, 50, 1000])
def test_dataset_denoiser_streaming_equals_full_softmax(chunk_size):
  # 50 points: chunk 7 pads the last chunk with 6 masked entries; 1000 > N.
  with jax.enable_x64(True):
    data = _uniform(4, (50, 3, 2, 1), np.float64)
    x = _normal(5, (6, 3, 2, 1), np.float64)
    sigma = jnp.array([0.01, 0.05, 0.2, 1.0, 10.0, 1e4])
    got = oracle.dataset_denoiser(data, chunk_size=chunk_size)(x, sigma)
    chex.assert_trees_all_close(got, _naive_dataset_denoiser(x, sigma, data),
                                rtol=1e-12, atol=1e-12)
    # σ → ∞: the data mean; σ → 0: the nearest data point.
    chex.assert_trees_all_close(got[-1], jnp.mean(data, axis=0), atol=1e-8)
    nearest = jnp.argmin(jnp.sum(jnp.square(x[:1, None] - data[None]), (2, 3, 4)))
    chex.assert_trees_all_close(
        oracle.dataset_denoiser(data, chunk_size)(x[:1], jnp.array([1e-4]))[0],
        data[nearest])


def test_dataset_denoiser_on_digits_batch_256_under_jit():
  from sklearn.datasets import load_digits
  digits = load_digits().images.astype(np.float32)[..., None] / 8.0 - 1.0  # [-1, 1]
  chex.assert_shape(digits, (1797, 8, 8, 1))

  @jax.jit
  @chex.assert_max_traces(n=1)
  def denoise(data, x, sigma):
    # Built from an argument, so the data set is not a compile-time constant.
    return oracle.dataset_denoiser(data, chunk_size=256)(x, sigma)

  rng = np.random.default_rng(6)
  y = digits[rng.integers(0, 1797, 256)]
  sigma = np.exp(rng.uniform(np.log(0.05), np.log(20.0), 256)).astype(np.float32)
  x = (y + sigma.reshape(256, 1, 1, 1) * rng.standard_normal(y.shape)).astype(
      np.float32)
  out = denoise(digits, x, sigma)
  out2 = denoise(digits, x + 0.01, sigma * 1.1)  # new values: no retrace
  chex.assert_shape([out, out2], (256, 8, 8, 1))
  # Naive float64 reference in NumPy: ‖x‖² − 2x·y + ‖y‖² is accurate in float64.
  xf = np.asarray(x, np.float64).reshape(256, -1)
  yf = digits.astype(np.float64).reshape(1797, -1)
  logits = -(np.sum(xf**2, 1)[:, None] - 2 * xf @ yf.T + np.sum(yf**2, 1)[None]) / (
      2 * np.asarray(sigma, np.float64)[:, None] ** 2)
  w = np.exp(logits - logits.max(axis=1, keepdims=True))
  expected = ((w / w.sum(axis=1, keepdims=True)) @ yf).reshape(256, 8, 8, 1)
  chex.assert_trees_all_close(out, np.asarray(expected, np.float32), atol=2e-4)


def test_dataset_loss_lower_bound_two_points_matches_quadrature():
  # Data {−a, +a} (one pixel): D*(x; σ) = a·tanh(a x / σ²); by symmetry the loss is
  # E_n (a tanh(a (a + σn)/σ²) − a)², a 1-D integral.
  a = 0.8
  data = np.array([-a, a], np.float32).reshape(2, 1, 1, 1)
  sigmas = np.array([0.1, 0.5, 1.0, 3.0], np.float32)
  bound = jax.jit(oracle.dataset_loss_lower_bound, static_argnums=3)(
      jax.random.key(7), data, sigmas, 20_000)
  chex.assert_shape([bound.loss, bound.stderr], (4,))
  n = np.linspace(-12, 12, 100_001)
  pdf = np.exp(-0.5 * n**2) / np.sqrt(2 * np.pi)
  exact = [np.trapezoid((a * np.tanh(a * (a + s * n) / s**2) - a) ** 2 * pdf, n)
           for s in sigmas.astype(np.float64)]
  assert np.all(np.abs(np.asarray(bound.loss) - exact)
                <= 4.5 * np.asarray(bound.stderr) + 1e-6)
  # Limits: 0 at small σ, the data variance a² at large σ.
  assert exact[0] < 1e-6 and exact[-1] > 0.5 * a**2


def test_dataset_loss_lower_bound_limits():
  data = _uniform(8, (10, 2, 2, 1))
  bound = oracle.dataset_loss_lower_bound(jax.random.key(9), data,
                                          jnp.array([1e-3, 1e3]), 500)
  assert float(bound.loss[0]) < 1e-7                     # σ → 0: nothing to remove
  # (10 points in 4 dimensions are ≫ 1e-3 apart, so D* returns y itself.)
  var = float(jnp.mean(jnp.var(data, axis=0)))           # σ → ∞: D* = data mean
  assert abs(float(bound.loss[1]) - var) < 4.5 * float(bound.stderr[1])


# ----------------------------------------------------------------------------- errors


def test_bad_inputs_raise_value_errors_naming_the_value():
  means, stds, weights = _gmm_params()
  with pytest.raises(ValueError, match=r"shape \(5, 2, 2\)"):
    oracle.dataset_denoiser(np.zeros((5, 2, 2)))
  with pytest.raises(ValueError, match="chunk_size=0"):
    oracle.dataset_denoiser(np.zeros((5, 2, 2, 1)), chunk_size=0)
  with pytest.raises(ValueError, match=r"stds must be > 0, got -0\.1"):
    oracle.gmm_denoiser(means, np.array([0.3, -0.1, 0.2]), weights)
  with pytest.raises(ValueError, match=r"sum 0\.9"):
    oracle.gmm_denoiser(means, stds, np.array([0.5, 0.2, 0.2]))
  with pytest.raises(ValueError, match=r"weights must be >= 0, got -0\.5"):
    oracle.gmm_denoiser(means, stds, np.array([1.0, 0.5, -0.5]))
  with pytest.raises(ValueError, match=r"shape \(3,\)"):
    oracle.gmm_denoiser(means, stds[:2], weights)
  with pytest.raises(ValueError, match="means must be a 4-D NHWC"):
    oracle.gmm_sample(jax.random.key(0), 4, means[0], stds, weights)
  with pytest.raises(ValueError, match=r"std must be > 0, got 0\.0"):
    oracle.gaussian_denoiser(0.0, 0.0)
  with pytest.raises(ValueError, match=r"sigmas must be > 0, got 0\.0"):
    oracle.dataset_loss_lower_bound(jax.random.key(0), np.zeros((3, 1, 1, 1)),
                                    np.array([0.5, 0.0]), 8)
