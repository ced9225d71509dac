"""DPM-Solver-12 / -23 with adaptive step sizes (Lu et al. 2022, as k-diffusion).

Lu et al. 2022, "DPM-Solver" (arXiv 2206.00927), Sec. 3.4 and Algorithm 6: each
step from λ = −log σ to λ + h computes a lower-order (DPM-Solver-1 for order 2,
DPM-Solver-2 with r_1 = 1/3 for order 3) and a higher-order estimate x_low, x_high
that share their evaluations, measures

.. math::
  E = \\frac{1}{\\sqrt d}\\,\\Big\\lVert \\frac{x_{low} − x_{high}}
      {\\max(\\mathrm{atol},\\ \\mathrm{rtol} \\max(|x_{low}|, |x_{prev}|))} \\Big\\rVert_2

(d the number of elements of a sample, x_prev the previous accepted x_low) and lets
a PID controller (Söderlind 2003, k-diffusion's `PIDStepSizeController`) choose the
next h: with ε_k = 1/(E_k + 10⁻⁸) and q the order (1.5 when η > 0),

.. math::
  f = 1 + \\arctan\\big(ε_k^{β_1} ε_{k−1}^{β_2} ε_{k−2}^{β_3} − 1\\big),\\quad
  β_1 = \\tfrac{k_P + k_I + k_D}{q},\\ β_2 = −\\tfrac{k_P + 2k_D}{q},\\
  β_3 = \\tfrac{k_D}{q},

accepting the step when f >= accept_safety; h ← f·h either way. k-diffusion's
defaults (rtol 0.05, atol 0.0078, h_init 0.05, k_I = 1, accept_safety 0.81) are
this module's.

Difference from k-diffusion, on purpose: k-diffusion measures E over the whole
batch, so a sample's steps depend on the others in its batch; here every sample has
its own λ, h and controller (a sample is the same at any batch size or device
count), which equals k-diffusion run on that sample alone.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from edmjax import _checks
from edmjax.samplers import _common
from edmjax.samplers import dpm_steps
from edmjax.samplers.ancestral import ancestral_step

__all__ = ["AdaptiveInfo", "dpm_adaptive_sampler"]

_FINISH_TOLERANCE = 1e-5  # the loop ends once λ >= λ(σ_min) − 1e-5 (k-diffusion's)
_PID_EPS = 1e-8


class AdaptiveInfo(NamedTuple):
  """Per-sample statistics of `dpm_adaptive_sampler` (each of shape (B,)).

  Attributes:
    steps: iterations, accepted and rejected.
    nfe: denoiser evaluations, `order × steps`.
    n_accept: accepted steps.
    n_reject: rejected steps.
    budget_exceeded: True where `max_steps` iterations did not reach σ_min; that
      sample is returned as NaN.
  """
  steps: jax.Array
  nfe: jax.Array
  n_accept: jax.Array
  n_reject: jax.Array
  budget_exceeded: jax.Array


class _State(NamedTuple):
  it: jax.Array          # () iterations of the loop
  lam: jax.Array         # (B,) λ of the current state
  x: jax.Array
  x_prev: jax.Array      # the last accepted x_low (x_0 at the start)
  h: jax.Array           # (B,) proposed step
  errs: jax.Array        # (B, 3) the controller's 1/E history
  steps: jax.Array       # (B,) int32
  n_accept: jax.Array    # (B,) int32
  seen: tuple            # trajectory buffers (or empty)


def _per_sample(v, x):
  return jnp.reshape(v, (-1,) + (1,) * (x.ndim - 1))


def dpm_adaptive_sampler(denoise, latents, key=None, *, sigma_min=0.002, sigma_max=80.0,
                         order=3, rtol=0.05, atol=0.0078, h_init=0.05, pcoeff=0.0,
                         icoeff=1.0, dcoeff=0.0, accept_safety=0.81, eta=0.0,
                         S_noise=1.0, max_steps=1000, init=None, return_info=False,
                         return_trajectory=False):
  """Adaptive DPM-Solver from σ_max to σ_min (k-diffusion's `sample_dpm_adaptive`).

  x_0 = latents · σ_max at λ_0 = −log σ_max. While λ < −log σ_min − 10⁻⁵, a step
  to λ' = min(−log σ_min, λ + h) computes x_low, x_high (module docstring; orders
  (1, 2) for `order=2`, (2, 3) for `order=3`, sharing `order` evaluations), the
  error E and the controller's factor f; if accepted, x ← x_high (+ ancestral noise
  for η > 0: the step then goes to λ'' = min(−log σ_min, −log σ_down) and adds
  sqrt(σ(λ')² − σ(λ'')²) · S_noise · ε), x_prev ← x_low, λ ← λ'. The result is the
  state at σ_min (not denoised further), as in k-diffusion.

  One `lax.while_loop` for the batch, each sample with its own step size (and
  finished samples left unchanged) until every sample is done or `max_steps`
  iterations have run. NFE per sample = `order × info.steps` (the defaults spend
  about 30–45 on Gaussian data over [0.002, 80]); the error is proportional to the
  tolerance (measured slope 0.94 for order 2, rtol 3e-3 to 3e-5, atol = rtol/10).

  Args:
    denoise: `denoise(x, sigma) -> D(x; sigma)` for NHWC `x` (B, H, W, C) and `sigma`
      of shape (B,) (per-sample levels: the samples are at different λ).
    latents: NHWC unit-Gaussian latents (B, H, W, C); scaled by σ_max inside.
    key: a jax.random key or one per sample (shape (B,)); needed when η > 0. Sample
      b uses `fold_in(key, b)`; its k-th accepted step adds
      `normal(fold_in(key_b, k), latents.shape[1:])` (`edmjax.keys`).
    sigma_min, sigma_max: 0 < σ_min < σ_max; may be traced.
    order: 2 (DPM-Solver-12) or 3 (DPM-Solver-23), static.
    rtol, atol: relative (>= 0) and absolute (> 0) tolerances of E.
    h_init: the first proposed step in λ, > 0.
    pcoeff, icoeff, dcoeff: the PID controller's k_P, k_I, k_D.
    accept_safety: accept a step when f >= accept_safety.
    eta: η >= 0, ancestral noise fraction (0: the ODE).
    S_noise: noise inflation.
    max_steps: the iteration budget (accepted + rejected), >= 1, static.
    init: optional NHWC image to start from: x_0 = init + σ_max · latents.
    return_info: also return an `AdaptiveInfo`.
    return_trajectory: also return a `Trajectory` of the accepted steps, padded to
      `max_steps` with NaN: `sigma` (max_steps, B) (each sample has its own levels),
      `x` and `denoised` (max_steps, B, H, W, C) — memory max_steps × batch ×
      image; lower max_steps when it matters.

  Returns:
    Samples (at σ_min) shaped and typed like `latents`, NaN where the budget ran
    out; then `AdaptiveInfo` if `return_info`, then `Trajectory` if
    `return_trajectory` (a tuple when either is asked for).

  Raises:
    ValueError: a bad σ range, order not 2 or 3, a negative rtol / η, atol or
      h_init not > 0, max_steps < 1, noise without a key, `latents` not 4-D.

  Example:
    >>> import jax
    >>> from edmjax import oracle
    >>> z = jax.random.normal(jax.random.key(0), (4, 8, 8, 1))
    >>> run = jax.jit(lambda z: dpm_adaptive_sampler(oracle.gaussian_denoiser(0.0, 0.5),
    ...                                              z, return_info=True))
    >>> x, info = run(z)
    >>> bool(info.budget_exceeded.any())
    False
  """
  latents = _common.float_latents(latents)
  dtype = latents.dtype
  batch = latents.shape[0]
  _checks.check_positive("sigma_min", sigma_min)
  _checks.check_less("sigma_min", sigma_min, "sigma_max", sigma_max)
  _checks.check_choice("order", order, (2, 3))
  _checks.check_nonnegative("rtol", rtol)
  _checks.check_positive("atol", atol)
  _checks.check_positive("h_init", h_init)
  _checks.check_positive("accept_safety", accept_safety)
  _checks.check_int_at_least("max_steps", max_steps, 1)
  keys = _common.noise_keys(eta, S_noise, key, batch, "dpm_adaptive_sampler")
  noisy = keys is not None

  f = lambda v: jnp.asarray(v, dtype)  # noqa: E731
  lam_start, lam_end = -jnp.log(f(sigma_max)), -jnp.log(f(sigma_min))
  rtol, atol, eta, S_noise, accept_safety = (
      f(v) for v in (rtol, atol, eta, S_noise, accept_safety))
  q = jnp.where(eta != 0, f(1.5), f(order))   # the controller's order
  pcoeff, icoeff, dcoeff = f(pcoeff), f(icoeff), f(dcoeff)
  b1, b2, b3 = (pcoeff + icoeff + dcoeff) / q, -(pcoeff + 2 * dcoeff) / q, dcoeff / q
  elements = math.prod(latents.shape[1:])

  def active(st):
    return st.lam < lam_end - _FINISH_TOLERANCE

  def body(st: _State) -> _State:
    live = active(st)
    lam_next = jnp.minimum(lam_end, st.lam + st.h)
    if noisy:
      sigma, sigma_next = dpm_steps.sigma_of_lambda(st.lam), dpm_steps.sigma_of_lambda(lam_next)
      down, _ = ancestral_step(sigma, sigma_next, eta)
      lam_to = jnp.minimum(lam_end, dpm_steps.lambda_of_sigma(down))
      up = _common.safe_sqrt(sigma_next**2 - dpm_steps.sigma_of_lambda(lam_to)**2)
    else:
      lam_to = lam_next
    eps, denoised = dpm_steps.eps_at(denoise, st.x, st.lam)
    if order == 2:
      x_low = dpm_steps.dpm_solver_1_step(st.x, eps, st.lam, lam_to)
      x_high, _ = dpm_steps.dpm_solver_2_step(denoise, st.x, eps, st.lam, lam_to)
    else:
      x_low, eps_r1 = dpm_steps.dpm_solver_2_step(denoise, st.x, eps, st.lam, lam_to,
                                                  r1=1 / 3)
      x_high = dpm_steps.dpm_solver_3_step(denoise, st.x, eps, st.lam, lam_to,
                                           eps_r1=eps_r1)
    delta = jnp.maximum(atol, rtol * jnp.maximum(jnp.abs(x_low), jnp.abs(st.x_prev)))
    ratio = jnp.reshape((x_low - x_high) / delta, (batch, -1))
    error = jnp.linalg.norm(ratio, axis=1) / math.sqrt(elements)
    # PID controller (k-diffusion's propose_step).
    inv = 1 / (error + _PID_EPS)
    errs = jnp.where((st.steps == 0)[:, None], inv[:, None], st.errs).at[:, 0].set(inv)
    factor = errs[:, 0]**b1 * errs[:, 1]**b2 * errs[:, 2]**b3
    factor = 1 + jnp.arctan(factor - 1)
    accept = factor >= accept_safety
    shifted = jnp.stack([errs[:, 0], errs[:, 0], errs[:, 1]], axis=1)
    errs = jnp.where(accept[:, None], shifted, errs)
    x_new = x_high
    if noisy:
      x_new = x_new + (_per_sample(up * S_noise, x_high)
                       * _common.step_noise(keys, st.n_accept, x_high))
    take = live & accept
    seen = st.seen
    if return_trajectory:
      row = jnp.where(take, st.n_accept, max_steps)  # out of range: dropped
      cols = jnp.arange(batch)
      seen = tuple(buf.at[row, cols].set(v, mode="drop") for buf, v in
                   zip(seen, (dpm_steps.sigma_of_lambda(st.lam), st.x, denoised)))
    return _State(
        it=st.it + 1,
        lam=jnp.where(take, lam_next, st.lam),
        x=jnp.where(_per_sample(take, st.x), x_new, st.x),
        x_prev=jnp.where(_per_sample(take, st.x), x_low, st.x_prev),
        h=jnp.where(live, st.h * factor, st.h),
        errs=jnp.where(live[:, None], errs, st.errs),
        steps=st.steps + live.astype(jnp.int32),
        n_accept=st.n_accept + take.astype(jnp.int32),
        seen=seen)

  x0 = _common.initial_state(latents, jnp.exp(-lam_start), init)
  seen = ()
  if return_trajectory:
    nan = jnp.asarray(np.nan, dtype)
    seen = (jnp.full((max_steps, batch), nan), jnp.full((max_steps,) + x0.shape, nan),
            jnp.full((max_steps,) + x0.shape, nan))
  # Per-sample state made from the latents, so that it follows their sharding.
  per_sample = jnp.zeros_like(latents[:, 0, 0, 0])
  zeros = per_sample.astype(jnp.int32)
  state = _State(it=jnp.zeros((), jnp.int32), lam=per_sample + lam_start,
                 x=x0, x_prev=x0, h=per_sample + f(h_init),
                 errs=per_sample[:, None] + jnp.ones((1, 3), dtype), steps=zeros,
                 n_accept=zeros, seen=seen)
  state = jax.lax.while_loop(
      lambda st: jnp.any(active(st)) & (st.it < max_steps), body, state)
  exceeded = active(state)
  x = jnp.where(_per_sample(exceeded, state.x), jnp.asarray(np.nan, dtype), state.x)
  out = (x,)
  if return_info:
    out += (AdaptiveInfo(steps=state.steps, nfe=order * state.steps,
                         n_accept=state.n_accept, n_reject=state.steps - state.n_accept,
                         budget_exceeded=exceeded),)
  if return_trajectory:
    out += (_common.Trajectory(*state.seen),)
  return out[0] if len(out) == 1 else out
