"""The EDM sampler: Algorithm 2 of Karras et al. 2022 over any decreasing σ table.

With σ(t) = t and s(t) = 1 the probability-flow ODE is dx/dσ = (x − D(x; σ))/σ
(EDM Eq. 3 with ∇log p = (D − x)/σ²). Algorithm 2 steps it from σ_i to σ_{i+1}:

.. math::
  γ_i &= \\min(S_{churn}/N, \\sqrt{2} − 1)\\ \\text{if}\\ S_{min} ≤ σ_i ≤ S_{max}\\
         \\text{else}\\ 0,\\qquad \\hat σ_i = σ_i + γ_i σ_i,\\\\
  \\hat x_i &= x_i + \\sqrt{\\hat σ_i^2 − σ_i^2}\\, S_{noise}\\, ε_i,\\\\
  d_i &= (\\hat x_i − D(\\hat x_i; \\hat σ_i)) / \\hat σ_i,\\qquad
  x_{i+1} = \\hat x_i + (σ_{i+1} − \\hat σ_i) d_i,\\\\
  d'_i &= (x_{i+1} − D(x_{i+1}; σ_{i+1})) / σ_{i+1},\\qquad
  x_{i+1} = \\hat x_i + (σ_{i+1} − \\hat σ_i)(\\tfrac12 d_i + \\tfrac12 d'_i),

the second-order correction skipped on the last step, where σ_N = 0.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from edmjax import _checks
from edmjax import schedules
from edmjax.samplers import _common

__all__ = ["solve_from", "edm_sampler"]


def _algorithm2(denoise, x, sigmas, *, solver, churn, round_sigma, return_trajectory):
  """Algorithm 2 (Heun or Euler) over `sigmas` (N + 1 levels in x's dtype, σ_N = 0).

  `churn` (`_common.churn_settings`) is None when no noise is ever added (S_churn
  statically 0); churn is then skipped at trace time. Steps 0..N−2 run in one
  `lax.scan`, step N−1 (to σ_N = 0) is a static Euler step.
  """
  num_steps = sigmas.shape[0] - 1

  def step(x_cur, t_cur, t_next, i, second_order):
    # Increase noise temporarily (Algorithm 2, lines 4–7).
    t_hat, x_hat = _common.apply_churn(churn, x_cur, t_cur, i, round_sigma)
    # Euler step (lines 8–9).
    denoised = _common.call_denoiser(denoise, x_hat, t_hat)
    d_cur = (x_hat - denoised) / t_hat
    x_next = x_hat + (t_next - t_hat) * d_cur
    # Second-order correction (lines 10–12).
    if second_order:
      denoised_prime = _common.call_denoiser(denoise, x_next, t_next)
      d_prime = (x_next - denoised_prime) / t_next
      x_next = x_hat + (t_next - t_hat) * (0.5 * d_cur + 0.5 * d_prime)
    return x_next, (t_cur, x_cur, denoised)

  def body(x_cur, step_in):
    t_cur, t_next, i = step_in
    x_next, seen = step(x_cur, t_cur, t_next, i, solver == "heun")
    return x_next, (seen if return_trajectory else None)

  x, seen = jax.lax.scan(
      body, x, (sigmas[:-2], sigmas[1:-1], jnp.arange(num_steps - 1)))
  # Last step, to σ_N = 0: Euler (no division by σ_N = 0).
  x, seen_last = step(x, sigmas[-2], sigmas[-1], num_steps - 1, False)
  per_step = _common.stack_steps(seen, list(seen_last)) if return_trajectory else None
  return _common.finish(x, per_step, return_trajectory)


def solve_from(denoise, x, sigmas, *, solver="heun", key=None, S_churn=0.0, S_min=0.0,
               S_max=float("inf"), S_noise=1.0, round_sigma=None,
               return_trajectory=False):
  """Solves from a state `x` at noise level σ_0 down a given σ table (Algorithm 2).

  The general sampler of Karras et al. 2022 (σ(t) = t, s(t) = 1) over any strictly
  decreasing table σ_0 > ... > σ_{N−1} > σ_N = 0. Step i optionally raises the noise
  (churn), then takes an Euler step and, except on the last step, Heun's correction:

  .. math::
    γ_i = \\min(S_{churn}/N, \\sqrt2 − 1)\\,[S_{min} ≤ σ_i ≤ S_{max}],\\quad
    t\\_hat = σ_i (1 + γ_i),\\quad
    x\\_hat = x_i + \\sqrt{t\\_hat^2 − σ_i^2}\\, S_{noise}\\, ε_i,

    d\\_cur = (x\\_hat − D(x\\_hat; t\\_hat))/t\\_hat,\\quad
    x_{i+1} = x\\_hat + (σ_{i+1} − t\\_hat)\\, d\\_cur,

    d\\_prime = (x_{i+1} − D(x_{i+1}; σ_{i+1}))/σ_{i+1},\\quad
    x_{i+1} = x\\_hat + (σ_{i+1} − t\\_hat)(d\\_cur + d\\_prime)/2.

  With S_churn = 0 this is Algorithm 1, a deterministic Heun (NFE = 2N − 1) or Euler
  (NFE = N) solver of dx/dσ = (x − D(x; σ))/σ over the given levels. Because the
  state is not rescaled, it is also the "headstart" entry: start from an `x` already
  at noise level σ_0 (for example an upsampled image plus σ_0-noise).

  Steps 0..N−2 run in one `lax.scan`; the last step, to σ_N = 0, is a static Euler
  step. Not jitted here: jit the caller, with `solver` and `return_trajectory`
  static; σ values, S_* and keys may be traced.

  Args:
    denoise: `denoise(x, sigma) -> D(x; sigma)` for NHWC `x` (B, H, W, C) and `sigma`
      of shape (B,).
    x: the NHWC state at noise level `sigmas[0]` (not scaled here).
    sigmas: `(N + 1,)` strictly decreasing noise levels ending in 0 (N >= 1), e.g.
      `schedules.karras_sigmas(N)`; cast to x's dtype once. Concrete tables are
      checked; a traced table is trusted.
    solver: 'heun' (Algorithm 1/2) or 'euler' (no correction).
    key: a jax.random key, or one key per sample (shape (B,)); needed when noise is
      added (S_churn not statically 0). Sample b uses `fold_in(key, b)`; step i's
      noise is `normal(fold_in(key_b, i), x.shape[1:])`.
    S_churn: total churn; γ_i = min(S_churn/N, √2 − 1). A concrete 0 skips the noise.
    S_min, S_max: churn only where S_min <= σ_i <= S_max.
    S_noise: noise inflation (slightly above 1 counters over-denoising).
    round_sigma: optional σ ↦ nearest supported σ (e.g.
      `schedules.iddpm_round_sigma`), applied to the raised level t_hat; the table
      itself is used as given.
    return_trajectory: also return a `Trajectory` of the N steps.

  Returns:
    The samples, shaped and typed like `x`; with `return_trajectory`,
    `(samples, Trajectory)`.

  Raises:
    ValueError: for an unknown solver, a bad table, a negative S_churn, noise without
      a key, or `x` not 4-D NHWC.

  Example:
    >>> import jax
    >>> from edmjax import oracle, schedules
    >>> denoise = oracle.gaussian_denoiser(0.0, 0.5)
    >>> sigmas = schedules.karras_sigmas(8, sigma_max=2.0)
    >>> x = 2.0 * jax.random.normal(jax.random.key(0), (4, 8, 8, 3))
    >>> y = jax.jit(lambda x: solve_from(denoise, x, sigmas))(x)
  """
  _common.check_solver(solver)
  x = _common.float_latents(x)
  _common.check_sigma_table("sigmas", sigmas, 1)
  sigmas = jnp.asarray(sigmas, x.dtype)
  churn = _common.churn_settings(S_churn, S_min, S_max, S_noise, key, x.shape[0],
                                 sigmas.shape[0] - 1, x.dtype)
  return _algorithm2(denoise, x, sigmas, solver=solver, churn=churn,
                     round_sigma=round_sigma, return_trajectory=return_trajectory)


def edm_sampler(denoise, latents, key=None, *, num_steps=18, sigma_min=0.002,
                sigma_max=80.0, rho=7.0, S_churn=0.0, S_min=0.0, S_max=float("inf"),
                S_noise=1.0, round_sigma=None, init=None, return_trajectory=False):
  """The EDM sampler (Karras et al. 2022, Algorithm 2), as NVlabs/edm's `edm_sampler`.

  Noise levels (Eq. 5), rounded to what the denoiser supports, with t_N = 0:

  .. math::
    σ_i = \\Big(σ_{max}^{1/ρ} + \\frac{i}{N − 1}\\big(σ_{min}^{1/ρ} − σ_{max}^{1/ρ}\\big)
    \\Big)^ρ,\\quad i < N,\\qquad σ_N = 0,

  x_0 = latents · σ_0, then `solve_from` with Heun's method: steps 0..N−2 are Heun
  steps, the last one Euler (NFE = 2N − 1), each optionally preceded by churn
  (γ_i = min(S_churn/N, √2 − 1) for S_min <= σ_i <= S_max). With S_churn = 0 it is
  the deterministic Algorithm 1.

  Jit the caller with `num_steps` and `return_trajectory` static; σ_min, σ_max, ρ
  and S_* may be traced (no recompiles). Computes in the dtype of `latents`
  (concrete σ tables are built in float64 and cast once; traced ones in that dtype).

  Args:
    denoise: `denoise(x, sigma) -> D(x; sigma)` for NHWC `x` (B, H, W, C) and
      `sigma` of shape (B,).
    latents: NHWC unit-Gaussian latents (B, H, W, C); scaled by σ_0 inside.
    key: a jax.random key or one key per sample (shape (B,)); required when
      S_churn is not statically 0. Sample b uses `fold_in(key, b)`, and step i's
      noise is `normal(fold_in(key_b, i), latents.shape[1:])`, so a sample depends
      only on its own key (not on batch size or device count).
    num_steps: N >= 2 (static).
    sigma_min, sigma_max: noise level range, 0 < σ_min < σ_max.
    rho: time-step exponent ρ > 0.
    S_churn, S_min, S_max, S_noise: stochasticity (Algorithm 2); see `solve_from`.
    round_sigma: optional σ ↦ nearest supported σ, applied to the table and to the
      raised levels (NVlabs' `net.round_sigma`); None is the identity.
    init: optional NHWC image to start from (SDEdit, headstart): x_0 = init + σ_0 ·
      latents instead of σ_0 · latents (set sigma_max to the starting level).
    return_trajectory: also return a `Trajectory`.

  Returns:
    Samples shaped and typed like `latents`; with `return_trajectory`,
    `(samples, Trajectory)`.

  Raises:
    ValueError: `latents` not 4-D, `init` not shaped like them, num_steps < 2,
      σ_min >= σ_max or not positive,
      ρ <= 0, S_churn < 0, noise without a key, keys not matching the batch.

  Example:
    >>> import jax
    >>> from edmjax import oracle
    >>> denoise = oracle.gaussian_denoiser(0.0, 0.5)
    >>> latents = jax.random.normal(jax.random.key(0), (16, 8, 8, 3))
    >>> sample = jax.jit(lambda z, k: edm_sampler(denoise, z, k, S_churn=10.0))
    >>> images = sample(latents, jax.random.key(1))
  """
  latents = _common.float_latents(latents)
  dtype = latents.dtype
  _checks.check_int_at_least("num_steps", num_steps, 2)
  sigma_min, sigma_max, rho = _common.host_or_device(dtype, sigma_min, sigma_max, rho)
  steps = schedules.edm_sigma_steps(num_steps, sigma_min, sigma_max, rho)
  if round_sigma is not None:
    steps = round_sigma(steps)
    _common.check_rounded_levels(steps, sigma_min)
  sigmas = jnp.asarray(schedules.append_zero(steps), dtype)  # t_N = 0
  churn = _common.churn_settings(S_churn, S_min, S_max, S_noise, key, latents.shape[0],
                                 num_steps, dtype)
  x = _common.initial_state(latents, sigmas[0], init)
  return _algorithm2(denoise, x, sigmas, solver="heun", churn=churn,
                     round_sigma=round_sigma, return_trajectory=return_trajectory)
