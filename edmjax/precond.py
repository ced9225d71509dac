"""Preconditioning: c_skip, c_out, c_in, c_noise for VP, VE, iDDPM and EDM (Table 1).

A raw network F_θ is wrapped into a denoiser

.. math::
  D_θ(x; σ) = c_{skip}(σ)\\,x + c_{out}(σ)\\,F_θ\\big(c_{in}(σ)\\,x;\\ c_{noise}(σ)\\big)

(Karras et al. 2022, Eq. 7). The networks only ever see c_in·x and c_noise, never σ.

====== ====================== ====================== =================== =====================================
family c_skip                 c_out                  c_in                c_noise
====== ====================== ====================== =================== =====================================
VP     1                      −σ                     1/sqrt(σ² + 1)      (M − 1) σ⁻¹_VP(σ)
VE     1                      σ                      1                   log(½ σ)
iDDPM  1                      −σ                     1/sqrt(σ² + 1)      M − 1 − argmin_j |u_j − σ|
EDM    σ_d²/(σ² + σ_d²)       σ σ_d/sqrt(σ² + σ_d²)  1/sqrt(σ² + σ_d²)   ¼ log σ
====== ====================== ====================== =================== =====================================

Images are NHWC; σ has shape (batch,). The formulas follow NVlabs/edm's
`training/networks.py` (VPPrecond, VEPrecond, iDDPMPrecond, EDMPrecond). EDM2
(Karras et al. 2024, NVlabs/edm2 `training/networks_edm2.py::Precond`) keeps EDM's
four coefficients, c_noise = ¼ ln σ included (`edm2_scalings`), and adds a learned
uncertainty u(σ) beside D: `make_uncertainty_denoiser` wraps a network that returns
(F, u), such as `edmjax.nn.EDM2UNet(..., return_logvar=True)`.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import jax.numpy as jnp

from edmjax import _arrays
from edmjax._arrays import Array
from edmjax import _checks
from edmjax import schedules


__all__ = [
    "Scalings", "edm_scalings", "vp_scalings", "ve_scalings", "iddpm_scalings",
    "get_scalings", "make_denoiser", "PRECONDITIONINGS", "edm2_scalings",
    "make_uncertainty_denoiser",
]

PRECONDITIONINGS = ("edm", "vp", "ve", "iddpm", "edm2")


class Scalings(NamedTuple):
  """The four preconditioning coefficients, each shaped like σ."""
  c_skip: Array
  c_out: Array
  c_in: Array
  c_noise: Array


def _sigma_array(sigma):
  _checks.check_positive("sigma", sigma)
  sigma = jnp.asarray(sigma)
  if not jnp.issubdtype(sigma.dtype, jnp.floating):
    sigma = sigma.astype(jnp.float32)
  return sigma


def edm_scalings(sigma, sigma_data=0.5) -> Scalings:
  """EDM preconditioning (Table 1, "ours"): unit-variance input and training target.

  c_skip = σ_d²/(σ²+σ_d²), c_out = σ σ_d/sqrt(σ²+σ_d²), c_in = 1/sqrt(σ²+σ_d²),
  c_noise = ¼ log σ.
  """
  _checks.check_positive("sigma_data", sigma_data)
  sigma = _sigma_array(sigma)
  denom = sigma**2 + sigma_data**2
  return Scalings(
      c_skip=sigma_data**2 / denom,
      c_out=sigma * sigma_data / jnp.sqrt(denom),
      c_in=1 / jnp.sqrt(denom),
      c_noise=jnp.log(sigma) / 4,
  )


def edm2_scalings(sigma, sigma_data=0.5) -> Scalings:
  """EDM2's preconditioning (NVlabs/edm2 `Precond`): EDM's, c_noise = ¼ ln σ.

  c_skip = σ_d²/(σ²+σ_d²), c_out = σ σ_d/sqrt(σ²+σ_d²), c_in = 1/sqrt(σ_d²+σ²),
  c_noise = ln(σ)/4 — the same four functions as `edm_scalings`, which this calls.
  """
  return edm_scalings(sigma, sigma_data)


def vp_scalings(sigma, beta_d=19.9, beta_min=0.1, M=1000) -> Scalings:
  """VP preconditioning (Song et al. 2021): c_noise = (M − 1) t with t = σ⁻¹_VP(σ)."""
  sigma = _sigma_array(sigma)
  return Scalings(
      c_skip=jnp.ones_like(sigma),
      c_out=-sigma,
      c_in=1 / jnp.sqrt(sigma**2 + 1),
      c_noise=(M - 1) * schedules.vp_sigma_inv(sigma, beta_d, beta_min),
  )


def ve_scalings(sigma) -> Scalings:
  """VE preconditioning (Song et al. 2021): c_out = σ, c_noise = log(½ σ)."""
  sigma = _sigma_array(sigma)
  return Scalings(
      c_skip=jnp.ones_like(sigma),
      c_out=sigma,
      c_in=jnp.ones_like(sigma),
      c_noise=jnp.log(0.5 * sigma),
  )


def iddpm_scalings(sigma, C_1=0.001, C_2=0.008, M=1000) -> Scalings:
  """iDDPM preconditioning (Nichol & Dhariwal 2021).

  c_noise is the DDPM time index of the nearest table level: M − 1 − j with
  j = argmin_j |u_j − σ| (so the largest level u_0 is index M − 1).
  """
  sigma = _sigma_array(sigma)
  index = schedules.iddpm_round_sigma(sigma, C_1, C_2, M, return_index=True)
  return Scalings(
      c_skip=jnp.ones_like(sigma),
      c_out=-sigma,
      c_in=1 / jnp.sqrt(sigma**2 + 1),
      c_noise=(M - 1 - index).astype(sigma.dtype),
  )


def get_scalings(name: str, **kwargs) -> Callable[[Array], Scalings]:
  """The scalings function of a named family ∈ {edm, vp, ve, iddpm, edm2}, options bound."""
  _checks.check_choice("preconditioning", name, PRECONDITIONINGS)
  fn = {"edm": edm_scalings, "vp": vp_scalings, "ve": ve_scalings,
        "iddpm": iddpm_scalings, "edm2": edm2_scalings}[name]
  return functools.partial(fn, **kwargs)


def make_denoiser(apply_fn: Callable[..., Array],
                  scalings: str | Callable[[Array], Scalings] = "edm",
                  *, compute_dtype: Any = None) -> Callable[..., Array]:
  """Wraps a raw network F into the denoiser D(x; σ) = c_skip x + c_out F(c_in x; c_noise).

  Args:
    apply_fn: `apply_fn(x_in, c_noise, *args, **kwargs) -> F`, with `x_in` NHWC and
      `c_noise` of shape (batch,). Extra arguments of the returned denoiser (class
      labels, augment labels, params already bound or not) are passed through. If F
      has more channels than x (iDDPM's learned variance), the first channels of x's
      count are used, as NVlabs/edm does.
    scalings: a family name ∈ {edm, vp, ve, iddpm} with default options, or a
      function σ ↦ `Scalings` (e.g. `functools.partial(edm_scalings, sigma_data=0.3)`).
    compute_dtype: optional dtype (e.g. `jnp.bfloat16`) for the network's input and
      computation; σ, the scalings and the combination stay in the dtype of x.

  Returns:
    `denoise(x, sigma, *args, **kwargs) -> D(x; σ)`, shaped and typed like `x`; `x`
    is NHWC and `sigma` has shape (batch,) (a scalar is broadcast to the batch).

  Example:
    >>> denoise = make_denoiser(lambda x_in, c_noise: jnp.zeros_like(x_in), "edm")
    >>> x = jnp.ones((2, 4, 4, 1))                  # F = 0, so D = c_skip(σ) x
    >>> round(float(denoise(x, jnp.full((2,), 2.0))[0, 0, 0, 0]), 4)  # 0.25 / 4.25
    0.0588
  """
  if isinstance(scalings, str):
    scalings = get_scalings(scalings)

  def denoise(x, sigma, *args, **kwargs):
    return _precondition(apply_fn, scalings, compute_dtype, x, sigma, args, kwargs)[0]

  return denoise


def make_uncertainty_denoiser(apply_fn: Callable[..., Any],
                              scalings: str | Callable[[Array], Scalings] = "edm2",
                              *, compute_dtype: Any = None) -> Callable[..., Any]:
  """`make_denoiser` for a network that also returns the uncertainty u(σ) (EDM2, Eq. 21).

  Args:
    apply_fn: `apply_fn(x_in, c_noise, *args, **kwargs) -> (F, logvar)` with `logvar`
      of shape (batch,) (NVlabs/edm2 `Precond(..., return_logvar=True)`; for
      `EDM2UNet`, `model.apply(variables, x_in, c_noise, labels, return_logvar=True)`).
    scalings, compute_dtype: as `make_denoiser`.

  Returns:
    `denoise(x, sigma, *args, **kwargs) -> (D(x; σ), u(σ))`; D shaped and typed like
    `x`, u of shape (batch,) in x's dtype.
  """
  if isinstance(scalings, str):
    scalings = get_scalings(scalings)

  def denoise(x, sigma, *args, **kwargs):
    D, logvar = _precondition(apply_fn, scalings, compute_dtype, x, sigma, args, kwargs)
    if logvar is None:
      raise ValueError("make_uncertainty_denoiser: the network returned F alone; it must "
                       "return (F, logvar) (EDM2UNet: pass return_logvar=True).")
    return D, jnp.reshape(logvar, x.shape[:1]).astype(x.dtype)

  return denoise


def _precondition(apply_fn, scalings, compute_dtype, x, sigma, args, kwargs):
  """(c_skip x + c_out F(c_in x; c_noise), the network's other outputs or None)."""
  _checks.check_nhwc("x", x)
  sigma = jnp.asarray(sigma, dtype=x.dtype)
  if sigma.ndim == 0:
    sigma = jnp.broadcast_to(sigma, x.shape[:1])
  if sigma.shape != x.shape[:1]:
    raise ValueError(
        f"sigma has shape {sigma.shape}; expected (batch,) = {x.shape[:1]} or a scalar.")
  c = scalings(sigma)
  x_in = _arrays.bcast(c.c_in, x) * x
  if compute_dtype is not None:
    x_in = x_in.astype(compute_dtype)
  out = apply_fn(x_in, c.c_noise, *args, **kwargs)
  F, extra = (out[0], out[1]) if isinstance(out, tuple) else (out, None)
  F = F[..., :x.shape[-1]].astype(x.dtype)
  return _arrays.bcast(c.c_skip, x) * x + _arrays.bcast(c.c_out, x) * F, extra
