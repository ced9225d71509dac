"""Denoising score-matching losses with the paper's σ densities and weights λ(σ).

Karras et al. 2022, Eq. 8 and Table 1: the loss of a denoiser D at one image y is

.. math::
  λ(σ)\\,\\lVert D(y + n; σ) - y \\rVert_2^2,\\qquad σ \\sim p_{train},\\ n \\sim N(0, σ^2 I)

=======  ============================================  ==========================
family   p_train(σ)                                    λ(σ)
=======  ============================================  ==========================
VP       σ = σ_VP(t), t ~ U(ε_t, 1)                    1/σ²
VE       ln σ ~ U(ln σ_min, ln σ_max)                  1/σ²
EDM      ln σ ~ N(P_mean, P_std²)                      (σ² + σ_d²)/(σ σ_d)²
EDM2     ln σ ~ N(P_mean, P_std²)                      (σ² + σ_d²)/(σ σ_d)² / e^{u(σ)}
=======  ============================================  ==========================

EDM2 (Karras et al. 2024, Eq. 21; NVlabs/edm2 `training_loop.py::EDM2Loss`) learns the
uncertainty u(σ) beside D and minimises (λ(σ)/e^{u(σ)})‖D − y‖² + u(σ), which weights
every σ by the inverse of its expected loss; its σ density is EDM's with the preset's
P_mean, P_std (`EDM2_SIGMA_DENSITY`).

Each loss returns the unreduced, per-element loss shaped like `images` (NHWC), as
NVlabs/edm's `training/loss.py` does; the caller reduces. Passing `sigma` (batch,)
and `noise` (shaped like images) makes a loss deterministic. `denoise(x, sigma)` is
any denoiser (e.g. from `edmjax.precond.make_denoiser`); close over class labels,
augment labels and dropout keys.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from edmjax import _arrays
from edmjax._arrays import Array
from edmjax import _checks
from edmjax import schedules

Denoiser = Callable[[Array, Array], Array]

__all__ = [
    "edm_sample_sigma", "vp_sample_sigma", "ve_sample_sigma",
    "edm_loss_weight", "vp_loss_weight", "ve_loss_weight",
    "edm_loss", "vp_loss", "ve_loss", "weighted_denoising_loss", "edm2_loss",
    "EDM2_SIGMA_DENSITY",
]

EDM2_SIGMA_DENSITY = {"img512": dict(P_mean=-0.4, P_std=1.0),
                      "img64": dict(P_mean=-0.8, P_std=1.6)}
"""ln σ ~ N(P_mean, P_std²) of NVlabs/edm2's presets (`train_edm2.py`): `edm2-img512-*`
(latents; also `EDM2Loss`'s defaults) and `edm2-img64-*` (pixels)."""


def edm_sample_sigma(key, batch, *, P_mean=-1.2, P_std=1.2, dtype=jnp.float32):
  """σ with ln σ ~ N(P_mean, P_std²) (EDM's log-normal training density)."""
  return jnp.exp(jax.random.normal(key, (batch,), dtype) * P_std + P_mean)


def vp_sample_sigma(key, batch, *, beta_d=19.9, beta_min=0.1, epsilon_t=1e-5,
                    dtype=jnp.float32):
  """σ = σ_VP(t) with t ~ U(ε_t, 1) (Song et al. 2021's VP training density)."""
  u = jax.random.uniform(key, (batch,), dtype)
  return schedules.vp_sigma(1 + u * (epsilon_t - 1), beta_d, beta_min)


def ve_sample_sigma(key, batch, *, sigma_min=0.02, sigma_max=100.0, dtype=jnp.float32):
  """σ = σ_min (σ_max/σ_min)^u, u ~ U(0, 1): log-uniform (Song et al. 2021's VE)."""
  u = jax.random.uniform(key, (batch,), dtype)
  return sigma_min * (sigma_max / sigma_min)**u


def edm_loss_weight(sigma, sigma_data=0.5):
  """λ(σ) = (σ² + σ_d²)/(σ σ_d)²: makes the effective training target unit-variance."""
  return (sigma**2 + sigma_data**2) / (sigma * sigma_data)**2


def vp_loss_weight(sigma):
  """λ(σ) = 1/σ² (VP and VE)."""
  return 1 / sigma**2


ve_loss_weight = vp_loss_weight


def _check_noisy_batch(images, sigma, noise):
  """Raises ValueError unless images are NHWC, noise is shaped like them, σ is (batch,) > 0."""
  _checks.check_nhwc("images", images)
  if noise.shape != images.shape:
    raise ValueError(f"noise has shape {noise.shape}; expected the images' {images.shape}.")
  if sigma.shape != images.shape[:1]:
    raise ValueError(
        f"sigma has shape {sigma.shape}; expected (batch,) = {images.shape[:1]}.")
  _checks.check_positive("sigma", sigma)


def weighted_denoising_loss(denoise: Denoiser, images, sigma, noise, weight):
  """λ(σ)·(D(y + σn; σ) − y)², per element. `noise` is unit-variance n, NHWC."""
  _check_noisy_batch(images, sigma, noise)
  denoised = denoise(images + _arrays.bcast(sigma, images) * noise, sigma)
  shape = getattr(denoised, "shape", None)
  if shape != images.shape:
    raise ValueError(
        f"the denoiser returned shape {shape} for images of shape {images.shape}; "
        "D(x; sigma) must return an array shaped like its input x (NHWC).")
  return _arrays.bcast(weight, images) * (denoised - images)**2


def _sigma_and_noise(key, images, sigma, noise, sample_sigma):
  if sigma is not None and noise is not None:
    return jnp.asarray(sigma, images.dtype), noise
  if key is None:
    raise ValueError("key is required unless both sigma and noise are given.")
  key_sigma, key_noise = jax.random.split(key)
  if sigma is None:
    sigma = sample_sigma(key_sigma, images.shape[0], dtype=images.dtype)
  if noise is None:
    noise = jax.random.normal(key_noise, images.shape, images.dtype)
  return jnp.asarray(sigma, images.dtype), noise


def edm_loss(denoise: Denoiser, images, key, *, P_mean=-1.2, P_std=1.2,
             sigma_data=0.5, sigma=None, noise=None):
  """EDM loss (Karras et al. 2022, Eq. 8, Table 1): per-element, shaped like `images`.

  Args:
    denoise: `denoise(x, sigma) -> D(x; sigma)` on NHWC `x`, sigma (batch,).
    images: clean images y, NHWC.
    key: PRNG key for σ and n (unused when both `sigma` and `noise` are given).
    P_mean, P_std: ln σ ~ N(P_mean, P_std²).
    sigma_data: σ_d of the weight λ(σ) = (σ² + σ_d²)/(σ σ_d)².
    sigma: optional σ, shape (batch,).
    noise: optional unit Gaussian n, shaped like `images` (the loss adds σ·n).
  """
  _checks.check_positive("P_std", P_std)
  _checks.check_positive("sigma_data", sigma_data)
  sigma, noise = _sigma_and_noise(
      key, images, sigma, noise,
      lambda k, b, dtype: edm_sample_sigma(k, b, P_mean=P_mean, P_std=P_std, dtype=dtype))
  return weighted_denoising_loss(denoise, images, sigma, noise,
                                 edm_loss_weight(sigma, sigma_data))


def vp_loss(denoise: Denoiser, images, key, *, beta_d=19.9, beta_min=0.1,
            epsilon_t=1e-5, sigma=None, noise=None):
  """VP loss (Song et al. 2021 in EDM's form): σ = σ_VP(t), t ~ U(ε_t, 1), λ = 1/σ²."""
  _checks.check_positive("beta_d", beta_d)
  _checks.check_nonnegative("beta_min", beta_min)
  _checks.check_positive("epsilon_t", epsilon_t)
  eps = _checks.concrete_value(epsilon_t)
  if eps is not None and not eps < 1:
    raise ValueError(f"epsilon_t={float(eps)!r} must be < 1 (t ~ U(epsilon_t, 1)).")
  sigma, noise = _sigma_and_noise(
      key, images, sigma, noise,
      lambda k, b, dtype: vp_sample_sigma(k, b, beta_d=beta_d, beta_min=beta_min,
                                          epsilon_t=epsilon_t, dtype=dtype))
  return weighted_denoising_loss(denoise, images, sigma, noise, vp_loss_weight(sigma))


def ve_loss(denoise: Denoiser, images, key, *, sigma_min=0.02, sigma_max=100.0,
            sigma=None, noise=None):
  """VE loss (Song et al. 2021 in EDM's form): log-uniform σ in [σ_min, σ_max], λ = 1/σ²."""
  _checks.check_positive("sigma_min", sigma_min)
  _checks.check_positive("sigma_max", sigma_max)
  _checks.check_less("sigma_min", sigma_min, "sigma_max", sigma_max)
  sigma, noise = _sigma_and_noise(
      key, images, sigma, noise,
      lambda k, b, dtype: ve_sample_sigma(k, b, sigma_min=sigma_min, sigma_max=sigma_max,
                                          dtype=dtype))
  return weighted_denoising_loss(denoise, images, sigma, noise, ve_loss_weight(sigma))


def edm2_loss(denoise: Callable[[Array, Array], tuple], images, key, *, P_mean=-0.4,
              P_std=1.0, sigma_data=0.5, sigma=None, noise=None):
  """EDM2's loss with learned uncertainty (Karras et al. 2024, Eq. 21), per element.

  .. math::
    \\frac{λ(σ)}{e^{u(σ)}}\\,(D(y + σn; σ) − y)^2 + u(σ),\\qquad
    λ(σ) = \\frac{σ^2 + σ_d^2}{(σ σ_d)^2},\\ \\ln σ \\sim N(P_{mean}, P_{std}^2)

  as NVlabs/edm2's `EDM2Loss` (u is added to every element, as there).

  Args:
    denoise: `denoise(x, sigma) -> (D(x; σ), u(σ))`, NHWC `x`, σ and u of shape
      (batch,) (`edmjax.precond.make_uncertainty_denoiser`).
    images: clean images y, NHWC.
    key: PRNG key for σ and n (unused when both `sigma` and `noise` are given).
    P_mean, P_std: the σ density (defaults: `EDM2Loss`'s, the img512 presets').
    sigma_data: σ_d of λ(σ).
    sigma, noise: optional σ (batch,) and unit Gaussian n shaped like `images`.

  Returns:
    The per-element loss, shaped like `images`.
  """
  _checks.check_positive("P_std", P_std)
  _checks.check_positive("sigma_data", sigma_data)
  sigma, noise = _sigma_and_noise(
      key, images, sigma, noise,
      lambda k, b, dtype: edm_sample_sigma(k, b, P_mean=P_mean, P_std=P_std, dtype=dtype))
  _check_noisy_batch(images, sigma, noise)
  denoised, logvar = denoise(images + _arrays.bcast(sigma, images) * noise, sigma)
  logvar = _arrays.bcast(jnp.reshape(logvar, sigma.shape).astype(images.dtype), images)
  weight = _arrays.bcast(edm_loss_weight(sigma, sigma_data), images)
  return weight / jnp.exp(logvar) * (denoised - images)**2 + logvar
