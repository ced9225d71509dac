"""Noise schedules σ(t), scalings s(t) and time-step discretizations (EDM Table 1).

Karras et al. 2022, "Elucidating the Design Space of Diffusion-Based Generative
Models" (arXiv 2206.00364), write every deterministic sampler as the ODE

.. math::
  dx = \\left[\\frac{\\dot s(t)}{s(t)} x - s(t)^2 \\dot\\sigma(t)\\sigma(t)
       \\nabla_x \\log p\\left(\\frac{x}{s(t)}; \\sigma(t)\\right)\\right] dt

with a noise schedule σ(t) and a scaling s(t). Table 1 of the paper lists them for
four formulations; this module has all four columns:

=============  =========================================  ==================  ==========================
formulation    σ(t)                                       s(t)                time steps
=============  =========================================  ==================  ==========================
VP             sqrt(exp(½β_d t² + β_min t) − 1)           1/sqrt(1 + σ(t)²)   t_i = 1 + i/(N−1)(ε_s − 1)
VE             sqrt(t)                                    1                   t_i = σ_max² (σ_min²/σ_max²)^{i/(N−1)}
iDDPM          t                                          1                   u_{⌊j0 + (M−1−j0)/(N−1) i + ½⌋}
EDM            t                                          1                   (σ_max^{1/ρ} + i/(N−1)(σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ
=============  =========================================  ==================  ==========================

Conventions. Every function works on NumPy inputs (Python floats, NumPy arrays)
and then computes in float64 on the host, and on JAX arrays or tracers, where it
computes with ``jax.numpy`` in the input's dtype. Noise-level tables built from
concrete numbers are therefore float64 NumPy arrays that callers cast once; tables
built from traced σ_min/σ_max (to avoid recompiles when they change) are computed
on the device. The iDDPM table u_j depends only on (C_1, C_2, M) and is always
built in float64 NumPy and cached.
"""

from __future__ import annotations

import functools
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from edmjax import _arrays
from edmjax._arrays import Array
from edmjax import _checks


__all__ = [
    "Schedule",
    "vp_sigma", "vp_sigma_deriv", "vp_sigma_inv", "vp_s", "vp_s_deriv",
    "ve_sigma", "ve_sigma_deriv", "ve_sigma_inv",
    "linear_sigma", "linear_sigma_deriv", "linear_sigma_inv",
    "vp_schedule", "ve_schedule", "edm_schedule", "iddpm_schedule",
    "make_schedule", "vp_refit_betas", "vp_default_sigma_range",
    "iddpm_u_table", "iddpm_round_sigma", "iddpm_alpha_bar",
    "vp_sigma_steps", "ve_sigma_steps", "iddpm_sigma_steps", "edm_sigma_steps",
    "sigma_steps", "karras_sigmas", "append_zero",
    "exponential_sigmas", "polyexponential_sigmas", "vp_sigmas",
    "DISCRETIZATIONS", "SCHEDULES", "SCALINGS",
]

DISCRETIZATIONS = ("vp", "ve", "iddpm", "edm")
SCHEDULES = ("vp", "ve", "linear")
SCALINGS = ("vp", "none")


def _asarray(xp, x):
  return np.asarray(x, dtype=np.float64) if xp is np else jnp.asarray(x)


# ---------------------------------------------------------------------------
# σ(t) and its derivative and inverse for each schedule of Table 1.


def vp_sigma(t, beta_d=19.9, beta_min=0.1):
  """VP noise level: σ(t) = sqrt(exp(½ β_d t² + β_min t) − 1) (EDM Table 1)."""
  xp = _arrays.xp_of(t, beta_d, beta_min)
  t = _asarray(xp, t)
  return xp.sqrt(xp.expm1(0.5 * beta_d * t**2 + beta_min * t))


def vp_sigma_deriv(t, beta_d=19.9, beta_min=0.1):
  """dσ/dt of the VP schedule: ½ (β_min + β_d t) (σ(t) + 1/σ(t))."""
  xp = _arrays.xp_of(t, beta_d, beta_min)
  t = _asarray(xp, t)
  sigma = vp_sigma(t, beta_d, beta_min)
  return 0.5 * (beta_min + beta_d * t) * (sigma + 1 / sigma)


