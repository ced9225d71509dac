"""DPM-Solver-fast (Lu et al. 2022): a fixed budget of evaluations, uniform in λ.

Lu et al. 2022, "DPM-Solver" (arXiv 2206.00927), Sec. 3.4 "DPM-Solver-fast", as
k-diffusion's `sample_dpm_fast`: an evaluation budget n is spent on
m = ⌊n/3⌋ + 1 steps, uniform in λ = −log σ from σ_max to σ_min, of orders

  3, ..., 3, 2, 1   (n divisible by 3: m − 2 third-order steps), or
  3, ..., 3, n mod 3   (otherwise: m − 1 third-order steps),

using exactly n evaluations (`edmjax.samplers.dpm_steps`). The result is the state
at σ_min (not denoised to σ = 0), as in k-diffusion.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np

from edmjax import _checks
from edmjax.samplers import _common
from edmjax.samplers import dpm_steps
from edmjax.samplers.ancestral import ancestral_step

__all__ = ["dpm_fast_orders", "dpm_fast_sampler"]


def dpm_fast_orders(nfe: int) -> list[int]:
  """The solver order of each step of DPM-Solver-fast with `nfe` evaluations.

  Example:
    >>> dpm_fast_orders(10), dpm_fast_orders(9)
    ([3, 3, 3, 1], [3, 3, 2, 1])
  """
  _checks.check_int_at_least("nfe", nfe, 1)
  m = nfe // 3 + 1
  if nfe % 3 == 0:
    return [3] * (m - 2) + [2, 1]
  return [3] * (m - 1) + [nfe % 3]


def dpm_fast_sampler(denoise, latents, key=None, *, nfe=18, sigma_min=0.002,
                     sigma_max=80.0, eta=0.0, S_noise=1.0, init=None,
                     return_trajectory=False):
  """DPM-Solver-fast from σ_max to σ_min with exactly `nfe` denoiser evaluations.

  λ_k = λ(σ_max) + k/m (λ(σ_min) − λ(σ_max)), k = 0..m, m = ⌊nfe/3⌋ + 1, and step k
  takes a DPM-Solver step of order `dpm_fast_orders(nfe)[k]` from λ_k to λ_{k+1}.
  With η > 0 each step is ancestral: it goes to λ'_k = min(λ(σ_min), λ(σ_down)) with
  (σ_down, σ_up) = `ancestral_step`(σ_k, σ_{k+1}, η) and then adds
  sqrt(σ_{k+1}² − σ(λ'_k)²) · S_noise · ε_k. x_0 = latents · σ_max; the result is the
  state at σ_min, not denoised further (k-diffusion's `sample_dpm_fast`). There is
  no σ table (the steps are the method's own); NFE = `nfe`. Global order 3 when
  nfe ≡ 2 (mod 3) (the last step of order 2; measured 3.4), otherwise 2 (its last
  step has order 1). Steps of equal order
  run in one `lax.scan` each (at most three).

  Args:
    denoise: `denoise(x, sigma) -> D(x; sigma)` for NHWC `x` (B, H, W, C) and `sigma`
      of shape (B,).
    latents: NHWC unit-Gaussian latents (B, H, W, C); scaled by σ_max inside.
    key: a jax.random key or one per sample (shape (B,)); needed when η > 0. Sample
      b uses `fold_in(key, b)`; step k's noise is `normal(fold_in(key_b, k),
      latents.shape[1:])` (`edmjax.keys`).
    nfe: the evaluation budget n >= 1 (static).
    sigma_min, sigma_max: 0 < σ_min < σ_max; may be traced.
    eta: η >= 0, the ancestral noise fraction (0: the deterministic ODE solver).
    S_noise: noise inflation.
    init: optional NHWC image to start from: x_0 = init + σ_max · latents.
    return_trajectory: also return a `Trajectory` of the m steps (σ_k, x_k, D(x_k;
      σ_k)).

  Returns:
    Samples (at σ_min) shaped and typed like `latents`; with `return_trajectory`,
    `(samples, Trajectory)`.

  Raises:
    ValueError: `latents` not 4-D; nfe < 1; a bad σ range; η < 0; noise without a
      key.

  Example:
    >>> import jax
    >>> from edmjax import oracle
    >>> z = jax.random.normal(jax.random.key(0), (4, 8, 8, 1))
    >>> x = jax.jit(lambda z: dpm_fast_sampler(oracle.gaussian_denoiser(0.0, 0.5), z,
    ...                                        nfe=10))(z)
  """
  latents = _common.float_latents(latents)
  dtype = latents.dtype
  orders = dpm_fast_orders(nfe)
  _checks.check_positive("sigma_min", sigma_min)
  _checks.check_less("sigma_min", sigma_min, "sigma_max", sigma_max)
  keys = _common.noise_keys(eta, S_noise, key, latents.shape[0], "dpm_fast_sampler")
  noisy = keys is not None
  m = len(orders)
  sigma_min, sigma_max = _common.host_or_device(dtype, sigma_min, sigma_max)
  xp = _common.xp_of(sigma_min, sigma_max)
  lam_start, lam_end = -xp.log(sigma_max), -xp.log(sigma_min)
  lams = (np.linspace(lam_start, lam_end, m + 1) if xp is np
          else jnp.linspace(lam_start, lam_end, m + 1, dtype=dtype))
  sigmas = xp.exp(-lams)
  if noisy:
    down, _ = ancestral_step(sigmas[:-1], sigmas[1:], eta)
    lam_to = xp.minimum(lam_end, -xp.log(down))
    up = xp.sqrt(xp.maximum(sigmas[1:]**2 - xp.exp(-lam_to)**2, 0))  # 0, not NaN, on rounding
  else:
    lam_to = lams[1:]
    up = xp.zeros_like(lams[1:])
  lams, lam_to, up = (jnp.asarray(v, dtype) for v in (lams, lam_to, up))
  S_noise = jnp.asarray(S_noise, dtype)

  def step(x, lam, lam_next, up_k, k, order):
    eps, denoised = dpm_steps.eps_at(denoise, x, lam)
    if order == 1:
      x_next = dpm_steps.dpm_solver_1_step(x, eps, lam, lam_next)
    elif order == 2:
      x_next, _ = dpm_steps.dpm_solver_2_step(denoise, x, eps, lam, lam_next)
    else:
      x_next = dpm_steps.dpm_solver_3_step(denoise, x, eps, lam, lam_next)
    if noisy:
      x_next = x_next + up_k * S_noise * _common.step_noise(keys, k, x)
    return x_next, (dpm_steps.sigma_of_lambda(lam), x, denoised)

  x = _common.initial_state(latents, jnp.asarray(sigma_max, dtype), init)
  seen = []
  start = 0
  for order, group in itertools.groupby(orders):
    count = len(list(group))
    idx = slice(start, start + count)

    def body(x, step_in, order=order):
      lam, lam_next, up_k, k = step_in
      x_next, rec = step(x, lam, lam_next, up_k, k, order)
      return x_next, (rec if return_trajectory else None)

    x, rec = jax.lax.scan(body, x, (lams[:-1][idx], lam_to[idx], up[idx],
                                    jnp.arange(start, start + count)))
    seen.append(rec)
    start += count
  per_step = _common.stack_steps(*seen) if return_trajectory else None
  return _common.finish(x, per_step, return_trajectory)
