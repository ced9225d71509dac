"""Headstart sampling (from_image): start from an image u at σ_start, not from pure noise.

Full sampling integrates the probability-flow ODE from σ_max ≈ 80, where the state
is pure noise. For super-resolution the upsampled LR image u already *is* a sample
of the data blurred and shifted by a small amount, so we may start lower: put u at
noise level σ_start and solve from there (the idea of SDEdit, Meng et al. 2021, and
of one-step burst super-resolution, arXiv 2507.13607):

.. math::
  x_0 = u + σ_{start}\\, n,\\quad n \\sim N(0, I),\\qquad
  σ_i = \\Big(σ_{start}^{1/ρ} + \\tfrac{i}{N-1}\\big(σ_{min}^{1/ρ} − σ_{start}^{1/ρ}\\big)\\Big)^ρ
  \\ (i < N),\\quad σ_N = 0,

then Algorithm 1/2 of Karras et al. 2022 over σ_0 > ... > σ_N = 0
(`edmjax.samplers.solve_from`; Euler steps, NFE = N, by default, or Heun steps with
a final Euler step, NFE = 2N − 1). With N = 1 the table is (σ_start, 0) and the single Euler step
x_0 + (0 − σ_start)(x_0 − D(x_0; σ_start))/σ_start is exactly one evaluation
D(x_0; σ_start).

σ_start is the dial between fidelity and generated detail: small σ_start keeps u's
structure and asks the network for a conditional-mean sharpening (highest PSNR);
large σ_start hands more of the image to the generative model (sharper, more
invented detail, lower PSNR). σ_start → σ_max recovers full sampling.

Images are NHWC; not jitted here (jit the caller, `num_steps` and `solver` static).
"""

from __future__ import annotations

from typing import Callable

import jax.numpy as jnp
import numpy as np

from edmjax._arrays import Array
from edmjax import _checks
from edmjax import keys as keys_lib
from edmjax import schedules
from edmjax.samplers import _common
from edmjax.samplers.edm import solve_from


__all__ = ["headstart_sigmas", "headstart", "headstart_nfe"]


def headstart_sigmas(sigma_start, num_steps: int, *, sigma_min=0.002, rho=7.0):
  """The (N + 1,) table from σ_start down to 0 (Karras ρ-spacing to σ_min, then 0).

  N = 1 gives (σ_start, 0). Concrete inputs give float64 NumPy; a traced σ_start a
  JAX array.

  Raises:
    ValueError: num_steps < 1, σ_start <= 0, or (N >= 2) σ_min >= σ_start — each
      message names the value.
  """
  _checks.check_int_at_least("num_steps", num_steps, 1)
  _checks.check_positive("sigma_start", sigma_start)
  if num_steps == 1:
    if _common.is_traced(sigma_start):
      return jnp.stack([jnp.asarray(sigma_start), jnp.zeros_like(jnp.asarray(sigma_start))])
    return np.asarray([float(sigma_start), 0.0], np.float64)
  _checks.check_positive("sigma_min", sigma_min)
  _checks.check_less("sigma_min", sigma_min, "sigma_start", sigma_start)
  if _common.is_traced(sigma_start, sigma_min, rho):
    dtype = jnp.result_type(sigma_start, jnp.float32)
    sigma_start, sigma_min, rho = (jnp.asarray(v, dtype) for v in (sigma_start, sigma_min, rho))
  return schedules.karras_sigmas(num_steps, sigma_min, sigma_start, rho)


def headstart_nfe(num_steps: int, solver: str = "euler") -> int:
  """Denoiser evaluations of a headstart: 2N − 1 (Heun, last step Euler) or N (Euler)."""
  return 2 * num_steps - 1 if solver == "heun" else num_steps


