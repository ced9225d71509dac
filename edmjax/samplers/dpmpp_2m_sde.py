"""DPM-Solver++(2M) SDE (k-diffusion's `sample_dpmpp_2m_sde`).

Lu et al. 2022, "DPM-Solver++" (arXiv 2211.01095), the second-order multistep
solver of the reverse SDE with data prediction (η = 1; η = 0 is the ODE solver
DPM-Solver++(2M) in this form). With λ = −log σ, h_i = λ_{i+1} − λ_i, r_i =
h_{i−1}/h_i and D_i = D(x_i; σ_i):

.. math::
  x_{i+1} = \\frac{σ_{i+1}}{σ_i} e^{−ηh_i} x_i + (1 − e^{−(1+η)h_i}) D_i
            + c_i \\frac{D_i − D_{i−1}}{r_i}
            + σ_{i+1}\\sqrt{1 − e^{−2ηh_i}}\\, S_{noise}\\, ε_i,

c_i = ½ (1 − e^{−(1+η)h_i}) ('midpoint') or (1 − e^{−(1+η)h_i})/(−(1+η)h_i) + 1
('heun'), c_0 = 0 (no D_{−1}); the last step, to σ_N = 0, returns D_{N−1}.

Noise. k-diffusion's default `BrownianTreeNoiseSampler` draws ε_i = (W(σ_{i+1}) −
W(σ_i))/sqrt(σ_i − σ_{i+1}) from one Brownian motion in σ: the intervals of
different steps are disjoint, so these are independent standard normals — the law
of this sampler's independent per-step draws. Handing ε_i to k-diffusion through
its `noise_sampler` reproduces a sample exactly.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from edmjax import _checks
from edmjax.samplers import _common

__all__ = ["SDE_SOLVER_TYPES", "dpmpp_2m_sde_sampler"]

SDE_SOLVER_TYPES = ("midpoint", "heun")


def _coefficients(table, eta, solver_type, xp):
  """Per-step (state, D, correction, noise) scalars of steps 0..N−2 and the
  multistep mask, as k-diffusion forms them."""
  sigma, sigma_next = table[:-2], table[1:-1]
  h = -xp.log(sigma_next) - (-xp.log(sigma))
  eta_h = eta * h
  ratio = sigma_next / sigma * xp.exp(-eta_h)
  a = -xp.expm1(-h - eta_h)
  h_last = xp.concatenate([h[:1], h[:-1]])      # h_{i−1} (step 0: unused)
  inv_r = 1 / (h_last / h)
  if solver_type == "heun":
    corr = (a / (-h - eta_h) + 1) * inv_r
  else:
    corr = 0.5 * a * inv_r
  noise = sigma_next * xp.sqrt(-xp.expm1(-2 * eta_h))
  multistep = np.arange(h.shape[0]) > 0
  return ratio, a, corr, noise, multistep


def dpmpp_2m_sde_sampler(denoise, latents, key=None, *, num_steps=18, sigma_min=0.002,
                         sigma_max=80.0, rho=7.0, sigmas=None, eta=1.0, S_noise=1.0,
                         solver_type="midpoint", init=None, return_trajectory=False):
  """DPM-Solver++(2M) SDE over Karras levels or a given σ table.

  Step i < N − 1 as in the module docstring; the last step returns D(x_{N−1};
  σ_{N−1}). NFE = N. η = 0 is deterministic (global order 2). Steps 0..N−2 run in
  one `lax.scan` (the first-order step 0 selected by a mask), the last is static.

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
    eta: η >= 0 (1: the reverse SDE; 0: the probability-flow ODE).
    S_noise: noise inflation.
    solver_type: 'midpoint' or 'heun', the second-order correction.
    init: optional NHWC image to start from: x_0 = init + σ_0 · latents.
    return_trajectory: also return a `Trajectory`.

  Returns:
    Samples shaped and typed like `latents`; with `return_trajectory`,
    `(samples, Trajectory)`.

  Raises:
    ValueError: `latents` not 4-D; num_steps < 2; a bad σ range or table; η < 0; an
      unknown solver_type; noise without a key; keys not matching the batch.

  Example:
    >>> import jax
    >>> from edmjax import oracle
    >>> z = jax.random.normal(jax.random.key(0), (4, 8, 8, 1))
    >>> x = jax.jit(lambda z, k: dpmpp_2m_sde_sampler(
    ...     oracle.gaussian_denoiser(0.0, 0.5), z, k, num_steps=10))(z, jax.random.key(1))
  """
  _checks.check_choice("solver_type", solver_type, SDE_SOLVER_TYPES)
  latents = _common.float_latents(latents)
  dtype = latents.dtype
  table = _common.sigma_table(dtype, sigmas, num_steps, sigma_min, sigma_max, rho)
  keys = _common.noise_keys(eta, S_noise, key, latents.shape[0], "dpmpp_2m_sde_sampler")
  noisy = keys is not None
  num = table.shape[0] - 1
  xp = _common.xp_of(table, eta)
  ratio, a, corr, noise, multistep = _coefficients(table, eta, solver_type, xp)
  ratio, a, corr, noise = (jnp.asarray(v, dtype) for v in (ratio, a, corr, noise))
  table = jnp.asarray(table, dtype)
  S_noise = jnp.asarray(S_noise, dtype)

  def body(carry, step_in):
    x, denoised_prev = carry
    sigma_cur, ratio_i, a_i, corr_i, noise_i, multi, i = step_in
    denoised = _common.call_denoiser(denoise, x, sigma_cur)
    x_next = ratio_i * x + a_i * denoised
    x_next = jnp.where(multi, x_next + corr_i * (denoised - denoised_prev), x_next)
    if noisy:
      x_next = x_next + _common.step_noise(keys, i, x) * noise_i * S_noise
    return (x_next, denoised), ((sigma_cur, x, denoised) if return_trajectory else None)

  x0 = _common.initial_state(latents, table[0], init)
  (x, _), seen = jax.lax.scan(
      body, (x0, jnp.zeros_like(x0)),
      (table[:-2], ratio, a, corr, noise, jnp.asarray(multistep), jnp.arange(num - 1)))
  denoised = _common.call_denoiser(denoise, x, table[-2])   # last step: x_N = D
  per_step = None
  if return_trajectory:
    per_step = _common.stack_steps(seen, [table[-2], x, denoised])
  return _common.finish(denoised, per_step, return_trajectory)