def vp_sigma_inv(sigma, beta_d=19.9, beta_min=0.1):
  """Inverse of the VP schedule: t = (sqrt(β_min² + 2 β_d log(1 + σ²)) − β_min) / β_d."""
  xp = _arrays.xp_of(sigma, beta_d, beta_min)
  sigma = _asarray(xp, sigma)
  return (xp.sqrt(beta_min**2 + 2 * beta_d * xp.log1p(sigma**2)) - beta_min) / beta_d


def vp_s(t, beta_d=19.9, beta_min=0.1):
  """VP scaling s(t) = 1/sqrt(1 + σ(t)²) = exp(−¼ β_d t² − ½ β_min t)."""
  xp = _arrays.xp_of(t, beta_d, beta_min)
  t = _asarray(xp, t)
  return xp.exp(-0.25 * beta_d * t**2 - 0.5 * beta_min * t)


def vp_s_deriv(t, beta_d=19.9, beta_min=0.1):
  """ds/dt of the VP scaling: −σ(t) σ'(t) s(t)³."""
  sigma = vp_sigma(t, beta_d, beta_min)
  return -sigma * vp_sigma_deriv(t, beta_d, beta_min) * vp_s(t, beta_d, beta_min)**3


def ve_sigma(t):
  """VE noise level σ(t) = sqrt(t)."""
  xp = _arrays.xp_of(t)
  return xp.sqrt(_asarray(xp, t))


def ve_sigma_deriv(t):
  """dσ/dt of the VE schedule: 1 / (2 sqrt(t))."""
  xp = _arrays.xp_of(t)
  return 0.5 / xp.sqrt(_asarray(xp, t))


def ve_sigma_inv(sigma):
  """Inverse of the VE schedule: t = σ²."""
  xp = _arrays.xp_of(sigma)
  return _asarray(xp, sigma)**2


def linear_sigma(t):
  """The EDM (and iDDPM) schedule σ(t) = t."""
  xp = _arrays.xp_of(t)
  return _asarray(xp, t)


def linear_sigma_deriv(t):
  """dσ/dt = 1 for σ(t) = t."""
  xp = _arrays.xp_of(t)
  return xp.ones_like(_asarray(xp, t))


def linear_sigma_inv(sigma):
  """Inverse of σ(t) = t."""
  xp = _arrays.xp_of(sigma)
  return _asarray(xp, sigma)


def _unit_s(t):
  xp = _arrays.xp_of(t)
  return xp.ones_like(_asarray(xp, t))


def _zero_s_deriv(t):
  xp = _arrays.xp_of(t)
  return xp.zeros_like(_asarray(xp, t))


class Schedule(NamedTuple):
  """A noise schedule σ(t) with scaling s(t): the functions the ODE of Eq. 4 needs.

  Attributes:
    sigma: t ↦ σ(t).
    sigma_deriv: t ↦ σ'(t).
    sigma_inv: σ ↦ t.
    s: t ↦ s(t).
    s_deriv: t ↦ s'(t).
  """
  sigma: Callable[[Array], Array]
  sigma_deriv: Callable[[Array], Array]
  sigma_inv: Callable[[Array], Array]
  s: Callable[[Array], Array]
  s_deriv: Callable[[Array], Array]

  def ode_derivative(self, x, t, denoised):
    """dx/dt of the probability-flow ODE (EDM Eq. 4 with ∇log p = (D − x/s)/(sσ)²).

    dx/dt = (σ'(t)/σ(t) + s'(t)/s(t)) x − σ'(t) s(t)/σ(t) D(x/s(t); σ(t)).
    `t` is a scalar; `x` and `denoised` have the same shape.
    """
    sigma, s = self.sigma(t), self.s(t)
    return ((self.sigma_deriv(t) / sigma + self.s_deriv(t) / s) * x
            - self.sigma_deriv(t) * s / sigma * denoised)


def vp_schedule(beta_d=19.9, beta_min=0.1, scaling="vp") -> Schedule:
  """The VP column of Table 1 (scaling 'vp'; 'none' drops s(t))."""
  _checks.check_choice("scaling", scaling, SCALINGS)
  sigma = functools.partial(vp_sigma, beta_d=beta_d, beta_min=beta_min)
  sigma_deriv = functools.partial(vp_sigma_deriv, beta_d=beta_d, beta_min=beta_min)
  sigma_inv = functools.partial(vp_sigma_inv, beta_d=beta_d, beta_min=beta_min)
  if scaling == "none":
    return Schedule(sigma, sigma_deriv, sigma_inv, _unit_s, _zero_s_deriv)
  return Schedule(sigma, sigma_deriv, sigma_inv,
                  functools.partial(vp_s, beta_d=beta_d, beta_min=beta_min),
                  functools.partial(vp_s_deriv, beta_d=beta_d, beta_min=beta_min))