def headstart(denoise: Callable[[Array, Array], Array], u: Array, key, *,
              sigma_start, num_steps: int = 1, sigma_min=0.002, rho=7.0,
              solver: str = "euler", noise: Array | None = None, S_churn=0.0,
              S_min=0.0, S_max=float("inf"), S_noise=1.0, round_sigma=None,
              return_trajectory=False):
  """Headstart super-resolution: solve the PF-ODE from x_0 = u + σ_start n (NHWC).

  Args:
    denoise: `denoise(x, sigma) -> D(x; σ)` with the condition closed over (e.g.
      `edmjax.sr.model.make_sr_denoiser`).
    u: the starting image (B, H, W, C), typically up_s(x_LR), NHWC.
    key: one key or one key per sample; sample b's starting noise is
      `keys.start_noise`: `normal(fold_in(key_b, 2³¹ − 1), u.shape[1:])` (steps'
      churn noise uses fold_in(key_b, i) as in every sampler), so a result depends only on its own
      key. May be None when `noise` is given and S_churn is 0.
    sigma_start: σ_start > 0, the starting noise level (may be traced).
    num_steps: N >= 1 (static); N = 1 is one evaluation D(u + σ_start n; σ_start).
    sigma_min: the last nonzero level for N >= 2 (must be below σ_start).
    rho: the Karras exponent ρ.
    solver: 'euler' (NFE N; the default) or 'heun' (NFE 2N − 1). Euler is the
      default because a few-step Karras table jumps from σ_start straight down to
      σ_min, where Heun's correction re-evaluates the net at σ ≈ σ_min after a large
      step; with our CPU-trained nets that correction halves the step and leaves
      visible noise (measured: `docs/super_resolution.md`).
    noise: optional unit-Gaussian n (shaped like u) instead of drawing it.
    S_churn, S_min, S_max, S_noise: optional churn (Algorithm 2), see `solve_from`.
    round_sigma: optional σ ↦ nearest supported σ (a discrete model's
      `round_sigma`), applied to the table's nonzero levels and to churn's raised
      levels; None is the identity.
    return_trajectory: also return the solver's `Trajectory`.

  Returns:
    The super-resolved images, shaped and typed like u.

  Raises:
    ValueError: σ_start <= 0, num_steps < 1, σ_min >= σ_start, u not NHWC, no key.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from edmjax import oracle
    >>> u = jnp.full((2, 8, 8, 3), 0.2)                    # e.g. an upsampled LR image
    >>> denoise = oracle.gaussian_denoiser(u, 0.1)          # a stand-in conditional D
    >>> sr = jax.jit(lambda u, k: headstart(denoise, u, k, sigma_start=0.3,
    ...                                     num_steps=2))(u, jax.random.key(0))
    >>> sr.shape
    (2, 8, 8, 3)
  """
  _checks.check_nhwc("u", u)
  u = _common.float_latents(u)
  sigmas = headstart_sigmas(sigma_start, num_steps, sigma_min=sigma_min, rho=rho)
  if round_sigma is not None:
    sigmas = schedules.append_zero(round_sigma(sigmas[:-1]))
    _common.check_rounded_levels(sigmas[:-1], sigma_min)
  if noise is None:
    noise = keys_lib.start_noise(key, u)
  elif noise.shape != u.shape:
    raise ValueError(f"noise has shape {noise.shape}; expected u's {u.shape}.")
  sigmas = jnp.asarray(sigmas, u.dtype)
  x = u + sigmas[0] * noise.astype(u.dtype)
  if num_steps == 1 and _common.noise_is_static_zero(S_churn) and not return_trajectory:
    # The Euler step x + (0 − σ)(x − D)/σ is D itself: return it without the rounding
    # of x − (x − D) (and without tracing an empty scan).
    return _common.call_denoiser(denoise, x, sigmas[0])
  return solve_from(denoise, x, sigmas, solver=solver, key=key, S_churn=S_churn,
                             S_min=S_min, S_max=S_max, S_noise=S_noise,
                             return_trajectory=return_trajectory)
