"""Ideal denoisers in closed form: Gaussian, Gaussian mixture and finite data set.

For data y ~ p_data and x = y + σ n with n ~ N(0, I), the denoiser that minimises the
L2 denoising loss E‖D(y + σn; σ) − y‖² is the posterior mean

.. math::
  D^*(x; σ) = E[y \\mid x] = \\frac{∫ y\\, N(x; y, σ^2 I)\\, p(y)\\, dy}
                                  {∫ N(x; y, σ^2 I)\\, p(y)\\, dy},

and the probability-flow ODE of Karras et al. 2022 (EDM, arXiv 2206.00364, Eq. 1 with
σ(t) = t, s(t) = 1) reads dx/dσ = (x − D*(x; σ))/σ. This module gives D* exactly for
three families of data so that samplers, losses and diagnostics can be tested against
known answers:

* `gaussian_denoiser`: y ~ N(m, s² I) (Karras et al. 2022, Appendix B.3),
* `gmm_denoiser`: a mixture of isotropic Gaussians,
* `dataset_denoiser`: the empirical distribution of a finite data set (Karras et al.
  2022, Appendix B.3, Eq. 57), streamed over the data so memory stays flat in N.

A denoiser is a callable `denoise(x, sigma) -> D(x; sigma)`; `x` is NHWC
`(batch, height, width, channels)` and `sigma` has shape `(batch,)` (a scalar is
broadcast). Every function follows the dtype of `x` (float64 works inside
`with jax.enable_x64(True):`), is pure and can be jitted by the caller.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from edmjax import _arrays
from edmjax._arrays import Array
from edmjax import _checks

Denoiser = Callable[[Array, Array], Array]

_HIGHEST = jax.lax.Precision.HIGHEST


# ----------------------------------------------------------------------------- helpers


def _batch_sigma(sigma: Any, x: Array) -> Array:
  """`sigma` as a `(batch,)` vector in the dtype of `x` (a scalar is broadcast)."""
  sigma = jnp.reshape(jnp.asarray(sigma, dtype=x.dtype), (-1,))
  return jnp.broadcast_to(sigma, (x.shape[0],))


def _as_image(name: str, v: Any, dtype) -> Array:
  """A scalar or image-shaped parameter made broadcastable against NHWC arrays."""
  v = jnp.asarray(v, dtype=dtype)
  if v.ndim == 0 or v.ndim == 4:
    return v
  if v.ndim == 3:
    return v[None]
  raise ValueError(
      f"{name} must be a scalar, an image (height, width, channels) or an NHWC "
      f"array, got shape {v.shape}.")


def _check_image_param(name: str, v: Any) -> None:
  shape = np.shape(v)
  if len(shape) not in (0, 3, 4):
    raise ValueError(
        f"{name} must be a scalar, an image (height, width, channels) or an NHWC "
        f"array, got shape {shape}.")


# ----------------------------------------------------------------------------- Gaussian


def gaussian_denoiser(mean: Any, std: Any) -> Denoiser:
  """Ideal denoiser of Gaussian data y ~ N(mean, std² I).

  .. math::
    D^*(x; σ) = m + \\frac{s^2}{s^2 + σ^2} (x − m).

  Args:
    mean: data mean m: a scalar or an image `(H, W, C)` (or NHWC with batch 1).
    std: data standard deviation s > 0: a scalar (isotropic) or image-shaped
      (independent pixels; the formula is applied per element).

  Returns:
    `denoise(x, sigma)` for NHWC `x` and `sigma` of shape `(batch,)`.

  Raises:
    ValueError: if `std` <= 0 or a parameter has an unsupported shape.

  Example:
    >>> denoise = gaussian_denoiser(0.0, 0.5)
    >>> denoise(jnp.ones((2, 4, 4, 1)), jnp.array([0.5, 1.0]))[:, 0, 0, 0]
    Array([0.5, 0.2], dtype=float32)
  """
  _check_image_param("mean", mean)
  _check_image_param("std", std)
  _checks.check_positive("std", std)

  def denoise(x: Array, sigma: Array) -> Array:
    m = _as_image("mean", mean, x.dtype)
    s2 = jnp.square(_as_image("std", std, x.dtype))
    sig2 = _arrays.bcast(jnp.square(_batch_sigma(sigma, x)))
    return m + s2 / (s2 + sig2) * (x - m)

  return denoise


def gaussian_ode_solution(x: Array, sigma_from: Any, sigma_to: Any, mean: Any,
                          std: Any) -> Array:
  """Exact probability-flow ODE map for Gaussian data N(mean, std² I).

  Under dx/dσ = (x − D*(x; σ))/σ (Karras et al. 2022, Eq. 1 with σ(t) = t, s(t) = 1)
  and D* of `gaussian_denoiser`, the deviation from the mean grows like the marginal
  standard deviation, so

  .. math::
    x(σ_2) = m + (x(σ_1) − m) \\sqrt{\\frac{s^2 + σ_2^2}{s^2 + σ_1^2}}.

  Args:
    x: NHWC states x(σ_from).
    sigma_from: σ₁, a scalar or `(batch,)`.
    sigma_to: σ₂ (may be 0), a scalar or `(batch,)`.
    mean: data mean (scalar or image-shaped).
    std: data standard deviation (scalar or image-shaped), > 0.

  Returns:
    x(σ_to), shaped and typed like `x`.
  """
  _checks.check_nhwc("x", x)
  _check_image_param("mean", mean)
  _check_image_param("std", std)
  _checks.check_positive("std", std)
  _checks.check_nonnegative("sigma_from", sigma_from)
  _checks.check_nonnegative("sigma_to", sigma_to)
  m = _as_image("mean", mean, x.dtype)
  s2 = jnp.square(_as_image("std", std, x.dtype))
  s1 = _arrays.bcast(jnp.square(_batch_sigma(sigma_from, x)))
  s2_to = _arrays.bcast(jnp.square(_batch_sigma(sigma_to, x)))
  return m + (x - m) * jnp.sqrt((s2 + s2_to) / (s2 + s1))


# ----------------------------------------------------------------------------- mixture


def _check_gmm(means: Any, stds: Any, weights: Any) -> None:
  _checks.check_nhwc("means", means)
  k = np.shape(means)[0]
  if np.shape(stds) != (k,):
    raise ValueError(
        f"stds must have shape ({k},) (one per component of means), got "
        f"{np.shape(stds)}.")
  if np.shape(weights) != (k,):
    raise ValueError(
        f"weights must have shape ({k},) (one per component of means), got "
        f"{np.shape(weights)}.")
  _checks.check_positive("stds", stds)
  _checks.check_nonnegative("weights", weights)
  w = _checks.concrete_value(weights)
  if w is not None and not np.isclose(np.sum(w, dtype=np.float64), 1.0,
                                      rtol=0.0, atol=1e-5):
    raise ValueError(
        f"weights must sum to 1, got sum {float(np.sum(w, dtype=np.float64)):.8g} "
        f"for weights {w.tolist()!r}.")


def gmm_log_responsibilities(x: Array, sigma: Any, means: Array, stds: Array,
                             weights: Array) -> Array:
  """Log posterior component probabilities log p(k | x) of a noisy sample.

  Component k of the noisy data x = y + σn is N(m_k, (s_k² + σ²) I), so with
  d = H·W·C,

  .. math::
    \\log r_k(x) = \\log w_k − \\tfrac{d}{2} \\log(s_k^2 + σ^2)
                  − \\frac{‖x − m_k‖^2}{2 (s_k^2 + σ^2)} − \\mathrm{logsumexp}(·),

  computed in the dtype of `x`.

  Args:
    x: NHWC noisy samples.
    sigma: noise levels `(batch,)` (σ = 0 gives the posterior of clean data).
    means: component means `(K, H, W, C)`.
    stds: component standard deviations `(K,)`.
    weights: mixture weights `(K,)`, summing to 1.

  Returns:
    `(batch, K)` log responsibilities.
  """
  dtype = x.dtype
  means = jnp.asarray(means, dtype)
  stds = jnp.asarray(stds, dtype)
  weights = jnp.asarray(weights, dtype)
  d = x.shape[1] * x.shape[2] * x.shape[3]
  var = jnp.square(stds)[None, :] + jnp.square(_batch_sigma(sigma, x))[:, None]
  dist2 = jnp.sum(jnp.square(x[:, None] - means[None]), axis=(2, 3, 4))  # (B, K)
  logits = (jnp.log(weights)[None, :] - 0.5 * d * jnp.log(var)
            - 0.5 * dist2 / var)
  return logits - jax.nn.logsumexp(logits, axis=1, keepdims=True)


def gmm_denoiser(means: Any, stds: Any, weights: Any) -> Denoiser:
  """Ideal denoiser of a mixture of isotropic Gaussians Σ_k w_k N(m_k, s_k² I).

  .. math::
    D^*(x; σ) = \\sum_k r_k(x; σ) \\Big[m_k + \\frac{s_k^2}{s_k^2 + σ^2}(x − m_k)\\Big],

  with r_k the posterior responsibilities of `gmm_log_responsibilities`
  (log-sum-exp in the dtype of `x`).

  Args:
    means: component means `(K, H, W, C)`.
    stds: component standard deviations `(K,)`, each > 0.
    weights: mixture weights `(K,)`, non-negative, summing to 1.

  Returns:
    `denoise(x, sigma)` for NHWC `x` of image shape `(H, W, C)`.

  Raises:
    ValueError: if `means` is not 4-D, a std is <= 0, a weight is negative, the
      weights do not sum to 1 or the shapes disagree.
  """
  _check_gmm(means, stds, weights)

  def denoise(x: Array, sigma: Array) -> Array:
    dtype = x.dtype
    m = jnp.asarray(means, dtype)
    s2 = jnp.square(jnp.asarray(stds, dtype))[None, :]                 # (1, K)
    sig2 = jnp.square(_batch_sigma(sigma, x))[:, None]                 # (B, 1)
    r = jnp.exp(gmm_log_responsibilities(x, sigma, means, stds, weights))
    # Σ_k r_k [m_k σ²/(s_k²+σ²)] + x Σ_k r_k s_k²/(s_k²+σ²).
    coef_x = jnp.sum(r * s2 / (s2 + sig2), axis=1)                     # (B,)
    coef_m = r * sig2 / (s2 + sig2)                                     # (B, K)
    mean_part = jnp.einsum("bk,khwc->bhwc", coef_m, m, precision=_HIGHEST)
    return mean_part + _arrays.bcast(coef_x) * x

  return denoise


class GMMSample(NamedTuple):
  """Exact draws from a Gaussian mixture."""
  x: Array          # (n, H, W, C), dtype of means
  component: Array  # (n,), int32: the component each draw came from


def gmm_sample(key: Array, n: int, means: Any, stds: Any,
               weights: Any) -> GMMSample:
  """Draws `n` exact samples y = m_k + s_k z, k ~ Categorical(w), z ~ N(0, I).

  Args:
    key: a jax.random key.
    n: number of samples (static).
    means: component means `(K, H, W, C)`; the samples follow its dtype.
    stds: `(K,)` standard deviations > 0.
    weights: `(K,)` weights summing to 1.

  Returns:
    `GMMSample(x, component)`: NHWC samples and their component indices.
  """
  _check_gmm(means, stds, weights)
  _checks.check_int_at_least("n", n, 1)
  means = jnp.asarray(means)
  dtype = means.dtype if jnp.issubdtype(means.dtype, jnp.floating) else jnp.float32
  means = means.astype(dtype)
  k_comp, k_noise = jax.random.split(key)
  logw = jnp.log(jnp.asarray(weights, dtype))
  comp = jax.random.categorical(k_comp, logw, shape=(n,)).astype(jnp.int32)
  z = jax.random.normal(k_noise, (n,) + means.shape[1:], dtype)
  x = means[comp] + _arrays.bcast(jnp.asarray(stds, dtype)[comp]) * z
  return GMMSample(x=x, component=comp)


def gmm_assign(x: Array, means: Any, stds: Any, weights: Any) -> Array:
  """Most probable component of clean samples: argmax_k p(k | y) at σ → 0.

  For well separated components this is the component a sample was drawn from, so
  the fraction of sampler outputs assigned to k estimates the weight the sampler gives
  to component k (to compare with w_k).

  Args:
    x: NHWC samples.
    means, stds, weights: the mixture, as in `gmm_denoiser`.

  Returns:
    `(batch,)` int32 component indices.
  """
  _checks.check_nhwc("x", x)
  _check_gmm(means, stds, weights)
  logr = gmm_log_responsibilities(x, jnp.zeros((), x.dtype), means, stds, weights)
  return jnp.argmax(logr, axis=1).astype(jnp.int32)


# ----------------------------------------------------------------------------- data set


def dataset_denoiser(data: Any, chunk_size: int = 256) -> Denoiser:
  """Ideal denoiser of the empirical distribution of a finite data set {y_i}.

  .. math::
    D^*(x; σ) = \\sum_i \\mathrm{softmax}_i\\Big(−\\frac{‖x − y_i‖^2}{2σ^2}\\Big) y_i
    \\qquad \\text{(Karras et al. 2022, Eq. 57)}.

  The sum is streamed over the data in chunks of `chunk_size` with an online
  (running-maximum) log-sum-exp in a `lax.scan`, so memory grows with
  `batch × chunk_size`, not with N; the last chunk is padded with masked entries.
  Squared distances are formed from differences (not ‖x‖² − 2x·y + ‖y‖², which
  cancels catastrophically at small σ), in the dtype of `x`. Requires σ > 0.

  To keep a large data set out of the compiled program as a constant, build the
  denoiser inside the jitted function from a `data` argument.

  Args:
    data: `(N, H, W, C)` data set.
    chunk_size: data points per step of the scan (static).

  Returns:
    `denoise(x, sigma)` for NHWC `x` of image shape `(H, W, C)`.

  Raises:
    ValueError: if `data` is not 4-D or `chunk_size` < 1.
  """
  _checks.check_nhwc("data", data)
  _checks.check_int_at_least("chunk_size", chunk_size, 1)
  data = jnp.asarray(data)
  n = data.shape[0]
  if n < 1:
    raise ValueError(f"data must hold at least one sample, got shape {data.shape}.")
  chunk = min(chunk_size, n)
  num_chunks = -(-n // chunk)
  pad = num_chunks * chunk - n
  chunks = jnp.concatenate(
      [data, jnp.zeros((pad,) + data.shape[1:], data.dtype)], axis=0)
  chunks = jnp.reshape(chunks, (num_chunks, chunk) + data.shape[1:])
  valid = jnp.reshape(jnp.arange(num_chunks * chunk) < n, (num_chunks, chunk))

  def denoise(x: Array, sigma: Array) -> Array:
    dtype = x.dtype
    batch = x.shape[0]
    inv_two_var = 1.0 / (2.0 * jnp.square(_batch_sigma(sigma, x)))      # (B,)

    def step(carry, inputs):
      run_max, run_sum, acc = carry
      ys, ok = inputs
      ys = ys.astype(dtype)
      dist2 = jnp.sum(jnp.square(x[:, None] - ys[None]), axis=(2, 3, 4))  # (B, c)
      logits = jnp.where(ok[None, :], -dist2 * inv_two_var[:, None], -jnp.inf)
      new_max = jnp.maximum(run_max, jnp.max(logits, axis=1))
      scale = jnp.exp(run_max - new_max)                                 # (B,)
      p = jnp.exp(logits - new_max[:, None])                             # (B, c)
      run_sum = run_sum * scale + jnp.sum(p, axis=1)
      acc = (acc * _arrays.bcast(scale)
             + jnp.einsum("bc,chwk->bhwk", p, ys, precision=_HIGHEST))
      return (new_max, run_sum, acc), None

    init = (jnp.full((batch,), -jnp.inf, dtype), jnp.zeros((batch,), dtype),
            jnp.zeros_like(x))
    (_, total, acc), _ = jax.lax.scan(step, init, (chunks, valid))
    return acc / _arrays.bcast(total)

  return denoise


class LossBound(NamedTuple):
  """Monte Carlo estimate of the minimum denoising loss, per noise level."""
  loss: Array    # (S,): E‖D*(y + σn; σ) − y‖² / (H·W·C), per-element mean
  stderr: Array  # (S,): standard error of `loss` over the Monte Carlo samples


def dataset_loss_lower_bound(key: Array, data: Any, sigmas: Any, num_samples: int,
                             *, chunk_size: int = 256) -> LossBound:
  """The irreducible EDM loss of a finite data set, per σ, by Monte Carlo.

  No denoiser can do better on data drawn uniformly from {y_i} than the ideal one, so

  .. math::
    L^*(σ) = \\frac{1}{d} E_{y, n} ‖D^*(y + σn; σ) − y‖^2,
    \\qquad y \\sim \\mathrm{Uniform}\\{y_i\\},\\ n \\sim N(0, I),

  (d = H·W·C, the per-element mean that an unweighted per-element loss averages to)
  is a lower bound of the unweighted per-σ loss of any trained model; multiply by
  λ(σ) for the weighted EDM loss. The same `num_samples` pairs (y, n) are used at
  every σ (common random numbers), which makes the curve over σ smooth.

  Args:
    key: a jax.random key.
    data: `(N, H, W, C)` data set; the estimate follows its floating dtype.
    sigmas: noise levels `(S,)`, each > 0.
    num_samples: Monte Carlo pairs per σ (static); they form one batch for the
      oracle, which streams over the data in chunks of `chunk_size`.
    chunk_size: see `dataset_denoiser`.

  Returns:
    `LossBound(loss, stderr)`, each of shape `(S,)`.
  """
  _checks.check_nhwc("data", data)
  _checks.check_int_at_least("num_samples", num_samples, 1)
  _checks.check_positive("sigmas", sigmas)
  data = jnp.asarray(data)
  dtype = data.dtype if jnp.issubdtype(data.dtype, jnp.floating) else jnp.float32
  data = data.astype(dtype)
  sigmas = jnp.reshape(jnp.asarray(sigmas, dtype), (-1,))
  denoise = dataset_denoiser(data, chunk_size=chunk_size)
  k_idx, k_noise = jax.random.split(key)
  idx = jax.random.randint(k_idx, (num_samples,), 0, data.shape[0])
  y = data[idx]
  n = jax.random.normal(k_noise, y.shape, dtype)

  def one_sigma(sigma):
    d = denoise(y + sigma * n, jnp.full((num_samples,), sigma, dtype))
    err = jnp.mean(jnp.square(d - y), axis=(1, 2, 3))                 # (num_samples,)
    mean = jnp.mean(err)
    if num_samples > 1:
      stderr = jnp.std(err, ddof=1) / np.sqrt(num_samples)
    else:
      stderr = jnp.full((), jnp.nan, dtype)
    return mean, stderr

  loss, stderr = jax.lax.map(one_sigma, sigmas)
  return LossBound(loss=loss, stderr=stderr)