def ve_schedule() -> Schedule:
  """The VE column of Table 1: σ(t) = sqrt(t), s(t) = 1."""
  return Schedule(ve_sigma, ve_sigma_deriv, ve_sigma_inv, _unit_s, _zero_s_deriv)


def edm_schedule() -> Schedule:
  """The EDM column of Table 1: σ(t) = t, s(t) = 1."""
  return Schedule(linear_sigma, linear_sigma_deriv, linear_sigma_inv, _unit_s,
                  _zero_s_deriv)


iddpm_schedule = edm_schedule  # iDDPM also uses σ(t) = t, s(t) = 1 (Table 1).


def make_schedule(schedule: str = "linear", scaling: str = "none", *,
                  beta_d=19.9, beta_min=0.1) -> Schedule:
  """Any (σ(t), s(t)) pair of the ablation sampler: schedule ∈ {vp, ve, linear}.

  With scaling='vp', s(t) = 1/sqrt(1 + σ(t)²) for *any* σ(t) (as NVlabs/edm's
  ablation sampler does), with s'(t) = −σ(t) σ'(t) s(t)³.
  """
  _checks.check_choice("schedule", schedule, SCHEDULES)
  _checks.check_choice("scaling", scaling, SCALINGS)
  if schedule == "vp":
    base = vp_schedule(beta_d, beta_min, scaling="none")
  elif schedule == "ve":
    base = ve_schedule()
  else:
    base = edm_schedule()
  if scaling == "none":
    return base

  def s(t):
    xp = _arrays.xp_of(t)
    return 1 / xp.sqrt(1 + base.sigma(t)**2)

  def s_deriv(t):
    return -base.sigma(t) * base.sigma_deriv(t) * s(t)**3

  return base._replace(s=s, s_deriv=s_deriv)


# ---------------------------------------------------------------------------
# VP: β refit and default range.


def vp_refit_betas(sigma_min, sigma_max, epsilon_s=1e-3):
  """(β_d, β_min) of the VP schedule that hits σ_min at t = ε_s and σ_max at t = 1.

  Solves σ(ε_s) = σ_min, σ(1) = σ_max for the VP σ(t) (as NVlabs/edm's ablation
  sampler does when it adapts VP to a given noise-level range):
  β_d = 2 (log(σ_min² + 1)/ε_s − log(σ_max² + 1)) / (ε_s − 1),
  β_min = log(σ_max² + 1) − ½ β_d.
  """
  xp = _arrays.xp_of(sigma_min, sigma_max, epsilon_s)
  lmin = xp.log1p(_asarray(xp, sigma_min)**2)
  lmax = xp.log1p(_asarray(xp, sigma_max)**2)
  beta_d = 2 * (lmin / epsilon_s - lmax) / (epsilon_s - 1)
  beta_min = lmax - 0.5 * beta_d
  return beta_d, beta_min


def vp_default_sigma_range(epsilon_s=1e-3, beta_d=19.9, beta_min=0.1):
  """(σ(ε_s), σ(1)) of the original VP schedule: about (0.001, 152)."""
  return (float(vp_sigma(epsilon_s, beta_d, beta_min)),
          float(vp_sigma(1.0, beta_d, beta_min)))


# ---------------------------------------------------------------------------
# iDDPM: the table u_j, j = 0..M, and rounding onto it.


def iddpm_alpha_bar(j, C_2=0.008, M=1000):
  """ᾱ_j = sin²(π/2 · j / (M (C_2 + 1))) (EDM Table 1, iDDPM column)."""
  return np.sin(0.5 * np.pi * np.asarray(j, np.float64) / M / (C_2 + 1))**2


@functools.lru_cache(maxsize=16)
def _iddpm_u_table(C_1: float, C_2: float, M: int) -> np.ndarray:
  u = np.zeros(M + 1, dtype=np.float64)
  for j in range(M, 0, -1):  # M, ..., 1
    ratio = max(iddpm_alpha_bar(j - 1, C_2, M) / iddpm_alpha_bar(j, C_2, M), C_1)
    u[j - 1] = np.sqrt((u[j]**2 + 1) / ratio - 1)
  u.setflags(write=False)
  return u


