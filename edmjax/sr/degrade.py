"""Degradations for super-resolution: pure functions from a high- to a low-resolution image.

The forward model of the paired data (Saharia et al. 2021, arXiv 2104.07636, Sec. 4
use bicubic downsampling; we also offer the exact area operator):

.. math::
  x_{LR} = S_s\\big(G_b * x_{HR}\\big) + σ_n\\, ε,\\qquad ε \\sim N(0, I),

with :math:`G_b` an optional Gaussian blur of standard deviation b pixels (HR grid),
:math:`S_s` downsampling by s ∈ {2, 4, 8} ('area': the mean of each s×s block, or
'bicubic': antialiased Keys cubic, a = −1/2, the kernel widened by s as in MATLAB's
`imresize`) and optional Gaussian noise σ_n. No JPEG. The deterministic part
:math:`A = S_s G_b` is what the low-resolution consistency of a result is measured
with: PSNR(A(SR), LR).

Upsampling for the network's condition is bicubic (`upsample`), as in SR3.

All images are NHWC float arrays in [-1, 1]; nothing here is jitted (jit the caller),
and the factor and method are static Python values.
"""

from __future__ import annotations

import dataclasses
import jax
import jax.numpy as jnp
import numpy as np

from edmjax._arrays import Array
from edmjax import _checks
from edmjax.eval import image_metrics


__all__ = [
    "SCALES", "DOWNSAMPLE_METHODS", "UPSAMPLE_METHODS", "DegradeConfig", "check_scale",
    "area_downsample", "bicubic_downsample", "downsample", "upsample", "nearest_upsample",
    "gaussian_blur", "degrade", "degrade_clean", "lr_consistency", "mean_colour_error",
    "project_consistent",
]

SCALES = (2, 4, 8)
DOWNSAMPLE_METHODS = ("area", "bicubic")
UPSAMPLE_METHODS = ("bicubic", "bilinear", "nearest")


def check_scale(scale) -> None:
  """Raises ValueError unless `scale` is one of 2, 4, 8 (a Python int)."""
  if isinstance(scale, bool) or scale not in SCALES:
    raise ValueError(f"scale={scale!r} is not supported; allowed values: 2, 4, 8.")


def _check_divisible(x, scale) -> None:
  _checks.check_nhwc("x", x)
  h, w = x.shape[1], x.shape[2]
  if h % scale or w % scale:
    raise ValueError(
        f"image size {h}x{w} is not divisible by scale={scale}; crop it to "
        f"{h - h % scale}x{w - w % scale} first.")


@dataclasses.dataclass(frozen=True)
class DegradeConfig:
  """The degradation x_HR ↦ x_LR (a static, hashable configuration).

  Attributes:
    scale: the downsampling factor s ∈ {2, 4, 8}.
    method: 'area' (block mean; exact and the default) or 'bicubic' (antialiased).
    blur_sigma: standard deviation (HR pixels) of a Gaussian blur before
      downsampling; 0 disables it.
    noise_std: standard deviation of Gaussian noise added to the LR image (in the
      [-1, 1] units of the images); 0 disables it.
  """
  scale: int = 4
  method: str = "area"
  blur_sigma: float = 0.0
  noise_std: float = 0.0

  def __post_init__(self):
    check_scale(self.scale)
    _checks.check_choice("method", self.method, DOWNSAMPLE_METHODS)
    _checks.check_nonnegative("blur_sigma", self.blur_sigma)
    _checks.check_nonnegative("noise_std", self.noise_std)


def area_downsample(x: Array, scale: int) -> Array:
  """The mean of each `scale`×`scale` block: (B, H, W, C) -> (B, H/s, W/s, C), NHWC.

  .. math:: (S_s x)_{ij} = \\frac{1}{s^2}\\sum_{a,b=0}^{s-1} x_{si+a,\\,sj+b}

  Linear and mean-preserving (the mean of S_s x equals the mean of x). Computed as
  log₂ s rounds of 2×2 pair averages ((a + b)/2 along H, then W), so that a constant
  image is reproduced bit for bit (a plain sum of s² values then / s² is not exact
  in floating point).
  """
  check_scale(scale)
  _check_divisible(x, scale)
  while scale > 1:
    x = 0.5 * (x[:, 0::2] + x[:, 1::2])
    x = 0.5 * (x[:, :, 0::2] + x[:, :, 1::2])
    scale //= 2
  return x


