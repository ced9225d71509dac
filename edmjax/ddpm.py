"""The DDPM baseline (Ho et al. 2020) and DDIM (Song et al. 2021), with a bridge to EDM.

Notation of Ho et al. 2020 ("Denoising Diffusion Probabilistic Models", arXiv
2006.11239) with 0-based time steps: the tables have length T and entry t belongs to
the paper's step t + 1. With α_t = 1 − β_t and ᾱ_t = Π_{s≤t} α_s,

.. math::
  q(x_t \\mid x_0) = N(\\sqrt{ᾱ_t}\\, x_0, (1 − ᾱ_t) I),

an ε-model is `eps_fn(x_t, t)` with integer `t` of shape `(batch,)` in `[0, T)` that
predicts the noise ε of x_t = sqrt(ᾱ_t) x_0 + sqrt(1 − ᾱ_t) ε, and images are NHWC.

β tables are built on the host in float64 (NumPy) and cast once to the dtype of the
images; pass them to jitted functions by closure (they are constants, not arguments).

EDM bridge (Karras et al. 2022, arXiv 2206.00364, Sec. 2 and Appendix C.3.4): DDPM is
the VP process with s(t) = sqrt(ᾱ_t) and σ_t = sqrt(1/ᾱ_t − 1), so
x = x_t / sqrt(ᾱ_t) = x_0 + σ_t ε is data plus noise of level σ_t and

.. math::
  D(x; σ) = x − σ\\, ε\\Big(\\frac{x}{\\sqrt{1 + σ^2}}, t(σ)\\Big)

is an EDM denoiser (`ddpm_as_denoiser`), with t(σ) the index of the nearest σ_t
(`ddpm_round_sigma`, like `iDDPMPrecond.round_sigma` of NVlabs/edm). With it a
pre-trained DDPM runs under the EDM samplers; `ddpm_eps_from_denoiser` goes the other
way.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from edmjax import _arrays
from edmjax._arrays import Array
from edmjax import _checks
from edmjax import keys as keys_lib
from edmjax.model import Denoiser, EpsModel

EpsFn = Callable[[Array, Array], Array]
DenoiseFn = Callable[[Array, Array], Array]


# ----------------------------------------------------------------------------- tables


def linear_beta_schedule(T: int = 1000, beta_start: float = 1e-4,
                         beta_end: float = 0.02) -> np.ndarray:
  """The linear β schedule of Ho et al. 2020, Sec. 4: β_t from beta_start to beta_end.

  Args:
    T: number of diffusion steps, >= 1.
    beta_start: β of the first step, in (0, 1).
    beta_end: β of the last step, in (beta_start, 1).

  Returns:
    `(T,)` float64 NumPy array. With the defaults ᾱ_{T−1} ≈ 4.04e-5.

  Example:
    >>> betas = linear_beta_schedule(1000)
    >>> float(np.prod(1 - betas))  # doctest: +ELLIPSIS
    4.035...e-05
  """
  _checks.check_int_at_least("T", T, 1)
  _checks.check_positive("beta_start", beta_start)
  _checks.check_less("beta_start", beta_start, "beta_end", beta_end)
  _checks.check_less("beta_end", beta_end, "1", 1.0)
  return np.linspace(beta_start, beta_end, T, dtype=np.float64)


def cosine_beta_schedule(T: int = 1000, s: float = 0.008) -> np.ndarray:
  """The cosine schedule of Nichol & Dhariwal 2021 (arXiv 2102.09672, Eq. 17).

  .. math::
    ᾱ(t) = \\frac{f(t)}{f(0)},\\quad f(t) = \\cos^2\\Big(\\frac{t/T + s}{1 + s}
    \\cdot\\frac{π}{2}\\Big),\\quad β_t = \\min\\Big(1 − \\frac{ᾱ(t+1)}{ᾱ(t)},
    0.999\\Big),

  for t = 0 … T−1, so that ᾱ_t of the table equals ᾱ(t + 1) wherever no β is
  clipped (only the last step is, with the defaults).

  Args:
    T: number of diffusion steps, >= 1.
    s: small offset that keeps β_0 from being too small, >= 0.

  Returns:
    `(T,)` float64 NumPy array.
  """
  _checks.check_int_at_least("T", T, 1)
  _checks.check_nonnegative("s", s)
  t = np.arange(T + 1, dtype=np.float64) / T
  f = np.cos((t + s) / (1.0 + s) * np.pi / 2.0) ** 2
  alpha_bar = f / f[0]
  betas = 1.0 - alpha_bar[1:] / alpha_bar[:-1]
  return np.minimum(betas, 0.999)


class DDPMTables(NamedTuple):
  """Tables derived from β, each `(T,)` and indexed by the 0-based step t.

  Float64 NumPy arrays when built from concrete β (the normal case).
  """
  betas: Any                      # β_t
  alphas: Any                     # α_t = 1 − β_t
  alpha_bars: Any                 # ᾱ_t = Π_{s≤t} α_s
  alpha_bars_prev: Any            # ᾱ_{t−1}, with ᾱ_{−1} = 1
  sqrt_alpha_bars: Any            # sqrt(ᾱ_t)
  sqrt_one_minus_alpha_bars: Any  # sqrt(1 − ᾱ_t)
  posterior_variance: Any         # β̃_t = β_t (1 − ᾱ_{t−1}) / (1 − ᾱ_t); β̃_0 = 0
  posterior_mean_coef1: Any       # of x_0: β_t sqrt(ᾱ_{t−1}) / (1 − ᾱ_t)
  posterior_mean_coef2: Any       # of x_t: (1 − ᾱ_{t−1}) sqrt(α_t) / (1 − ᾱ_t)
  sigmas: Any                     # EDM noise levels σ_t = sqrt(1/ᾱ_t − 1), increasing


def _check_betas(betas: Any) -> None:
  shape = np.shape(betas)
  if len(shape) != 1 or shape[0] < 1:
    raise ValueError(f"betas must be a 1-D table of length T >= 1, got shape {shape}.")
  _checks.check_positive("betas", betas)
  b = _checks.concrete_value(betas)
  if b is not None and not np.all(b < 1):
    raise ValueError(f"betas must be < 1, got {float(b[~(b < 1)].ravel()[0])!r}.")


def ddpm_tables(betas: Any) -> DDPMTables:
  """All tables of Ho et al. 2020 derived from β (Eqs. 4, 6, 7).

  The posterior q(x_{t−1} | x_t, x_0) = N(μ̃_t, β̃_t I) has
  μ̃_t = coef1_t x_0 + coef2_t x_t. Built in float64 on the host when `betas` is
  concrete; a traced `betas` gives the same tables as traced arrays.

  Args:
    betas: `(T,)` table with entries in (0, 1).

  Returns:
    `DDPMTables`.
  """
  if isinstance(betas, DDPMTables):
    return betas
  _check_betas(betas)
  if _checks.is_concrete(betas):
    xp, betas = np, np.asarray(betas, dtype=np.float64)
  else:
    xp = jnp
  alphas = 1.0 - betas
  alpha_bars = xp.cumprod(alphas)
  alpha_bars_prev = xp.concatenate([xp.ones((1,), alpha_bars.dtype), alpha_bars[:-1]])
  one_minus = 1.0 - alpha_bars
  return DDPMTables(
      betas=betas,
      alphas=alphas,
      alpha_bars=alpha_bars,
      alpha_bars_prev=alpha_bars_prev,
      sqrt_alpha_bars=xp.sqrt(alpha_bars),
      sqrt_one_minus_alpha_bars=xp.sqrt(one_minus),
      posterior_variance=betas * (1.0 - alpha_bars_prev) / one_minus,
      posterior_mean_coef1=betas * xp.sqrt(alpha_bars_prev) / one_minus,
      posterior_mean_coef2=(1.0 - alpha_bars_prev) * xp.sqrt(alphas) / one_minus,
      sigmas=xp.sqrt(1.0 / alpha_bars - 1.0),
  )


def ddpm_sigmas(betas: Any) -> Any:
  """EDM noise levels of the DDPM steps: σ_t = sqrt(1/ᾱ_t − 1), `(T,)`, increasing.

  x_t / sqrt(ᾱ_t) = x_0 + σ_t ε, so σ_t is the noise level of step t in EDM terms.
  """
  return ddpm_tables(betas).sigmas


def _table(tables: DDPMTables, name: str, dtype) -> Array:
  return jnp.asarray(getattr(tables, name), dtype=dtype)


def _check_t(t: Any, T: int) -> None:
  v = _checks.concrete_value(t)
  if v is None or v.size == 0:
    return
  bad = v[(v < 0) | (v >= T)]
  if bad.size:
    raise ValueError(f"t must lie in [0, {T}), got {bad.ravel()[0].item()!r}.")


def ddpm_round_sigma(sigma: Any, betas: Any, return_index: bool = False) -> Array:
  """Nearest noise level of the DDPM table (NVlabs/edm `iDDPMPrecond.round_sigma`).

  Args:
    sigma: noise levels, any shape.
    betas: the β table (or `DDPMTables`).
    return_index: return the step index t (int32) instead of σ_t.

  Returns:
    σ_{t(σ)} in the dtype of `sigma` (float32 for integers), or t(σ) when
    `return_index`, shaped like `sigma`; t(σ) = argmin_t |σ − σ_t|.
  """
  sigma = jnp.asarray(sigma)
  if not jnp.issubdtype(sigma.dtype, jnp.floating):
    sigma = sigma.astype(jnp.float32)
  table = _table(ddpm_tables(betas), "sigmas", sigma.dtype)
  flat = jnp.reshape(sigma, (-1, 1))
  index = jnp.argmin(jnp.abs(flat - table[None, :]), axis=1).astype(jnp.int32)
  index = jnp.reshape(index, sigma.shape)
  return index if return_index else table[index]


# ----------------------------------------------------------------------------- q, loss


def q_sample(x0: Array, t: Array, noise: Array, betas_or_tables: Any) -> Array:
  """Samples q(x_t | x_0) = N(sqrt(ᾱ_t) x_0, (1 − ᾱ_t) I) (Ho et al. 2020, Eq. 4).

  .. math::
    x_t = \\sqrt{ᾱ_t}\\, x_0 + \\sqrt{1 − ᾱ_t}\\, ε.

  Args:
    x0: NHWC clean images.
    t: `(batch,)` integer steps in [0, T).
    noise: ε, shaped like `x0`.
    betas_or_tables: the β table or its `DDPMTables`.

  Returns:
    x_t, shaped and typed like `x0`.
  """
  _checks.check_nhwc("x0", x0)
  tables = ddpm_tables(betas_or_tables)
  _check_t(t, len(tables.betas))
  a = _table(tables, "sqrt_alpha_bars", x0.dtype)[t]
  b = _table(tables, "sqrt_one_minus_alpha_bars", x0.dtype)[t]
  return _arrays.bcast(a) * x0 + _arrays.bcast(b) * noise.astype(x0.dtype)


def ddpm_loss(eps_fn: EpsFn, x0: Array, key: Array | None, betas: Any, *,
              loss_type: str = "mse", huber_delta: float = 1.0,
              t: Array | None = None, noise: Array | None = None) -> Array:
  """The ε-prediction loss of Ho et al. 2020 (Eq. 14, L_simple), unreduced.

  .. math::
    L = ℓ\\big(ε_θ(\\sqrt{ᾱ_t} x_0 + \\sqrt{1 − ᾱ_t} ε, t) − ε\\big),
    \\quad t \\sim U\\{0, …, T−1\\},\\ ε \\sim N(0, I),

  with ℓ(e) = e² ('mse') or the Huber function ℓ(e) = e²/2 for |e| ≤ δ and
  δ(|e| − δ/2) otherwise ('huber').

  Args:
    eps_fn: ε-model `eps_fn(x_t, t)`.
    x0: NHWC clean images.
    key: a jax.random key; used for what is not given (t, then noise). May be None
      when both `t` and `noise` are given.
    betas: the β table (or `DDPMTables`).
    loss_type: 'mse' or 'huber'.
    huber_delta: δ of the Huber loss, > 0.
    t: optional `(batch,)` integer steps; drawn uniformly in [0, T) otherwise.
    noise: optional ε shaped like `x0`; drawn from N(0, I) otherwise.

  Returns:
    Per-element loss shaped like `x0` (deterministic given `t` and `noise`).

  Raises:
    ValueError: for an unknown `loss_type`, `huber_delta` <= 0, `t` out of range,
      a missing key, or `x0` not NHWC.
  """
  _checks.check_nhwc("x0", x0)
  _checks.check_choice("loss_type", loss_type, ("mse", "huber"))
  _checks.check_positive("huber_delta", huber_delta)
  tables = ddpm_tables(betas)
  T = len(tables.betas)
  batch = x0.shape[0]
  if (t is None or noise is None) and key is None:
    raise ValueError("key is None; pass a jax.random key, or both t and noise.")
  if key is not None:
    key_t, key_noise = jax.random.split(key)
  if t is None:
    t = jax.random.randint(key_t, (batch,), 0, T)
  if noise is None:
    noise = jax.random.normal(key_noise, x0.shape, x0.dtype)
  if tuple(noise.shape) != tuple(x0.shape):
    raise ValueError(f"noise has shape {noise.shape}; expected x0's shape {x0.shape}.")
  _check_t(t, T)
  x_t = q_sample(x0, t, noise, tables)
  err = eps_fn(x_t, t).astype(x0.dtype) - noise.astype(x0.dtype)
  if loss_type == "mse":
    return jnp.square(err)
  delta = jnp.asarray(huber_delta, x0.dtype)
  abs_err = jnp.abs(err)
  return jnp.where(abs_err <= delta, 0.5 * jnp.square(err),
                   delta * (abs_err - 0.5 * delta))


# ----------------------------------------------------------------------------- sampling


def _predict_x0(x_t: Array, eps: Array, sqrt_ab: Array, sqrt_1mab: Array) -> Array:
  """x̂_0 = (x_t − sqrt(1 − ᾱ_t) ε̂) / sqrt(ᾱ_t) (Ho et al. 2020, Eq. 15)."""
  return (x_t - sqrt_1mab * eps) / sqrt_ab


def ddpm_sampler(eps_fn: EpsFn, latents: Array, key: Array, betas: Any, *,
                 variance: str = "beta", clip_denoised: bool = False,
                 return_trajectory: bool = False) -> Array | tuple[Array, Array]:
  """Ancestral sampling of Ho et al. 2020 (Algorithm 2), T steps in one `lax.scan`.

  From x_{T−1} = `latents` ~ N(0, I), for t = T−1, …, 0:

  .. math::
    x_{t−1} = \\frac{1}{\\sqrt{α_t}}\\Big(x_t − \\frac{β_t}{\\sqrt{1 − ᾱ_t}}
              ε_θ(x_t, t)\\Big) + σ_t z,\\quad z \\sim N(0, I),

  with σ_t² = β_t (variance='beta') or β̃_t (variance='posterior'), and no noise at
  t = 0. With `clip_denoised`, x̂_0 of Eq. 15 is clipped to [−1, 1] and the mean is
  the posterior mean μ̃_t(x̂_0, x_t) (equal to the line above without clipping).

  Noise is per sample: sample b uses key fold_in(key, b) (or `key[b]` when one key
  per sample is given) and at scan step i (i = 0 for t = T−1) draws
  normal(fold_in(key_b, i)), so a sample depends only on its own key.

  Args:
    eps_fn: ε-model `eps_fn(x_t, t)`.
    latents: NHWC unit Gaussian latents (x at step T−1).
    key: one jax.random key or one per sample (`(batch,)` typed keys).
    betas: the β table (or `DDPMTables`).
    variance: 'beta' (σ_t² = β_t) or 'posterior' (σ_t² = β̃_t).
    clip_denoised: clip x̂_0 to [−1, 1] at each step.
    return_trajectory: also return the states.

  Returns:
    Samples shaped like `latents`; with `return_trajectory`, `(samples, trajectory)`
    where trajectory `(T + 1, batch, H, W, C)` runs from `latents` to the samples.

  Raises:
    ValueError: for an unknown `variance`, `latents` not NHWC or a bad key shape.
  """
  _checks.check_nhwc("latents", latents)
  _checks.check_choice("variance", variance, ("beta", "posterior"))
  tables = ddpm_tables(betas)
  T = len(tables.betas)
  batch, dtype = latents.shape[0], latents.dtype
  keys = keys_lib.per_sample_keys(key, batch)

  var_name = "betas" if variance == "beta" else "posterior_variance"
  if _checks.is_concrete(tables.betas):
    std = np.sqrt(np.asarray(getattr(tables, var_name), np.float64))
    std[0] = 0.0  # no noise at t = 0
    std = jnp.asarray(std, dtype)
  else:
    std = jnp.sqrt(_table(tables, var_name, dtype)).at[0].set(0.0)
  sqrt_ab = _table(tables, "sqrt_alpha_bars", dtype)
  sqrt_1mab = _table(tables, "sqrt_one_minus_alpha_bars", dtype)
  beta = _table(tables, "betas", dtype)
  alpha = _table(tables, "alphas", dtype)
  coef1 = _table(tables, "posterior_mean_coef1", dtype)
  coef2 = _table(tables, "posterior_mean_coef2", dtype)

  def step(x, i):
    t = T - 1 - i
    eps = eps_fn(x, jnp.full((batch,), t, jnp.int32)).astype(dtype)
    if clip_denoised:
      x0 = jnp.clip(_predict_x0(x, eps, sqrt_ab[t], sqrt_1mab[t]), -1.0, 1.0)
      mean = coef1[t] * x0 + coef2[t] * x
    else:
      mean = (x - beta[t] / sqrt_1mab[t] * eps) / jnp.sqrt(alpha[t])
    z = keys_lib.step_noise(keys, i, x)
    x_next = mean + std[t] * z
    return x_next, (x_next if return_trajectory else None)

  x, traj = jax.lax.scan(step, latents, jnp.arange(T))
  if return_trajectory:
    return x, jnp.concatenate([latents[None], traj], axis=0)
  return x


DDIM_SPACINGS = ("linspace", "leading", "trailing")


def ddim_timesteps(num_steps: int, T: int, spacing: str = "linspace") -> np.ndarray:
  """The DDIM subsequence τ: `num_steps` distinct integer steps in [0, T), decreasing.

  The three spacings of diffusers (`timestep_spacing`; Lin et al. 2024, arXiv
  2305.08891, Table 2), with diffusers' exact formulas:

  * 'linspace': round(linspace(0, T−1, N)) reversed — first T−1, last 0
    (num_steps = 1 gives [T−1] here; diffusers gives [0]);
  * 'leading': i·⌊T/N⌋ for i = N−1, ..., 0 — the DDIM paper's choice (Song et al.
    2021, Appendix D.2, "τ_i = ⌊c i⌋"; its code steps over `range(0, T, T // N)`),
    last 0, first (N−1)⌊T/N⌋ <= T − N;
  * 'trailing': round(T − i·T/N) − 1 for i = 0..N−1 — first T−1, last about T/N − 1.
    (diffusers writes this as `arange(T, 0, -T/N)`, which for some T, N, e.g.
    T = 1000 and N = 61, returns N + 1 values ending in −1; here always the N
    intended ones.)

  num_steps = T gives every step with each spacing.

  Raises:
    ValueError: an unknown spacing, num_steps < 1 or > T, T < 1.
  """
  _checks.check_int_at_least("T", T, 1)
  _checks.check_int_at_least("num_steps", num_steps, 1)
  _checks.check_choice("spacing", spacing, DDIM_SPACINGS)
  if num_steps > T:
    raise ValueError(f"num_steps={num_steps} exceeds the number of steps T={T}.")
  if spacing == "leading":
    return (np.arange(num_steps, dtype=np.int64) * (T // num_steps))[::-1].copy()
  if spacing == "trailing":
    return (np.round(T - np.arange(num_steps) * (T / num_steps)).astype(np.int64) - 1)
  if num_steps == 1:
    return np.array([T - 1], dtype=np.int64)
  return np.linspace(0, T - 1, num_steps).round()[::-1].astype(np.int64)


def ddim_step(x_t: Array, eps: Array, alpha_bar_t, alpha_bar_s, eta=0.0,
              noise: Array | None = None) -> Array:
  """One DDIM step from step t to step s (Song et al. 2021, Eq. 12), NHWC.

  .. math::
    x_s = \\sqrt{ᾱ_s}\\, x̂_0 + \\sqrt{1 − ᾱ_s − σ^2}\\, ε + σ z,\\quad
    σ = η \\sqrt{\\frac{1 − ᾱ_s}{1 − ᾱ_t}}\\sqrt{1 − \\frac{ᾱ_t}{ᾱ_s}},\\quad
    x̂_0 = \\frac{x_t − \\sqrt{1 − ᾱ_t}\\, ε}{\\sqrt{ᾱ_t}},

  with z = `noise` (None: no noise term, the deterministic step for η = 0); ᾱ_s = 1
  after the last step. diffusers' `DDIMScheduler.step` with `clip_sample=False`
  computes the same step from its (t, prev_t).
  """
  dtype = x_t.dtype
  a_t, a_s = jnp.asarray(alpha_bar_t, dtype), jnp.asarray(alpha_bar_s, dtype)
  x0 = _predict_x0(x_t, eps, jnp.sqrt(a_t), jnp.sqrt(1.0 - a_t))
  if noise is None:
    return jnp.sqrt(a_s) * x0 + jnp.sqrt(1.0 - a_s) * eps
  sigma = jnp.asarray(eta, dtype) * jnp.sqrt((1.0 - a_s) / (1.0 - a_t) * (1.0 - a_t / a_s))
  dir_coef = jnp.sqrt(jnp.maximum(1.0 - a_s - jnp.square(sigma), 0.0))
  return jnp.sqrt(a_s) * x0 + dir_coef * eps + sigma * noise


def ddim_sampler(eps_fn: EpsFn, latents: Array, betas: Any, *, num_steps: int,
                 eta: float = 0.0, key: Array | None = None, spacing: str = "linspace",
                 return_trajectory: bool = False) -> Array | tuple[Array, Array]:
  """DDIM sampling (Song et al. 2021, arXiv 2010.02502, Eq. 12) on a step subsequence.

  On τ = `ddim_timesteps(num_steps, T, spacing)`, decreasing, with t = τ_i, s = τ_{i+1}
  (ᾱ_s = 1 after the last step, so the result is x̂_0 at the last step),

  .. math::
    x_s = \\sqrt{ᾱ_s}\\, x̂_0 + \\sqrt{1 − ᾱ_s − σ^2}\\, ε_θ(x_t, t) + σ z,\\quad
    σ = η \\sqrt{\\frac{1 − ᾱ_s}{1 − ᾱ_t}}\\sqrt{1 − \\frac{ᾱ_t}{ᾱ_s}},

  x̂_0 = (x_t − sqrt(1 − ᾱ_t) ε_θ)/sqrt(ᾱ_t) (`ddim_step`). η = 0 is deterministic
  (the Euler method for the probability-flow ODE in x/sqrt(ᾱ) and σ); η = 1 with every
  step is ancestral sampling with the posterior variance β̃. The number of ε
  evaluations is `num_steps`. Noise follows the per-sample rule of `ddpm_sampler`
  (step index i).

  Spacing: 'leading' is the DDIM paper's (τ_i = i⌊T/N⌋); 'linspace' (the default
  here) and 'trailing' are diffusers' others (`ddim_timesteps`). Equal to diffusers'
  `DDIMScheduler` (clip_sample=False, set_alpha_to_one=True) for 'leading', and for
  'trailing' when N divides T. diffusers always steps from t to t − ⌊T/N⌋, not to the
  next timestep of its own sequence; for 'linspace' (and 'trailing' when N does not
  divide T) the two differ, and this sampler steps to the next timestep τ_{i+1}, as
  the DDIM paper defines the subsequence.

  Args:
    eps_fn: ε-model `eps_fn(x_t, t)`.
    latents: NHWC unit Gaussian latents (x at step τ_0).
    betas: the β table (or `DDPMTables`).
    num_steps: number of steps, 1 <= num_steps <= T (static).
    eta: η >= 0, the amount of noise.
    key: one key or one per sample; required unless η = 0.
    spacing: 'linspace', 'leading' or 'trailing' (static).
    return_trajectory: also return the states.

  Returns:
    Samples shaped like `latents`; with `return_trajectory`, `(samples, trajectory)`
    where trajectory `(num_steps + 1, batch, H, W, C)` runs from `latents` to the
    samples.

  Raises:
    ValueError: η < 0, a missing key when η != 0, bad `num_steps` or `spacing`,
      `latents` not NHWC.
  """
  _checks.check_nhwc("latents", latents)
  _checks.check_nonnegative("eta", eta)
  eta_value = _checks.concrete_value(eta)
  deterministic = eta_value is not None and float(eta_value) == 0.0
  if key is None and not deterministic:
    raise ValueError(f"eta={eta!r} > 0 adds noise; pass a jax.random key.")
  tables = ddpm_tables(betas)
  T = len(tables.betas)
  taus = ddim_timesteps(num_steps, T, spacing)
  batch, dtype = latents.shape[0], latents.dtype
  keys = None if deterministic else keys_lib.per_sample_keys(key, batch)

  ab = _table(tables, "alpha_bars", dtype)
  ab_t = ab[taus]
  ab_s = jnp.concatenate([ab[taus[1:]], jnp.ones((1,), dtype)])

  def step(x, inputs):
    i, t, a_t, a_s = inputs
    eps = eps_fn(x, jnp.full((batch,), t, jnp.int32)).astype(dtype)
    z = None if deterministic else keys_lib.step_noise(keys, i, x)
    x_next = ddim_step(x, eps, a_t, a_s, eta, z)
    return x_next, (x_next if return_trajectory else None)

  xs = (jnp.arange(num_steps), jnp.asarray(taus, jnp.int32), ab_t, ab_s)
  x, traj = jax.lax.scan(step, latents, xs)
  if return_trajectory:
    return x, jnp.concatenate([latents[None], traj], axis=0)
  return x


# ----------------------------------------------------------------------------- bridge


def ddpm_as_denoiser(eps_fn: EpsFn | EpsModel, betas: Any = None) -> Denoiser:
  """Wraps a DDPM ε-model as an EDM denoiser through the VP scalings.

  With σ_t = sqrt(1/ᾱ_t − 1) and x = x_t / sqrt(ᾱ_t) (Karras et al. 2022, Table 1
  and Appendix C.3.4, the iDDPM/VP preconditioning c_skip = 1, c_out = −σ,
  c_in = 1/sqrt(1 + σ²)):

  .. math::
    D(x; σ) = x − σ\\, ε_θ\\Big(\\frac{x}{\\sqrt{1 + σ^2}}, t(σ)\\Big),

  where t(σ) = `ddpm_round_sigma(σ, betas, return_index=True)`. At σ = σ_t,
  x/sqrt(1 + σ²) = x_t exactly; at other σ the model sees the nearest step. The
  returned `edmjax.model.Denoiser` carries the ε-model's own σ table: `sigma_min` =
  σ_0, `sigma_max` = σ_{T−1} and `round_sigma` = the nearest table level, so that
  `edmjax.sampling.sample` clips every sampler's range to the table and rounds its
  steps onto it (as NVlabs/edm does with `net.sigma_min/max` and `round_sigma`).
  This is the paper's "pre-trained model + our sampler" setting.

  Args:
    eps_fn: an `edmjax.model.EpsModel`, or an ε-model `eps_fn(x_t, t)` with `betas`.
    betas: the β table (or `DDPMTables`); taken from `eps_fn` when it is an EpsModel.

  Returns:
    A `Denoiser`: `denoise(x, sigma[, class_labels])` for NHWC `x` and `sigma` of
    shape `(batch,)`, with `.eps` the ε-model.
  """
  if isinstance(eps_fn, EpsModel):
    if betas is not None:
      raise ValueError("eps_fn is an EpsModel, which carries its β table; do not pass "
                       "betas as well.")
    eps_model = eps_fn
  else:
    if betas is None:
      raise ValueError("ddpm_as_denoiser needs the ε-model's β table: pass betas=... "
                       "(e.g. ddpm.linear_beta_schedule()) or an edmjax.model.EpsModel.")
    eps_model = EpsModel(eps_fn, ddpm_tables(betas).betas)
  tables = ddpm_tables(eps_model.betas)
  host_sigmas = np.asarray(tables.sigmas, np.float64)

  def denoise(x: Array, sigma: Array, *class_labels) -> Array:
    sigma = jnp.broadcast_to(
        jnp.reshape(jnp.asarray(sigma, x.dtype), (-1,)), (x.shape[0],))
    t = ddpm_round_sigma(sigma, tables, return_index=True)
    c_in = _arrays.bcast(1.0 / jnp.sqrt(1.0 + jnp.square(sigma)))
    eps = eps_model.fn(c_in * x, t, *class_labels).astype(x.dtype)
    return x - _arrays.bcast(sigma) * eps

  def round_sigma(sigma):
    if isinstance(sigma, (np.ndarray, float, int)):
      sigma = np.asarray(sigma, np.float64)
      idx = np.argmin(np.abs(sigma.reshape(-1, 1) - host_sigmas[None, :]), axis=1)
      return host_sigmas[idx].reshape(sigma.shape)
    return ddpm_round_sigma(sigma, tables)

  return Denoiser(denoise, sigma_min=float(host_sigmas[0]),
                  sigma_max=float(host_sigmas[-1]), round_sigma=round_sigma,
                  label_dim=eps_model.label_dim, eps=eps_model)


def ddpm_eps_from_denoiser(denoise: DenoiseFn, betas: Any) -> EpsFn:
  """The ε-model of an EDM denoiser on the DDPM steps (inverse of `ddpm_as_denoiser`).

  .. math::
    ε(x_t, t) = \\frac{x − D(x; σ_t)}{σ_t},\\qquad x = \\frac{x_t}{\\sqrt{ᾱ_t}},

  the noise estimate implied by D. Applied to an ideal denoiser of `edmjax.oracle`
  it gives the ideal ε* (e.g. for Gaussian data N(m, s² I) and
  x_t = a x_0 + b ε: ε* = b (x_t − a m)/(a² s² + b²)).

  Args:
    denoise: `denoise(x, sigma)`.
    betas: the β table (or `DDPMTables`).

  Returns:
    `eps_fn(x_t, t)` for NHWC `x_t` and integer `t` of shape `(batch,)`.
  """
  tables = ddpm_tables(betas)

  def eps_fn(x_t: Array, t: Array) -> Array:
    sigma = _table(tables, "sigmas", x_t.dtype)[t]
    x = x_t / _arrays.bcast(_table(tables, "sqrt_alpha_bars", x_t.dtype)[t])
    return (x - denoise(x, sigma)) / _arrays.bcast(sigma)

  return eps_fn