def iddpm_u_table(C_1=0.001, C_2=0.008, M=1000) -> np.ndarray:
  """The M + 1 iDDPM noise levels u_0 > u_1 > ... > u_M = 0, float64 (read-only).

  u_M = 0 and u_{j−1} = sqrt((u_j² + 1) / max(ᾱ_{j−1}/ᾱ_j, C_1) − 1) (EDM Table 1).

  Equal to NVlabs/edm's formula evaluated in float64 (to 2e-15 relative,
  tests/reference). NVlabs itself evaluates ᾱ_j in float32 — in `iDDPMPrecond`
  and in `ablation_sampler`, `j` is an int64 tensor and `0.5 π j / M / (C_2 + 1)`
  promotes to torch's default float32 — so its table differs from this one by up to
  about 5e-4 relative (largest at the high levels); this float64 table is the exact
  one.
  """
  _checks.check_int_at_least("M", M, 1)
  return _iddpm_u_table(float(C_1), float(C_2), int(M))


def iddpm_round_sigma(sigma, C_1=0.001, C_2=0.008, M=1000, return_index=False):
  """Rounds σ to the nearest level u_j of the iDDPM table (or returns j).

  Ties go to the lower index (the larger level), as `argmin` does in NVlabs/edm.
  NumPy in, NumPy out (float64); JAX in, JAX out (in σ's dtype).
  """
  u = iddpm_u_table(C_1, C_2, M)
  xp = _arrays.xp_of(sigma)
  if xp is np:
    s = np.asarray(sigma, np.float64)
    index = np.argmin(np.abs(s[..., None] - u), axis=-1)
    return index if return_index else u[index]
  sigma = jnp.asarray(sigma)
  u_dev = jnp.asarray(u, dtype=sigma.dtype)
  u_b = jnp.reshape(u_dev, (1,) * sigma.ndim + u_dev.shape)
  index = jnp.argmin(jnp.abs(sigma[..., None] - u_b), axis=-1)
  return index if return_index else u_dev[index]


# ---------------------------------------------------------------------------
# Time-step discretizations: the N noise levels σ_0 > ... > σ_{N−1} (no trailing 0).


def _check_steps(num_steps, sigma_min, sigma_max, rho=None):
  _checks.check_int_at_least("num_steps", num_steps, 2)
  _checks.check_positive("sigma_min", sigma_min)
  _checks.check_positive("sigma_max", sigma_max)
  _checks.check_less("sigma_min", sigma_min, "sigma_max", sigma_max)
  if rho is not None:
    _checks.check_positive("rho", rho)


def _step_fraction(xp, num_steps, dtype=None):
  i = xp.arange(num_steps, dtype=np.float64 if xp is np else dtype)
  return i / (num_steps - 1)


def _dtype_of(*xs):
  """Float dtype for device tables: that of the first JAX input (float32 default)."""
  for x in xs:
    if isinstance(x, (jax.Array, jax.core.Tracer)) and jnp.issubdtype(x.dtype, jnp.floating):
      return x.dtype
  return jnp.float32 if not jax.config.jax_enable_x64 else jnp.float64


def edm_sigma_steps(num_steps, sigma_min=0.002, sigma_max=80.0, rho=7.0):
  """EDM time steps σ_i = (σ_max^{1/ρ} + i/(N−1)(σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ (Eq. 5)."""
  _check_steps(num_steps, sigma_min, sigma_max, rho)
  xp = _arrays.xp_of(sigma_min, sigma_max, rho)
  frac = _step_fraction(xp, num_steps, _dtype_of(sigma_min, sigma_max, rho))
  hi = _asarray(xp, sigma_max)**(1 / rho)
  lo = _asarray(xp, sigma_min)**(1 / rho)
  return (hi + frac * (lo - hi))**rho


def ve_sigma_steps(num_steps, sigma_min=0.02, sigma_max=100.0):
  """VE time steps: t_i = σ_max² (σ_min²/σ_max²)^{i/(N−1)}, σ_i = sqrt(t_i)."""
  _check_steps(num_steps, sigma_min, sigma_max)
  xp = _arrays.xp_of(sigma_min, sigma_max)
  frac = _step_fraction(xp, num_steps, _dtype_of(sigma_min, sigma_max))
  smin, smax = _asarray(xp, sigma_min), _asarray(xp, sigma_max)
  t = smax**2 * (smin**2 / smax**2)**frac
  return ve_sigma(t)


