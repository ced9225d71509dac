"""DPM-Solver++(2M): the second-order multistep solver of Lu et al. 2022.

Lu, Zhou, Bao, Chen, Li, Zhu, "DPM-Solver++: Fast Solver for Guided Sampling of
Diffusion Probabilistic Models" (arXiv 2211.01095), Algorithm 2, in the σ
parametrization of k-diffusion's `sample_dpmpp_2m`. In λ = −log σ the ODE
dx/dσ = (x − D)/σ is solved exactly for a constant D:

.. math::
  x_{i+1} = \\frac{σ_{i+1}}{σ_i} x_i − (e^{−h_i} − 1)\\, D,\\qquad h_i = λ_{i+1} − λ_i,

and the multistep variant replaces D by a linear extrapolation from the last two
denoiser outputs.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from edmjax.samplers import _common

__all__ = ["dpmpp_2m_sampler"]


def _coefficients(table):
  """Per-step (σ_{i+1}/σ_i, 1 − σ_{i+1}/σ_i, 1/(2 r_i)) of DPM-Solver++(2M).

  1 − σ_{i+1}/σ_i = −(e^{−h_i} − 1). With r_i = h_{i−1}/h_i the multistep weight is
  1/(2 r_i) = h_i/(2 h_{i−1}), defined for steps 1..N−2 (the multistep steps);
  entry 0 is unused.
  """
  xp = _common.xp_of(table)
  ratio = table[1:] / table[:-1]                      # σ_{i+1}/σ_i, 0 on the last step
  log_sigma = xp.log(table[:-1])                      # −λ_i, i < N
  h = log_sigma[:-1] - log_sigma[1:]                  # h_i, i < N − 1
  half_inv_r = xp.concatenate([xp.zeros_like(h[:1]), h[1:] / (2 * h[:-1])])
  return ratio, 1 - ratio, half_inv_r


def dpmpp_2m_sampler(denoise, latents, key=None, *, num_steps=18, sigma_min=0.002,
                     sigma_max=80.0, rho=7.0, sigmas=None, init=None, return_trajectory=False):
  """DPM-Solver++(2M) (Lu et al. 2022) over Karras levels or a given σ table.

  x_0 = latents · σ_0, D_i = D(x_i; σ_i), λ_i = −log σ_i, h_i = λ_{i+1} − λ_i,
  r_i = h_{i−1}/h_i, and

  .. math::
    D'_i = \\Big(1 + \\frac{1}{2 r_i}\\Big) D_i − \\frac{1}{2 r_i} D_{i−1},\\qquad
    x_{i+1} = \\frac{σ_{i+1}}{σ_i} x_i − (e^{−h_i} − 1)\\, D'_i.

  The first step (no D_{−1}) and the last step (σ_N = 0, where x_N = D_{N−1}) are
  first order (D' = D), as static decisions: a first-order prologue, one `lax.scan`
  over steps 1..N−2, a first-order epilogue. NFE = N, global order 2. Deterministic.

  Args:
    denoise: `denoise(x, sigma) -> D(x; sigma)` for NHWC `x` (B, H, W, C) and `sigma`
      of shape (B,).
    latents: NHWC unit-Gaussian latents (B, H, W, C); scaled by σ_0 inside.
    key: unused (the solver is deterministic); accepted so that every sampler takes
      `(denoise, latents, key)`.
    num_steps, sigma_min, sigma_max, rho: Karras levels (Eq. 5) + σ_N = 0, used when
      `sigmas` is None.
    sigmas: optional `(N + 1,)` strictly decreasing levels ending in 0, N >= 2.
    init: optional NHWC image to start from (SDEdit, headstart): x_0 = init + σ_0 ·
      latents instead of σ_0 · latents.
    return_trajectory: also return a `Trajectory`.

  Returns:
    Samples shaped and typed like `latents`; with `return_trajectory`,
    `(samples, Trajectory)`.

  Raises:
    ValueError: `latents` not 4-D; num_steps < 2; a bad σ range or table.
  """
  del key  # Deterministic.
  latents = _common.float_latents(latents)
  dtype = latents.dtype
  table = _common.sigma_table(dtype, sigmas, num_steps, sigma_min, sigma_max, rho)
  num = table.shape[0] - 1
  ratio, one_minus_ratio, half_inv_r = _coefficients(table)
  table, ratio, one_minus_ratio, half_inv_r = (
      jnp.asarray(v, dtype) for v in (table, ratio, one_minus_ratio, half_inv_r))

  # Step 0: first order.
  x0 = _common.initial_state(latents, table[0], init)
  denoised0 = _common.call_denoiser(denoise, x0, table[0])
  x1 = ratio[0] * x0 + one_minus_ratio[0] * denoised0

  def body(carry, step_in):
    x_cur, denoised_prev = carry
    sigma_cur, a, b, c = step_in
    denoised = _common.call_denoiser(denoise, x_cur, sigma_cur)
    denoised_d = (1 + c) * denoised - c * denoised_prev
    x_next = a * x_cur + b * denoised_d
    return (x_next, denoised), ((sigma_cur, x_cur, denoised) if return_trajectory else None)

  steps = slice(1, num - 1)
  (x, _), seen = jax.lax.scan(
      body, (x1, denoised0),
      (table[steps], ratio[steps], one_minus_ratio[steps], half_inv_r[steps]))
  # Step N − 1, to σ_N = 0: first order, x_N = D(x_{N−1}; σ_{N−1}).
  denoised_last = _common.call_denoiser(denoise, x, table[num - 1])
  x_out = ratio[num - 1] * x + one_minus_ratio[num - 1] * denoised_last
  per_step = None
  if return_trajectory:
    per_step = _common.stack_steps([table[0], x0, denoised0], seen,
                                   [table[num - 1], x, denoised_last])
  return _common.finish(x_out, per_step, return_trajectory)
