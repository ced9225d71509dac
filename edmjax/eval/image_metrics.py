"""PSNR and SSIM of NHWC image batches in JAX, equal to scikit-image's definitions.

Both functions return one value per image, shape (batch,), are jittable, and follow
the dtype of their inputs (float32 by default; float64 under `jax.enable_x64`).
Images are NHWC; `data_range` is the distance between the smallest and largest
possible pixel value: 2.0 for the library's images in [-1, 1] (the default), 1.0 for
[0, 1] and 255.0 for [0, 255]. scikit-image infers it from the dtype when it is not
given; pass it explicitly there when comparing.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from edmjax import _checks


def _check_pair(x, y):
  _checks.check_nhwc("x", x)
  _checks.check_nhwc("y", y)
  if tuple(x.shape) != tuple(y.shape):
    raise ValueError(f"x and y must have the same shape, got {tuple(x.shape)} and "
                     f"{tuple(y.shape)}.")


def _float(x, y):
  dtype = jnp.result_type(x, y, jnp.float32)
  if not jnp.issubdtype(dtype, jnp.floating):
    dtype = jnp.float32
  return jnp.asarray(x, dtype), jnp.asarray(y, dtype)


def psnr(x: jax.Array, y: jax.Array, *, data_range: float = 2.0) -> jax.Array:
  """Peak signal-to-noise ratio per image, in dB.

  .. math::

    \\mathrm{PSNR} = 10 \\log_{10} \\frac{R^2}{\\mathrm{MSE}}, \\qquad
    \\mathrm{MSE} = \\frac{1}{HWC} \\sum_{h,w,c} (x_{hwc} - y_{hwc})^2,

  scikit-image's `peak_signal_noise_ratio(x[i], y[i], data_range=R)` for each image.
  Identical images give `inf`.

  Args:
    x: reference images, NHWC (batch, height, width, channels).
    y: test images, same shape.
    data_range: R, the span of possible pixel values (2.0 for [-1, 1]).

  Returns:
    (batch,) PSNR values.
  """
  _check_pair(x, y)
  _checks.check_positive("data_range", data_range)
  x, y = _float(x, y)
  mse = jnp.mean(jnp.square(x - y), axis=(1, 2, 3))
  return 10.0 * jnp.log10(jnp.asarray(data_range, x.dtype) ** 2 / mse)


def _gaussian_taps(sigma: float, truncate: float) -> np.ndarray:
  """`scipy.ndimage.gaussian_filter1d` weights: radius int(truncate·σ + 0.5)."""
  radius = int(truncate * float(sigma) + 0.5)
  t = np.arange(-radius, radius + 1, dtype=np.float64)
  w = np.exp(-0.5 * t * t / float(sigma) ** 2)
  return w / w.sum()


def _filter_1d(x: jax.Array, taps: np.ndarray, axis: int) -> jax.Array:
  """Correlation along `axis` with scipy.ndimage's 'reflect' boundary (d c b a|a b c d)."""
  r = (len(taps) - 1) // 2
  pad = [(0, 0)] * x.ndim
  pad[axis] = (r, r)
  xp = jnp.pad(x, pad, mode="symmetric")
  n = x.shape[axis]
  out = 0.0
  for k, w in enumerate(taps):
    out = out + jnp.asarray(w, x.dtype) * jax.lax.slice_in_dim(xp, k, k + n, axis=axis)
  return out


def ssim(x: jax.Array, y: jax.Array, *, data_range: float = 2.0,
         win_size: int | None = None, K1: float = 0.01, K2: float = 0.03,
         gaussian_weights: bool = False, sigma: float = 1.5,
         use_sample_covariance: bool = True) -> jax.Array:
  """Mean structural similarity per image (Wang et al. 2004), as scikit-image.

  Local statistics come from a window filter :math:`w` (uniform `win_size`² box, or a
  Gaussian of std `sigma` truncated at 3.5σ), applied per channel with 'reflect'
  borders: :math:`\\mu_x = w * x`, :math:`\\sigma_x^2 = c\\,(w * x^2 - \\mu_x^2)`,
  :math:`\\sigma_{xy} = c\\,(w * xy - \\mu_x\\mu_y)` with
  :math:`c = N_P/(N_P - 1)`, :math:`N_P = \\text{win\\_size}^2` when
  `use_sample_covariance` else 1. Then

  .. math::

    \\mathrm{SSIM} = \\frac{(2\\mu_x\\mu_y + C_1)(2\\sigma_{xy} + C_2)}
      {(\\mu_x^2 + \\mu_y^2 + C_1)(\\sigma_x^2 + \\sigma_y^2 + C_2)},
    \\quad C_1 = (K_1 R)^2,\\; C_2 = (K_2 R)^2,

  averaged over the pixels at least (win_size-1)/2 from the border and over channels.
  Equals `skimage.metrics.structural_similarity(x[i], y[i], data_range=R,
  channel_axis=-1, ...)` with the same options (its defaults: win_size=7 uniform,
  K1=0.01, K2=0.03, sample covariance; Wang et al.'s setting is
  `gaussian_weights=True, sigma=1.5, use_sample_covariance=False`).

  Args:
    x: reference images, NHWC.
    y: test images, same shape.
    data_range: R, the span of possible pixel values (2.0 for [-1, 1]).
    win_size: odd window side; default 7, or 2·int(3.5σ + 0.5) + 1 (11 for σ=1.5)
      with Gaussian weights, as scikit-image.
    K1: luminance constant.
    K2: contrast constant.
    gaussian_weights: Gaussian instead of uniform window.
    sigma: std of the Gaussian window.
    use_sample_covariance: normalise local (co)variances by N_P - 1 instead of N_P.

  Returns:
    (batch,) SSIM values.
  """
  _check_pair(x, y)
  _checks.check_positive("data_range", data_range)
  truncate = 3.5
  if win_size is None:
    win_size = 2 * int(truncate * sigma + 0.5) + 1 if gaussian_weights else 7
  _checks.check_int_at_least("win_size", win_size, 3)
  if win_size % 2 != 1:
    raise ValueError(f"win_size must be odd, got {win_size}.")
  if min(x.shape[1], x.shape[2]) < win_size:
    raise ValueError(
        f"images of size {x.shape[1]}x{x.shape[2]} are smaller than "
        f"win_size={win_size}; pass a smaller odd win_size.")
  x, y = _float(x, y)
  if gaussian_weights:
    taps = _gaussian_taps(sigma, truncate)
  else:
    taps = np.full((win_size,), 1.0 / win_size)

  def filt(a):
    return _filter_1d(_filter_1d(a, taps, 1), taps, 2)

  n_p = win_size ** 2
  cov_norm = n_p / (n_p - 1) if use_sample_covariance else 1.0
  ux, uy = filt(x), filt(y)
  uxx, uyy, uxy = filt(x * x), filt(y * y), filt(x * y)
  vx = cov_norm * (uxx - ux * ux)
  vy = cov_norm * (uyy - uy * uy)
  vxy = cov_norm * (uxy - ux * uy)
  c1 = (K1 * data_range) ** 2
  c2 = (K2 * data_range) ** 2
  s = ((2 * ux * uy + c1) * (2 * vxy + c2)
       / ((ux * ux + uy * uy + c1) * (vx + vy + c2)))
  p = (win_size - 1) // 2
  s = s[:, p:s.shape[1] - p, p:s.shape[2] - p, :]
  return jnp.mean(s, axis=(1, 2, 3))


__all__ = ["psnr", "ssim"]
