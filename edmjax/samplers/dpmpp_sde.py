"""Stochastic DPM-Solver++ (k-diffusion's `sample_dpmpp_sde`), r = ½ by default.

Each step from λ_i = −log σ_i to λ_{i+1} takes an ancestral half step to
s = λ_i + r h (h = λ_{i+1} − λ_i), evaluates the denoiser there, and then an
ancestral full step from x_i with the combined data prediction:

.. math::
  (σ_d, σ_u) &= \\mathrm{ancestral\\_step}(σ_i, σ(s), η),\\quad
  u = \\frac{σ_d}{σ_i} x_i − (e^{λ_i − λ(σ_d)} − 1) D_i + S_{noise}\\, σ_u\\, z_1,\\\\
  D' &= (1 − \\tfrac{1}{2r}) D_i + \\tfrac{1}{2r} D(u; σ(s)),\\\\
  (σ'_d, σ'_u) &= \\mathrm{ancestral\\_step}(σ_i, σ_{i+1}, η),\\quad
  x_{i+1} = \\frac{σ'_d}{σ_i} x_i − (e^{λ_i − λ(σ'_d)} − 1) D'
            + S_{noise}\\, σ'_u\\, z_2.

Noise. k-diffusion draws z_1 and z_2 from one Brownian motion W in σ (its default
`BrownianTreeNoiseSampler`): z_1 = (W(σ(s)) − W(σ_i))/sqrt(σ_i − σ(s)) and z_2 =
(W(σ_{i+1}) − W(σ_i))/sqrt(σ_i − σ_{i+1}). The interval of z_1 lies inside that
of z_2, so within a step they are correlated with c = sqrt((σ_i − σ(s))/(σ_i −
σ_{i+1})); across steps the intervals are disjoint and the draws independent. This
sampler draws exactly that law from two independent per-step normals
(`brownian_pair`), so it samples k-diffusion's default distribution without a
tree; handing z_1, z_2 to k-diffusion through its `noise_sampler` reproduces a
sample exactly.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from edmjax import _checks
from edmjax.samplers import _common
from edmjax.samplers.ancestral import ancestral_step

__all__ = ["brownian_pair", "dpmpp_sde_sampler"]


def brownian_pair(keys, i, x, correlation):
  """(z_1, z_2) of step i: z_1 = ε_0, z_2 = c ε_0 + sqrt(1 − c²) ε_1.

  ε_0 = `step_noise(keys, i, x)` and ε_1 = `step_noise(keys, i, x, draw=1)`
  (`edmjax.keys`): independent N(0, I), so (z_1, z_2) are unit normals with
  correlation c, the law of the normalised Brownian increments over nested
  intervals.
  """
  e0 = _common.step_noise(keys, i, x)
  e1 = _common.step_noise(keys, i, x, draw=1)
  return e0, correlation * e0 + _common.safe_sqrt(1 - correlation**2) * e1


def _coefficients(table, r, eta, xp):
  """Per-step scalars of the two ancestral sub-steps, as k-diffusion forms them."""
  sigma_fn = lambda t: xp.exp(-t)     # noqa: E731
  t_fn = lambda sigma: -xp.log(sigma)  # noqa: E731
  t, t_next = t_fn(table[:-2]), t_fn(table[1:-1])
  h = t_next - t
  s = t + h * r
  sd, su = ancestral_step(sigma_fn(t), sigma_fn(s), eta)
  s_ = t_fn(sd)
  ratio_1, coef_1 = sigma_fn(s_) / sigma_fn(t), -xp.expm1(t - s_)
  sd2, su2 = ancestral_step(sigma_fn(t), sigma_fn(t_next), eta)
  t_next_ = t_fn(sd2)
  ratio_2, coef_2 = sigma_fn(t_next_) / sigma_fn(t), -xp.expm1(t - t_next_)
  # Brownian correlation of (z_1, z_2): nested intervals [σ(s), σ_i] ⊂ [σ_{i+1}, σ_i].
  sigma_i = table[:-2]
  corr = xp.sqrt((sigma_i - sigma_fn(s)) / (sigma_i - table[1:-1]))
  return ratio_1, coef_1, su, sigma_fn(s), ratio_2, coef_2, su2, corr


def dpmpp_sde_sampler(denoise, latents, key=None, *, num_steps=18, sigma_min=0.002,
                      sigma_max=80.0, rho=7.0, sigmas=None, eta=1.0, S_noise=1.0, r=0.5,
                      init=None, return_trajectory=False):
  """Stochastic DPM-Solver++ over Karras levels or a given σ table.

  Steps 0..N−2 as in the module docstring (two evaluations each); the last step,
  to σ_N = 0, is an Euler step (x_N = D(x_{N−1}; σ_{N−1})). NFE = 2N − 1. η = 0
  is deterministic: for r = ½ it is DPM-Solver++(2S), `dpmpp_2s_ancestral_sampler`
  with η = 0 (global order 2). Steps 0..N−2 run in one
  `lax.scan`, the last is static.

  Args:
    denoise: `denoise(x, sigma) -> D(x; sigma)` for NHWC `x` (B, H, W, C) and `sigma`
      of shape (B,).
    latents: NHWC unit-Gaussian latents (B, H, W, C); scaled by σ_0 inside.
    key: a jax.random key or one per sample (shape (B,)); may be None only when η
      or S_noise is statically 0. Sample b uses `fold_in(key, b)`; step i draws
      ε_0 = `normal(fold_in(key_b, i))` and ε_1 = `normal(fold_in(fold_in(key_b, i),
      1))` and uses (z_1, z_2) = `brownian_pair` (module docstring).
    num_steps, sigma_min, sigma_max, rho: Karras levels (Eq. 5) + σ_N = 0, used when
      `sigmas` is None.
    sigmas: optional `(N + 1,)` strictly decreasing levels ending in 0.
    eta: η >= 0, the fraction of ancestral noise.
    S_noise: noise inflation.
    r: 0 < r <= 1, where the intermediate evaluation sits (λ_i + r h).
    init: optional NHWC image to start from: x_0 = init + σ_0 · latents.
    return_trajectory: also return a `Trajectory`.

  Returns:
    Samples shaped and typed like `latents`; with `return_trajectory`,
    `(samples, Trajectory)`.

  Raises:
    ValueError: `latents` not 4-D; num_steps < 2; a bad σ range or table; η < 0; r
      outside (0, 1]; noise without a key; keys not matching the batch.

  Example:
    >>> import jax
    >>> from edmjax import oracle
    >>> z = jax.random.normal(jax.random.key(0), (4, 8, 8, 1))
    >>> x = jax.jit(lambda z, k: dpmpp_sde_sampler(
    ...     oracle.gaussian_denoiser(0.0, 0.5), z, k, num_steps=10))(z, jax.random.key(1))
  """
  latents = _common.float_latents(latents)
  dtype = latents.dtype
  table = _common.sigma_table(dtype, sigmas, num_steps, sigma_min, sigma_max, rho)
  _checks.check_positive("r", r)
  r_value = _checks.concrete_value(r)
  if r_value is not None and float(r_value) > 1:
    raise ValueError(f"r={float(r_value)!r} is not allowed; 0 < r <= 1 (the "
                     "intermediate point λ_i + r h lies inside the step).")
  keys = _common.noise_keys(eta, S_noise, key, latents.shape[0], "dpmpp_sde_sampler")
  noisy = keys is not None
  num = table.shape[0] - 1
  xp = _common.xp_of(table, eta, r)
  coefs = tuple(jnp.asarray(v, dtype) for v in _coefficients(table, r, eta, xp))
  table = jnp.asarray(table, dtype)
  fac = 1 / (2 * jnp.asarray(r, dtype))
  S_noise = jnp.asarray(S_noise, dtype)

  def body(x, step_in):
    sigma_cur, (ratio_1, coef_1, su, sigma_s, ratio_2, coef_2, su2, corr), i = step_in
    denoised = _common.call_denoiser(denoise, x, sigma_cur)
    if noisy:
      z_1, z_2 = brownian_pair(keys, i, x, corr)
    x_2 = ratio_1 * x + coef_1 * denoised
    if noisy:
      x_2 = x_2 + z_1 * S_noise * su
    denoised_2 = _common.call_denoiser(denoise, x_2, sigma_s)
    denoised_d = (1 - fac) * denoised + fac * denoised_2
    x_next = ratio_2 * x + coef_2 * denoised_d
    if noisy:
      x_next = x_next + z_2 * S_noise * su2
    return x_next, ((sigma_cur, x, denoised) if return_trajectory else None)

  x = _common.initial_state(latents, table[0], init)
  x, seen = jax.lax.scan(body, x, (table[:-2], coefs, jnp.arange(num - 1)))
  # Last step, to σ_N = 0: Euler, x_N = D(x_{N−1}; σ_{N−1}).
  denoised = _common.call_denoiser(denoise, x, table[-2])
  x_out = x + (x - denoised) / table[-2] * (table[-1] - table[-2])
  per_step = None
  if return_trajectory:
    per_step = _common.stack_steps(seen, [table[-2], x, denoised])
  return _common.finish(x_out, per_step, return_trajectory)
