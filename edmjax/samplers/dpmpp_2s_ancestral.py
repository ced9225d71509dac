"""Ancestral DPM-Solver++(2S) (k-diffusion's `sample_dpmpp_2s_ancestral`).

Lu et al. 2022, "DPM-Solver++" (arXiv 2211.01095), Algorithm 1 (single-step, second
order, data prediction) with r = ½, in λ = −log σ: from λ_i = −log σ_i to
λ_down = −log σ_down, h = λ_down − λ_i, s = λ_i + h/2,

.. math::
  u = \\frac{σ(s)}{σ_i} x_i − (e^{−h/2} − 1)\\, D(x_i; σ_i),\\qquad
  x_{i+1} = \\frac{σ_{down}}{σ_i} x_i − (e^{−h} − 1)\\, D(u; σ(s))
            + S_{noise}\\, σ_{up}\\, ε_i,

with (σ_down, σ_up) = `ancestral_step`(σ_i, σ_{i+1}, η).
"""

from __future__ import annotations

import jax.numpy as jnp

from edmjax.samplers import _common
from edmjax.samplers.ancestral import ancestral_step

__all__ = ["dpmpp_2s_ancestral_sampler"]


def _coefficients(table, down, xp):
  """Per-step (σ(s)/σ_i, −expm1(−h/2), σ_down/σ_i, −expm1(−h), σ(s)) in λ, as
  k-diffusion computes them (σ(λ) = e^{−λ}, λ = −log σ); NaN-free where σ_down = 0
  (those steps are Euler steps)."""
  positive = down > 0
  t = -xp.log(table[:-1])
  t_next = -xp.log(xp.where(positive, down, table[:-1]))
  h = t_next - t
  s = t + 0.5 * h
  sigma_t, sigma_s = xp.exp(-t), xp.exp(-s)
  return (sigma_s / sigma_t, -xp.expm1(-h * 0.5), xp.exp(-t_next) / sigma_t,
          -xp.expm1(-h), sigma_s)


def dpmpp_2s_ancestral_sampler(denoise, latents, key=None, *, num_steps=18,
                               sigma_min=0.002, sigma_max=80.0, rho=7.0, sigmas=None,
                               eta=1.0, S_noise=1.0, init=None, return_trajectory=False):
  """Ancestral DPM-Solver++(2S) over Karras levels or a given σ table.

  Step i (module docstring) takes the second-order single step from σ_i to σ_down
  and adds S_noise · σ_up · ε_i; a step with σ_down = 0 is an Euler step to D(x_i;
  σ_i) (the last one always). η = 0 is the deterministic DPM-Solver++(2S) (global
  order 2, measured 2.06). NFE = 2N − 1. Steps 0..N−2 run in one `lax.scan`, the last is static.

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
    >>> x = jax.jit(lambda z, k: dpmpp_2s_ancestral_sampler(
    ...     oracle.gaussian_denoiser(0.0, 0.5), z, k, num_steps=10))(z, jax.random.key(1))
  """
  latents = _common.float_latents(latents)
  dtype = latents.dtype
  table = _common.sigma_table(dtype, sigmas, num_steps, sigma_min, sigma_max, rho)
  keys = _common.noise_keys(eta, S_noise, key, latents.shape[0], "dpmpp_2s_ancestral_sampler")
  noisy = keys is not None
  num = table.shape[0] - 1
  down, up = ancestral_step(table[:-1], table[1:], eta)
  xp = _common.xp_of(table, down)
  coefs = _coefficients(table, down, xp)
  table, down, up = (jnp.asarray(v, dtype) for v in (table, down, up))
  coefs = tuple(jnp.asarray(v, dtype) for v in coefs)
  S_noise = jnp.asarray(S_noise, dtype)

  def step(x_cur, sigma_cur, down_i, up_i, coef, i, last):
    denoised = _common.call_denoiser(denoise, x_cur, sigma_cur)
    x_euler = x_cur + (x_cur - denoised) / sigma_cur * (down_i - sigma_cur)
    if last:  # σ_down = σ_up = 0: x = D.
      return x_euler, (sigma_cur, x_cur, denoised)
    ratio_s, a_s, ratio_next, a_next, sigma_s = coef
    x_2 = ratio_s * x_cur + a_s * denoised
    denoised_2 = _common.call_denoiser(denoise, x_2, sigma_s)
    x_next = jnp.where(down_i > 0, ratio_next * x_cur + a_next * denoised_2, x_euler)
    if noisy:
      x_next = x_next + _common.step_noise(keys, i, x_cur) * S_noise * up_i
    return x_next, (sigma_cur, x_cur, denoised)

  return _common.scan_then_last(
      step, _common.initial_state(latents, table[0], init),
      (table[:-2], down[:-1], up[:-1], tuple(v[:-1] for v in coefs), jnp.arange(num - 1)),
      (table[-2], down[-1], up[-1], None, num - 1), return_trajectory)