def vp_sigma_steps(num_steps, sigma_min=None, sigma_max=None, epsilon_s=1e-3):
  """VP time steps: t_i = 1 + i/(N−1)(ε_s − 1), σ_i = σ(t_i) with β refit to the range.

  Defaults are the original VP range (σ(ε_s), σ(1)) for β_d = 19.9, β_min = 0.1.
  """
  dmin, dmax = vp_default_sigma_range(epsilon_s)
  sigma_min = dmin if sigma_min is None else sigma_min
  sigma_max = dmax if sigma_max is None else sigma_max
  _check_steps(num_steps, sigma_min, sigma_max)
  xp = _arrays.xp_of(sigma_min, sigma_max)
  beta_d, beta_min = vp_refit_betas(sigma_min, sigma_max, epsilon_s)
  frac = _step_fraction(xp, num_steps, _dtype_of(sigma_min, sigma_max))
  t = 1 + frac * (epsilon_s - 1)
  return vp_sigma(t, beta_d, beta_min)


def _round_half_even_div(p, q):
  """round(p / q) for non-negative integers, ties to even (as torch.round), exactly."""
  quot, rem = p // q, p % q
  twice = 2 * rem
  up = (twice > q) | ((twice == q) & (quot % 2 == 1))
  return quot + up.astype(quot.dtype)


def iddpm_sigma_steps(num_steps, sigma_min=0.002, sigma_max=81.0, C_1=0.001,
                      C_2=0.008, M=1000):
  """iDDPM time steps: N levels of the table u_j inside [σ_min, σ_max], evenly by index.

  The table is filtered to σ_min ≤ u_j ≤ σ_max (a contiguous index range j_0..j_1,
  since u decreases) and level k of N is u at j_0 + round((j_1 − j_0) k/(N − 1)),
  ties to even, as in NVlabs/edm. Works with traced σ_min/σ_max (no dynamic shapes).
  """
  _check_steps(num_steps, sigma_min, sigma_max)
  u = iddpm_u_table(C_1, C_2, M)
  xp = _arrays.xp_of(sigma_min, sigma_max)
  k = xp.arange(num_steps)
  if xp is np:
    j0 = int(np.sum(u > sigma_max))
    count = int(np.sum((u >= sigma_min) & (u <= sigma_max)))
    if count < 1:
      raise ValueError(
          f"no iDDPM level lies in [sigma_min, sigma_max] = [{sigma_min}, {sigma_max}]; "
          f"the table spans [{u[M - 1]:.6g}, {u[0]:.6g}].")
    return u[j0 + _round_half_even_div((count - 1) * k, num_steps - 1)]
  dtype = _dtype_of(sigma_min, sigma_max)
  u_dev = jnp.asarray(u, dtype)
  j0 = jnp.sum(u_dev > sigma_max)
  count = jnp.sum((u_dev >= sigma_min) & (u_dev <= sigma_max))
  return u_dev[j0 + _round_half_even_div((count - 1) * k, num_steps - 1)]


def sigma_steps(discretization, num_steps, sigma_min, sigma_max, *, rho=7.0,
                epsilon_s=1e-3, C_1=0.001, C_2=0.008, M=1000):
  """The N noise levels of a named discretization ∈ {vp, ve, iddpm, edm}."""
  _checks.check_choice("discretization", discretization, DISCRETIZATIONS)
  if discretization == "vp":
    return vp_sigma_steps(num_steps, sigma_min, sigma_max, epsilon_s)
  if discretization == "ve":
    return ve_sigma_steps(num_steps, sigma_min, sigma_max)
  if discretization == "iddpm":
    return iddpm_sigma_steps(num_steps, sigma_min, sigma_max, C_1, C_2, M)
  return edm_sigma_steps(num_steps, sigma_min, sigma_max, rho)


def append_zero(x):
  """Appends the final level 0 (t_N = 0) to a table of noise levels or times."""
  xp = _arrays.xp_of(x)
  return xp.concatenate([x, xp.zeros_like(x[:1])])