def bicubic_downsample(x: Array, scale: int) -> Array:
  """Antialiased bicubic downsampling by `scale` (Keys a = −1/2, kernel widened by s), NHWC."""
  check_scale(scale)
  _check_divisible(x, scale)
  b, h, w, c = x.shape
  return jax.image.resize(x, (b, h // scale, w // scale, c), "bicubic", antialias=True)


def downsample(x: Array, scale: int, method: str = "area") -> Array:
  """`area_downsample` or `bicubic_downsample` by name."""
  _checks.check_choice("method", method, DOWNSAMPLE_METHODS)
  return area_downsample(x, scale) if method == "area" else bicubic_downsample(x, scale)


def upsample(x: Array, scale: int, method: str = "bicubic") -> Array:
  """Upsampling by `scale` to (B, s·H, s·W, C), NHWC (bicubic: Keys a = −1/2).

  `scale` may be any int >= 1 here (the network input of any size is upsampled).
  """
  _checks.check_nhwc("x", x)
  _checks.check_int_at_least("scale", scale, 1)
  _checks.check_choice("method", method, UPSAMPLE_METHODS)
  if method == "nearest":
    return nearest_upsample(x, scale)
  b, h, w, c = x.shape
  return jax.image.resize(x, (b, h * scale, w * scale, c), method)


def nearest_upsample(x: Array, scale: int) -> Array:
  """Each pixel repeated into a `scale`×`scale` block; the right inverse of
  `area_downsample` (area_downsample(nearest_upsample(x, s), s) = x)."""
  _checks.check_nhwc("x", x)
  return jnp.repeat(jnp.repeat(x, scale, axis=1), scale, axis=2)


def _gaussian_taps(sigma: float) -> np.ndarray:
  radius = max(1, int(3.0 * sigma + 0.5))
  t = np.arange(-radius, radius + 1, dtype=np.float64)
  w = np.exp(-0.5 * (t / sigma) ** 2)
  return w / w.sum()


def gaussian_blur(x: Array, sigma: float) -> Array:
  """Separable Gaussian blur of std `sigma` pixels (radius ⌊3σ + ½⌋, 'reflect'
  borders as scipy.ndimage), NHWC. `sigma` = 0 returns `x`."""
  _checks.check_nhwc("x", x)
  _checks.check_nonnegative("blur_sigma", sigma)
  if float(sigma) == 0.0:
    return x
  taps = _gaussian_taps(float(sigma))
  r = (len(taps) - 1) // 2
  if r >= min(x.shape[1], x.shape[2]):
    raise ValueError(f"blur_sigma={sigma} needs a radius of {r} pixels; the image "
                     f"({x.shape[1]}x{x.shape[2]}) is too small.")
  for axis in (1, 2):
    pad = [(0, 0)] * 4
    pad[axis] = (r, r)
    xp = jnp.pad(x, pad, mode="symmetric")
    n = x.shape[axis]
    x = sum(jnp.asarray(w, x.dtype) * jax.lax.slice_in_dim(xp, k, k + n, axis=axis)
            for k, w in enumerate(taps))
  return x


def degrade_clean(x_hr: Array, cfg: DegradeConfig) -> Array:
  """The deterministic operator A = S_s G_b (blur, then downsample; no noise), NHWC."""
  return downsample(gaussian_blur(x_hr, cfg.blur_sigma), cfg.scale, cfg.method)


def degrade(key, x_hr: Array, cfg: DegradeConfig) -> Array:
  """x_LR = A(x_HR) + σ_n ε: the paired low-resolution image, NHWC.

  Args:
    key: a jax.random key for the noise (unused, may be None, when noise_std = 0).
    x_hr: high-resolution images (B, H, W, C), H and W divisible by `cfg.scale`.
    cfg: the degradation.

  Returns:
    (B, H/s, W/s, C) low-resolution images (not clipped).
  """
  lr = degrade_clean(x_hr, cfg)
  if cfg.noise_std > 0:
    if key is None:
      raise ValueError(f"noise_std={cfg.noise_std} adds noise; pass a jax.random key.")
    lr = lr + cfg.noise_std * jax.random.normal(key, lr.shape, lr.dtype)
  return lr


def lr_consistency(sr: Array, lr: Array, cfg: DegradeConfig | int) -> Array:
  """Low-resolution consistency PSNR(A(SR), LR) in dB per image (data range 2).

  +inf when A(SR) equals LR exactly (e.g. SR = any x with A(x) = LR).

  Args:
    sr: super-resolved images (B, s·h, s·w, C), NHWC in [-1, 1].
    lr: the low-resolution inputs (B, h, w, C).
    cfg: the degradation (or just the scale, meaning area downsampling).
  """
  if not isinstance(cfg, DegradeConfig):
    cfg = DegradeConfig(scale=cfg)
  down = degrade_clean(sr, cfg)
  if down.shape != lr.shape:
    raise ValueError(f"A(sr) has shape {down.shape} but lr has shape {lr.shape}; is "
                     f"scale={cfg.scale} right?")
  return image_metrics.psnr(lr, down, data_range=2.0)


def mean_colour_error(sr: Array, reference: Array) -> Array:
  """|mean(SR) − mean(reference)| per image and channel, in units of 1/255.

  Images in [-1, 1] (so 1/255 of the 8-bit range is 2/255 here); `reference` may be
  the LR input or the HR image (means compare across sizes). Returns (B, C).
  """
  _checks.check_nhwc("sr", sr)
  _checks.check_nhwc("reference", reference)
  diff = jnp.mean(sr, axis=(1, 2)) - jnp.mean(reference, axis=(1, 2))
  return jnp.abs(diff) * 127.5


def project_consistent(sr: Array, lr: Array, scale: int) -> Array:
  """The closest image to `sr` whose area downsampling is exactly `lr` (NHWC).

  .. math:: \\mathrm{SR}' = \\mathrm{SR} + N_s\\big(x_{LR} − S_s\\,\\mathrm{SR}\\big)

  with :math:`N_s` nearest upsampling: the Euclidean projection onto
  {x : S_s x = x_LR} for the area operator (N_s = s² S_sᵀ and S_s N_s = I). It
  removes any colour shift and makes the consistency +inf, at the cost of s×s
  block steps of the size of the correction. Only valid for area downsampling
  without blur.
  """
  check_scale(scale)
  return sr + nearest_upsample(lr - area_downsample(sr, scale), scale)
