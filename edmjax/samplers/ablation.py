"""The generalized ablation sampler of Karras et al. 2022 (NVlabs/edm `ablation_sampler`).

Every deterministic sampler of the paper's Table 1 integrates the ODE (EDM Eq. 4)

.. math::
  \\frac{dx}{dt} = \\Big(\\frac{\\dot σ(t)}{σ(t)} + \\frac{\\dot s(t)}{s(t)}\\Big) x
                 − \\frac{\\dot σ(t) s(t)}{σ(t)} D\\Big(\\frac{x}{s(t)}; σ(t)\\Big)

for a noise schedule σ(t), a scaling s(t) and time steps t_i; this sampler takes each
of them, and the solver, as a separate choice, and adds the churn of Algorithm 2.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from edmjax import _checks
from edmjax import schedules
from edmjax.samplers import _common

__all__ = ["ablation_sampler", "default_sigma_range"]

# NVlabs/edm's ablation sampler takes the default VP range from σ_VP(ε_s) and σ_VP(1)
# with β_d = 19.9, β_min = 0.1 (generate.py since commit 62072d2, "Fix a couple of
# typos"; the first commit had 19.1).
_NVLABS_VP_RANGE_BETA_D = 19.9
_NVLABS_VP_RANGE_BETA_MIN = 0.1


def default_sigma_range(discretization: str, epsilon_s=1e-3):
  """(σ_min, σ_max) the ablation sampler uses when none is given, as NVlabs/edm.

  vp: (σ_VP(ε_s), σ_VP(1)) with β_d = 19.9, β_min = 0.1 (≈ (0.0105, 152.2) for
  ε_s = 1e−3); ve: (0.02, 100); iddpm: (0.002, 81); edm: (0.002, 80).
  """
  _checks.check_choice("discretization", discretization, schedules.DISCRETIZATIONS)
  if discretization == "vp":
    return schedules.vp_default_sigma_range(
        epsilon_s, _NVLABS_VP_RANGE_BETA_D, _NVLABS_VP_RANGE_BETA_MIN)
  return {"ve": (0.02, 100.0), "iddpm": (0.002, 81.0), "edm": (0.002, 80.0)}[discretization]


def _check_alpha(alpha):
  v = _checks.concrete_value(alpha)
  if v is not None and not (0 < float(v) <= 1):
    raise ValueError(
        f"alpha={float(v)!r} is not allowed; the trapezoid parameter must satisfy "
        "0 < alpha <= 1 (alpha = 1 is Heun's method, alpha = 0.5 the midpoint method).")


def ablation_sampler(denoise, latents, key=None, *, num_steps=18, sigma_min=None,
                     sigma_max=None, rho=7.0, solver="heun", discretization="edm",
                     schedule="linear", scaling="none", epsilon_s=1e-3, C_1=0.001,
                     C_2=0.008, M=1000, alpha=1.0, S_churn=0.0, S_min=0.0,
                     S_max=float("inf"), S_noise=1.0, round_sigma=None, init=None,
                     return_trajectory=False):
  """Generalized sampler over the design space of Karras et al. 2022 (Table 1).

  Formulas and defaults follow NVlabs/edm's `ablation_sampler`:

  * Noise levels σ_0 > ... > σ_{N−1} from `discretization` ∈ {vp, ve, iddpm, edm}
    over [σ_min, σ_max] (defaults per discretization, `default_sigma_range`); the VP
    schedule's β_d, β_min are refit so that σ(ε_s) = σ_min, σ(1) = σ_max.
  * Time steps t_i = σ⁻¹(round_sigma(σ_i)) for the `schedule` σ(t) ∈ {vp, ve,
    linear}, t_N = 0; scaling s(t) ∈ {vp: 1/sqrt(1 + σ(t)²), none: 1}.
  * x_0 = latents · σ(t_0) · s(t_0). Step i (Algorithm 2 in t):

  .. math::
    γ_i &= \\min(S_{churn}/N, \\sqrt2 − 1)\\,[S_{min} ≤ σ(t_i) ≤ S_{max}],\\quad
    t\\_hat = σ^{-1}(\\mathrm{round}(σ(t_i) + γ_i σ(t_i))),\\\\
    x\\_hat &= \\frac{s(t\\_hat)}{s(t_i)} x_i
       + \\sqrt{\\max(σ(t\\_hat)^2 − σ(t_i)^2, 0)}\\, s(t\\_hat)\\, S_{noise}\\, ε_i,\\\\
    d(x, t) &= \\Big(\\frac{σ'(t)}{σ(t)} + \\frac{s'(t)}{s(t)}\\Big) x
       − \\frac{σ'(t) s(t)}{σ(t)} D\\Big(\\frac{x}{s(t)}; σ(t)\\Big),\\quad
    h = t_{i+1} − t\\_hat,\\\\
    d\\_cur &= d(x\\_hat, t\\_hat),\\quad x' = x\\_hat + α h\\, d\\_cur,\\quad
    t' = t\\_hat + α h,\\quad d\\_prime = d(x', t'),\\\\
    x_{i+1} &= x\\_hat + h\\Big(\\big(1 − \\tfrac{1}{2α}\\big) d\\_cur
       + \\tfrac{1}{2α} d\\_prime\\Big)\\quad \\text{(heun; euler and the last step:
       } x_{i+1} = x\\_hat + h\\, d\\_cur).

  α = 1 is Heun's method (the paper's choice), α = ½ the explicit midpoint method;
  every α in (0, 1] is second order. Where no noise is added t_hat = t_i exactly.
  The last step, to t_N = 0, is Euler, so σ(0) = 0 is never divided by.

  Steps 0..N−2 run in one `lax.scan`, the last step is static. Jit the caller with
  num_steps and the string options static; σ_min, σ_max, ρ, α and S_* may be traced
  (no recompiles; ε_s, C_1, C_2, M are Python numbers). Computes in the dtype of
  `latents`; concrete tables are built in float64 and cast once.

  Args:
    denoise: `denoise(x, sigma) -> D(x; sigma)` for NHWC `x` (B, H, W, C) and `sigma`
      of shape (B,).
    latents: NHWC unit-Gaussian latents (B, H, W, C).
    key: a jax.random key or one key per sample (shape (B,)); required when S_churn
      is not statically 0. Sample b uses `fold_in(key, b)`; step i's noise is
      `normal(fold_in(key_b, i), latents.shape[1:])`.
    num_steps: N >= 2 (static).
    sigma_min, sigma_max: noise-level range; None takes the discretization's default.
    rho: EDM time-step exponent ρ > 0 (discretization 'edm').
    solver: 'euler' or 'heun'.
    discretization: 'vp', 've', 'iddpm' or 'edm'.
    schedule: σ(t): 'vp', 've' or 'linear'.
    scaling: s(t): 'vp' or 'none'.
    epsilon_s: ε_s, the VP end time (VP discretization, VP β refit).
    C_1, C_2, M: the iDDPM table u_0 > ... > u_M = 0.
    alpha: α ∈ (0, 1] of the explicit trapezoidal rule.
    S_churn, S_min, S_max, S_noise: stochasticity of Algorithm 2, on σ(t).
    round_sigma: optional σ ↦ nearest supported σ (NVlabs' `net.round_sigma`), e.g.
      `schedules.iddpm_round_sigma` for an iDDPM network; None is the identity.
    init: optional NHWC image to start from (SDEdit): x_0 = s(t_0)·(init + σ(t_0) ·
      latents) instead of s(t_0)·σ(t_0)·latents.
    return_trajectory: also return a `Trajectory` (with σ(t_i) and scaled states).

  Returns:
    Samples shaped and typed like `latents` (the final state x_N, s(0) = 1); with
    `return_trajectory`, `(samples, Trajectory)`.

  Raises:
    ValueError: an unknown solver, discretization, schedule or scaling; num_steps <
      2; σ_min >= σ_max or not positive; ρ <= 0; α outside (0, 1]; S_churn < 0; noise
      without a key; `latents` not 4-D NHWC; keys not matching the batch.

  Example:
    >>> import jax
    >>> from edmjax import oracle
    >>> denoise = oracle.gaussian_denoiser(0.0, 0.5)
    >>> latents = jax.random.normal(jax.random.key(0), (16, 8, 8, 3))
    >>> vp = jax.jit(lambda z: ablation_sampler(
    ...     denoise, z, solver='euler', discretization='vp', schedule='vp',
    ...     scaling='vp', num_steps=64))
    >>> images = vp(latents)
  """
  _common.check_solver(solver)
  _checks.check_choice("discretization", discretization, schedules.DISCRETIZATIONS)
  _checks.check_choice("schedule", schedule, schedules.SCHEDULES)
  _checks.check_choice("scaling", scaling, schedules.SCALINGS)
  latents = _common.float_latents(latents)
  dtype = latents.dtype
  _checks.check_int_at_least("num_steps", num_steps, 2)
  _check_alpha(alpha)
  default_min, default_max = default_sigma_range(discretization, epsilon_s)
  sigma_min = default_min if sigma_min is None else sigma_min
  sigma_max = default_max if sigma_max is None else sigma_max
  _checks.check_positive("sigma_min", sigma_min)
  _checks.check_positive("sigma_max", sigma_max)
  _checks.check_less("sigma_min", sigma_min, "sigma_max", sigma_max)
  _checks.check_positive("rho", rho)
  sigma_min, sigma_max, rho = _common.host_or_device(dtype, sigma_min, sigma_max, rho)

  # VP β refit to the range, the noise levels, and the schedule σ(t), s(t).
  beta_d, beta_min = schedules.vp_refit_betas(sigma_min, sigma_max, epsilon_s)
  if not _common.is_traced(beta_d, beta_min):
    beta_d, beta_min = float(beta_d), float(beta_min)  # weakly typed in jnp
  sigma_levels = schedules.sigma_steps(
      discretization, num_steps, sigma_min, sigma_max, rho=rho, epsilon_s=epsilon_s,
      C_1=C_1, C_2=C_2, M=M)
  sched = schedules.make_schedule(schedule, scaling, beta_d=beta_d, beta_min=beta_min)
  if round_sigma is not None:
    sigma_levels = round_sigma(sigma_levels)
    _common.check_rounded_levels(sigma_levels, sigma_min)
  t_table = schedules.append_zero(sched.sigma_inv(sigma_levels))  # t_N = 0
  # x_0 = latents · σ(t_0) s(t_0), the factor in float64 when the table is concrete.
  x_scale = sched.sigma(t_table[0]) * sched.s(t_table[0])
  t_steps = jnp.asarray(t_table, dtype)
  if init is not None:
    init_scale = jnp.asarray(sched.s(t_table[0]), dtype)

  keys = _common.churn_keys(S_churn, key, latents.shape[0])
  churn = keys is not None
  if churn:
    S_min, S_max, S_noise = (jnp.asarray(v, dtype) for v in (S_min, S_max, S_noise))
    gamma_churn = _common.churn_gamma(S_churn, num_steps, dtype)
  alpha = jnp.asarray(alpha, dtype)

  def denoise_at(x, t):
    """D(x/s(t); σ(t)), the denoiser on the unscaled state."""
    return _common.call_denoiser(denoise, x / sched.s(t), sched.sigma(t))

  def step(x_cur, t_cur, t_next, i, second_order):
    sigma_cur = sched.sigma(t_cur)
    # Increase noise temporarily (Algorithm 2, in σ(t)).
    if churn:
      in_window = (S_min <= sigma_cur) & (sigma_cur <= S_max)
      gamma = jnp.where(in_window, gamma_churn, 0)
      sigma_raised = sigma_cur + gamma * sigma_cur
      if round_sigma is not None:
        sigma_raised = jnp.asarray(round_sigma(sigma_raised), dtype)
      churning = gamma > 0
      t_hat = jnp.where(churning, sched.sigma_inv(sigma_raised), t_cur)
      x_raised = (sched.s(t_hat) / sched.s(t_cur) * x_cur
                  + _common.safe_sqrt(sched.sigma(t_hat)**2 - sigma_cur**2)
                  * sched.s(t_hat) * S_noise * _common.step_noise(keys, i, x_cur))
      x_hat = jnp.where(churning, x_raised, x_cur)  # exactly x_i outside the window
    else:
      t_hat, x_hat = t_cur, x_cur
    # Euler step.
    h = t_next - t_hat
    denoised = denoise_at(x_hat, t_hat)
    d_cur = sched.ode_derivative(x_hat, t_hat, denoised)
    if second_order:
      # Explicit trapezoidal rule with parameter α (Heun for α = 1).
      x_prime = x_hat + alpha * h * d_cur
      t_prime = t_hat + alpha * h
      d_prime = sched.ode_derivative(x_prime, t_prime, denoise_at(x_prime, t_prime))
      x_next = x_hat + h * ((1 - 1 / (2 * alpha)) * d_cur + 1 / (2 * alpha) * d_prime)
    else:
      x_next = x_hat + h * d_cur
    return x_next, (sigma_cur, x_cur, denoised)

  def body(x_cur, step_in):
    t_cur, t_next, i = step_in
    x_next, seen = step(x_cur, t_cur, t_next, i, solver == "heun")
    return x_next, (seen if return_trajectory else None)

  x = _common.initial_state(latents, jnp.asarray(x_scale, dtype),
                            None if init is None else init_scale * jnp.asarray(init, dtype))
  x, seen = jax.lax.scan(
      body, x, (t_steps[:-2], t_steps[1:-1], jnp.arange(num_steps - 1)))
  # Last step, to t_N = 0: Euler.
  x, seen_last = step(x, t_steps[-2], t_steps[-1], num_steps - 1, False)
  per_step = _common.stack_steps(seen, list(seen_last)) if return_trajectory else None
  return _common.finish(x, per_step, return_trajectory)
