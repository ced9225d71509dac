"""Euler-ancestral sampling (as k-diffusion's `sample_euler_ancestral`).

Each step goes from σ_i to σ_{i+1} by a deterministic Euler step down to σ_down and
then adds fresh noise of standard deviation σ_up, where σ_down² + σ_up² = σ_{i+1}²,
the split of `ancestral_step` (DDPM's ancestral step for η = 1, DDIM for η = 0).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from edmjax.samplers import _common

__all__ = ["ancestral_step", "euler_ancestral_sampler"]


def ancestral_step(sigma_from, sigma_to, eta=1.0):
  """(σ_down, σ_up) of an ancestral step from σ_from to σ_to (k-diffusion's split).

  .. math::
    σ_{up} = \\min\\Big(σ_{to},\\ η \\sqrt{σ_{to}^2 (σ_{from}^2 − σ_{to}^2) / σ_{from}^2}
             \\Big),\\qquad σ_{down} = \\sqrt{σ_{to}^2 − σ_{up}^2}.

  NumPy (float64) for concrete inputs, jax.numpy for JAX inputs. σ_to = 0 gives (0, 0).
  """
  xp = _common.xp_of(sigma_from, sigma_to, eta)
  sigma_from, sigma_to = xp.asarray(sigma_from), xp.asarray(sigma_to)
  sigma_up = xp.minimum(
      sigma_to, eta * xp.sqrt(sigma_to**2 * (sigma_from**2 - sigma_to**2) / sigma_from**2))
  sigma_down = xp.sqrt(xp.maximum(sigma_to**2 - sigma_up**2, 0))
  return sigma_down, sigma_up


def euler_ancestral_sampler(denoise, latents, key=None, *, num_steps=18, sigma_min=0.002,
                            sigma_max=80.0, rho=7.0, sigmas=None, eta=1.0, S_noise=1.0,
                            init=None, return_trajectory=False):
  """Euler-ancestral sampler over Karras levels or a given σ table.

  x_0 = latents · σ_0; for i = 0..N−1, with (σ_down, σ_up) = `ancestral_step`(σ_i,
  σ_{i+1}, η):

  .. math::
    d\\_cur = (x_i − D(x_i; σ_i)) / σ_i,\\qquad
    x_{i+1} = x_i + (σ_{down} − σ_i)\\, d\\_cur + S_{noise}\\, σ_{up}\\, ε_i.

  The last step (σ_N = 0) has σ_down = σ_up = 0 and returns D(x_{N−1}; σ_{N−1}).
  η = 0 is the deterministic Euler method. NFE = N. All N steps run in one
  `lax.scan`. Jit the caller with num_steps and return_trajectory static; σ values,
  η and S_noise may be traced.

  Args:
    denoise: `denoise(x, sigma) -> D(x; sigma)` for NHWC `x` (B, H, W, C) and `sigma`
      of shape (B,).
    latents: NHWC unit-Gaussian latents (B, H, W, C); scaled by σ_0 inside.
    key: a jax.random key or one key per sample (shape (B,)); may be None only when
      η or S_noise is statically 0. Sample b uses `fold_in(key, b)`; step i's noise
      is `normal(fold_in(key_b, i), latents.shape[1:])`.
    num_steps, sigma_min, sigma_max, rho: Karras levels (Eq. 5) + t_N = 0, used when
      `sigmas` is None.
    sigmas: optional `(N + 1,)` strictly decreasing levels ending in 0 (overrides the
      four arguments above).
    eta: η >= 0, the fraction of ancestral noise.
    S_noise: noise inflation.
    init: optional NHWC image to start from (SDEdit, headstart): x_0 = init + σ_0 ·
      latents instead of σ_0 · latents.
    return_trajectory: also return a `Trajectory`.

  Returns:
    Samples shaped and typed like `latents`; with `return_trajectory`,
    `(samples, Trajectory)`.

  Raises:
    ValueError: `latents` not 4-D; num_steps < 2; a bad σ range or table; η < 0;
      noise without a key; keys not matching the batch.
  """
  latents = _common.float_latents(latents)
  dtype = latents.dtype
  table = _common.sigma_table(dtype, sigmas, num_steps, sigma_min, sigma_max, rho)
  keys = _common.noise_keys(eta, S_noise, key, latents.shape[0], "euler_ancestral_sampler")
  noisy = keys is not None
  num = table.shape[0] - 1
  sigma_down, sigma_up = ancestral_step(table[:-1], table[1:], eta)
  table, sigma_down, sigma_up = (
      jnp.asarray(v, dtype) for v in (table, sigma_down, sigma_up))
  S_noise = jnp.asarray(S_noise, dtype)

  def body(x_cur, step_in):
    sigma_cur, down, up, i = step_in
    denoised = _common.call_denoiser(denoise, x_cur, sigma_cur)
    d_cur = (x_cur - denoised) / sigma_cur
    x_next = x_cur + (down - sigma_cur) * d_cur
    if noisy:
      x_next = x_next + S_noise * up * _common.step_noise(keys, i, x_cur)
    return x_next, ((sigma_cur, x_cur, denoised) if return_trajectory else None)

  x, seen = jax.lax.scan(
      body, _common.initial_state(latents, table[0], init),
      (table[:-1], sigma_down, sigma_up, jnp.arange(num)))
  return _common.finish(x, seen, return_trajectory)
