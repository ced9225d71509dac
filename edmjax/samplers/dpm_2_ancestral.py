"""Ancestral sampling with DPM-Solver-2 steps (k-diffusion's `sample_dpm_2_ancestral`).

Each step goes from σ_i down to σ_down by the log-σ midpoint step of
`dpm_2_sampler`, then adds fresh noise of standard deviation σ_up, with
(σ_down, σ_up) = `ancestral_step`(σ_i, σ_{i+1}, η), σ_down² + σ_up² = σ_{i+1}².
"""

from __future__ import annotations

import jax.numpy as jnp

from edmjax.samplers import _common
from edmjax.samplers.ancestral import ancestral_step
from edmjax.samplers.dpm_2 import log_midpoint

__all__ = ["dpm_2_ancestral_sampler"]


def dpm_2_ancestral_sampler(denoise, latents, key=None, *, num_steps=18, sigma_min=0.002,
                            sigma_max=80.0, rho=7.0, sigmas=None, eta=1.0, S_noise=1.0,
                            init=None, return_trajectory=False):
  """Ancestral DPM-Solver-2 over Karras levels or a given σ table.

  x_0 = latents · σ_0; for each step, with D_i = D(x_i; σ_i), d_i = (x_i − D_i)/σ_i
  and (σ_down, σ_up) = `ancestral_step`(σ_i, σ_{i+1}, η):

  .. math::
    σ_{mid} = \\sqrt{σ_i σ_{down}},\\quad x' = x_i + (σ_{mid} − σ_i) d_i,\\quad
    x_{i+1} = x_i + (σ_{down} − σ_i) \\frac{x' − D(x'; σ_{mid})}{σ_{mid}}
              + S_{noise} σ_{up} ε_i.

  A step with σ_down = 0 is an Euler step to D_i (the last one, σ_N = 0, always;
  with η > 1 others can be). There k-diffusion adds no noise (its noise line sits
  in the midpoint branch), which leaves a state at σ_{i+1} > 0 without noise; here
  the noise is added, as k-diffusion's own `sample_dpmpp_2s_ancestral` does. For
  η <= 1 the two agree. NFE = 2N − 1; η = 0 is `dpm_2_sampler` without churn.
  Steps 0..N−2 run in one `lax.scan`, the last one is static.

  Args:
    denoise: `denoise(x, sigma) -> D(x; sigma)` for NHWC `x` (B, H, W, C) and `sigma`
      of shape (B,).
    latents: NHWC unit-Gaussian latents (B, H, W, C); scaled by σ_0 inside.
    key: a jax.random key or one per sample (shape (B,)); may be None only when η
      or S_noise is statically 0. Sample b uses `fold_in(key, b)`; step i's noise is
      `normal(fold_in(key_b, i), latents.shape[1:])` (`edmjax.keys`).
    num_steps, sigma_min, sigma_max, rho: Karras levels (Eq. 5) + σ_N = 0, used when
      `sigmas` is None.
    sigmas: optional `(N + 1,)` strictly decreasing levels ending in 0.
    eta: η >= 0, the fraction of ancestral noise.
    S_noise: noise inflation.
    init: optional NHWC image to start from: x_0 = init + σ_0 · latents.
    return_trajectory: also return a `Trajectory`.

  Returns:
    Samples shaped and typed like `latents`; with `return_trajectory`,
    `(samples, Trajectory)`.

  Raises:
    ValueError: `latents` not 4-D; num_steps < 2; a bad σ range or table; η < 0;
      noise without a key; keys not matching the batch.

  Example:
    >>> import jax
    >>> from edmjax import oracle
    >>> z = jax.random.normal(jax.random.key(0), (4, 8, 8, 1))
    >>> x = jax.jit(lambda z, k: dpm_2_ancestral_sampler(
    ...     oracle.gaussian_denoiser(0.0, 0.5), z, k, num_steps=10))(z, jax.random.key(1))
  """
  latents = _common.float_latents(latents)
  dtype = latents.dtype
  table = _common.sigma_table(dtype, sigmas, num_steps, sigma_min, sigma_max, rho)
  keys = _common.noise_keys(eta, S_noise, key, latents.shape[0], "dpm_2_ancestral_sampler")
  noisy = keys is not None
  num = table.shape[0] - 1
  sigma_down, sigma_up = ancestral_step(table[:-1], table[1:], eta)
  table, sigma_down, sigma_up = (
      jnp.asarray(v, dtype) for v in (table, sigma_down, sigma_up))
  S_noise = jnp.asarray(S_noise, dtype)

  def step(x_cur, sigma_cur, down, up, i, last):
    denoised = _common.call_denoiser(denoise, x_cur, sigma_cur)
    d = (x_cur - denoised) / sigma_cur
    x_euler = x_cur + d * (down - sigma_cur)
    if last:  # σ_down = σ_up = 0.
      return x_euler, (sigma_cur, x_cur, denoised)
    midpoint = down > 0
    sigma_mid = log_midpoint(sigma_cur, jnp.where(midpoint, down, sigma_cur))
    x_2 = x_cur + d * (sigma_mid - sigma_cur)
    d_2 = (x_2 - _common.call_denoiser(denoise, x_2, sigma_mid)) / sigma_mid
    x_next = jnp.where(midpoint, x_cur + d_2 * (down - sigma_cur), x_euler)
    if noisy:
      x_next = x_next + _common.step_noise(keys, i, x_cur) * S_noise * up
    return x_next, (sigma_cur, x_cur, denoised)

  return _common.scan_then_last(
      step, _common.initial_state(latents, table[0], init),
      (table[:-2], sigma_down[:-1], sigma_up[:-1], jnp.arange(num - 1)),
      (table[-2], sigma_down[-1], sigma_up[-1], num - 1), return_trajectory)
