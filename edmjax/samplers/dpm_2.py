"""DPM-Solver-2 steps in Algorithm 2 (k-diffusion's `sample_dpm_2`).

Karras et al. 2022's Algorithm 2 with the Heun correction replaced by a midpoint
step in log σ (DPM-Solver-2 of Lu et al. 2022, arXiv 2206.00927, in the σ
parametrization): from the churned state (σ̂_i, x̂_i),

.. math::
  d_i = \\frac{x̂_i − D(x̂_i; σ̂_i)}{σ̂_i},\\quad
  σ_{mid} = \\exp\\big(\\tfrac12(\\log σ̂_i + \\log σ_{i+1})\\big),\\quad
  x' = x̂_i + (σ_{mid} − σ̂_i) d_i,\\\\
  x_{i+1} = x̂_i + (σ_{i+1} − σ̂_i)\\, \\frac{x' − D(x'; σ_{mid})}{σ_{mid}},

with an Euler step on the last step (σ_N = 0).
"""

from __future__ import annotations

import jax.numpy as jnp

from edmjax.samplers import _common

__all__ = ["log_midpoint", "dpm_2_sampler"]


def log_midpoint(sigma_from, sigma_to):
  """exp(lerp(log σ_from, log σ_to, ½)): the geometric mean, k-diffusion's σ_mid."""
  a = jnp.log(sigma_from)
  return jnp.exp(a + 0.5 * (jnp.log(sigma_to) - a))


def dpm_2_sampler(denoise, latents, key=None, *, num_steps=18, sigma_min=0.002,
                  sigma_max=80.0, rho=7.0, sigmas=None, S_churn=0.0, S_min=0.0,
                  S_max=float("inf"), S_noise=1.0, init=None, return_trajectory=False):
  """k-diffusion's `sample_dpm_2`: Algorithm 2 with DPM-Solver-2 steps.

  x_0 = latents · σ_0; step i optionally churns (γ_i = min(S_churn/N, √2 − 1) for
  S_min <= σ_i <= S_max; σ̂_i = σ_i(1 + γ_i), x̂_i = x_i + sqrt(σ̂_i² − σ_i²) S_noise
  ε_i) and takes the midpoint step of the module docstring; the last step is Euler.
  Deterministic when S_churn = 0 (global order 2). NFE = 2N − 1. Steps 0..N−2 run
  in one `lax.scan`, the last one is static.

  Args:
    denoise: `denoise(x, sigma) -> D(x; sigma)` for NHWC `x` (B, H, W, C) and `sigma`
      of shape (B,).
    latents: NHWC unit-Gaussian latents (B, H, W, C); scaled by σ_0 inside.
    key: a jax.random key or one per sample (shape (B,)); needed when S_churn is not
      statically 0. Sample b uses `fold_in(key, b)`; step i's churn noise is
      `normal(fold_in(key_b, i), latents.shape[1:])` (`edmjax.keys`).
    num_steps, sigma_min, sigma_max, rho: Karras levels (Eq. 5) + σ_N = 0, used when
      `sigmas` is None.
    sigmas: optional `(N + 1,)` strictly decreasing levels ending in 0.
    S_churn, S_min, S_max, S_noise: Algorithm 2's churn (k-diffusion's s_churn,
      s_tmin, s_tmax, s_noise).
    init: optional NHWC image to start from: x_0 = init + σ_0 · latents.
    return_trajectory: also return a `Trajectory`.

  Returns:
    Samples shaped and typed like `latents`; with `return_trajectory`,
    `(samples, Trajectory)`.

  Raises:
    ValueError: `latents` not 4-D; num_steps < 2; a bad σ range or table; S_churn <
      0; noise without a key.

  Example:
    >>> import jax
    >>> from edmjax import oracle
    >>> z = jax.random.normal(jax.random.key(0), (4, 8, 8, 1))
    >>> x = jax.jit(lambda z: dpm_2_sampler(oracle.gaussian_denoiser(0.0, 0.5), z,
    ...                                     num_steps=10))(z)
  """
  latents = _common.float_latents(latents)
  dtype = latents.dtype
  table = jnp.asarray(
      _common.sigma_table(dtype, sigmas, num_steps, sigma_min, sigma_max, rho), dtype)
  num = table.shape[0] - 1
  churn = _common.churn_settings(S_churn, S_min, S_max, S_noise, key, latents.shape[0],
                                 num, dtype)

  def step(x_cur, sigma_cur, sigma_next, i, last):
    sigma_hat, x_hat = _common.apply_churn(churn, x_cur, sigma_cur, i)
    denoised = _common.call_denoiser(denoise, x_hat, sigma_hat)
    d = (x_hat - denoised) / sigma_hat
    if last:  # Euler to σ_N = 0.
      x_next = x_hat + d * (sigma_next - sigma_hat)
    else:
      sigma_mid = log_midpoint(sigma_hat, sigma_next)
      x_2 = x_hat + d * (sigma_mid - sigma_hat)
      d_2 = (x_2 - _common.call_denoiser(denoise, x_2, sigma_mid)) / sigma_mid
      x_next = x_hat + d_2 * (sigma_next - sigma_hat)
    return x_next, (sigma_cur, x_cur, denoised)

  return _common.scan_then_last(
      step, _common.initial_state(latents, table[0], init),
      (table[:-2], table[1:-1], jnp.arange(num - 1)), (table[-2], table[-1], num - 1),
      return_trajectory)