def karras_sigmas(num_steps, sigma_min=0.002, sigma_max=80.0, rho=7.0):
  """The EDM noise levels (Eq. 5) with the trailing zero: `num_steps + 1` values.

  σ_i = (σ_max^{1/ρ} + i/(N−1)(σ_min^{1/ρ} − σ_max^{1/ρ}))^ρ for i < N, σ_N = 0.
  Concrete arguments give a float64 NumPy array; JAX arguments a JAX array.

  Example:
    >>> karras_sigmas(18)[[0, -2, -1]]
    array([8.e+01, 2.e-03, 0.e+00])
  """
  return append_zero(edm_sigma_steps(num_steps, sigma_min, sigma_max, rho))


# ---------------------------------------------------------------------------
# k-diffusion's σ schedules (`get_sigmas_exponential`, `_polyexponential`, `_vp`),
# each with the trailing zero: `num_steps + 1` values.


def _ramp(xp, num_steps, start, stop, *xs):
  """`num_steps` evenly spaced values from `start` to `stop` (inclusive)."""
  dtype = np.float64 if xp is np else _dtype_of(*xs)
  return xp.linspace(start, stop, num_steps, dtype=dtype)


def exponential_sigmas(num_steps, sigma_min=0.002, sigma_max=80.0):
  """Levels evenly spaced in log σ, from σ_max to σ_min, with σ_N = 0.

  σ_i = exp(log σ_max + i/(N−1) (log σ_min − log σ_max)) (k-diffusion's
  `get_sigmas_exponential`; the EDM levels in the limit ρ → ∞).

  Example:
    >>> exponential_sigmas(3, 0.01, 1.0)
    array([1.  , 0.1 , 0.01, 0.  ])
  """
  _check_steps(num_steps, sigma_min, sigma_max)
  xp = _arrays.xp_of(sigma_min, sigma_max)
  lo, hi = xp.log(_asarray(xp, sigma_min)), xp.log(_asarray(xp, sigma_max))
  frac = _ramp(xp, num_steps, 0.0, 1.0, sigma_min, sigma_max)
  return append_zero(xp.exp(hi + frac * (lo - hi)))


def polyexponential_sigmas(num_steps, sigma_min=0.002, sigma_max=80.0, rho=1.0):
  """Levels polynomial in log σ, with σ_N = 0 (k-diffusion's `get_sigmas_polyexponential`).

  .. math::
    σ_i = \\exp\\big(r_i^ρ (\\log σ_{max} − \\log σ_{min}) + \\log σ_{min}\\big),
    \\qquad r_i = 1 − i/(N − 1);

  ρ = 1 is `exponential_sigmas`; ρ > 1 puts more levels near σ_min.
  """
  _check_steps(num_steps, sigma_min, sigma_max, rho)
  xp = _arrays.xp_of(sigma_min, sigma_max, rho)
  lo, hi = xp.log(_asarray(xp, sigma_min)), xp.log(_asarray(xp, sigma_max))
  ramp = _ramp(xp, num_steps, 1.0, 0.0, sigma_min, sigma_max, rho)**rho
  return append_zero(xp.exp(ramp * (hi - lo) + lo))


def vp_sigmas(num_steps, beta_d=19.9, beta_min=0.1, eps_s=1e-3):
  """The VP schedule at times evenly spaced from 1 to ε_s, with σ_N = 0.

  σ_i = σ_VP(t_i), t_i = 1 + i/(N−1)(ε_s − 1) (k-diffusion's `get_sigmas_vp`; EDM
  Table 1's VP time steps with the original β_d, β_min, so the levels span
  σ_VP(1) ≈ 152 to σ_VP(ε_s) ≈ 0.0105 whatever range a model supports).
  σ_VP is computed with expm1 (`vp_sigma`); k-diffusion's exp(·) − 1 loses about
  four digits to cancellation at t = ε_s (it agrees to ~1e-12 relative there).
  """
  _checks.check_int_at_least("num_steps", num_steps, 2)
  _checks.check_positive("beta_d", beta_d)
  _checks.check_positive("eps_s", eps_s)
  _checks.check_less("eps_s", eps_s, "1", 1.0)
  xp = _arrays.xp_of(beta_d, beta_min, eps_s)
  t = _ramp(xp, num_steps, 1.0, eps_s, beta_d, beta_min, eps_s)
  return append_zero(vp_sigma(t, beta_d, beta_min))
