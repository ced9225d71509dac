"""Pieces shared by every sampler: per-sample keys and noise, σ tables, trajectories.

Randomness follows `edmjax.keys` (one key or one per sample; sample b's step-i noise
is `normal(fold_in(key_b, i), image_shape)`), so a sample depends only on its own key.

Tables. Noise-level tables built from concrete numbers are computed in float64
NumPy on the host and cast once to the latents' dtype; tables built from traced
numbers (so that changing σ_min/σ_max does not recompile) are computed with
jax.numpy in the latents' dtype.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from edmjax._arrays import Array, xp_of  # xp_of: for the samplers
from edmjax import _checks
from edmjax import keys as keys_lib
from edmjax import schedules

Denoiser = Callable[[Array, Array], Array]

SOLVERS = ("euler", "heun")


class Trajectory(NamedTuple):
  """What a sampler saw at each of its `num_steps` steps (`return_trajectory=True`).

  Attributes:
    sigma: `(num_steps,)` σ_i, the noise level of the state entering step i (for
      the ablation sampler σ(t_i)).
    x: `(num_steps, B, H, W, C)` the state x_i entering step i, before any noise is
      added; `x[0] = latents · σ_0` (for the ablation sampler the scaled state, so
      `x[0] = latents · σ(t_0) · s(t_0)`).
    denoised: `(num_steps, B, H, W, C)` the output of the first denoiser evaluation
      of step i, D(x̂_i; σ̂_i) (D(x_i; σ_i) when step i adds no noise; for the
      ablation sampler D(x̂_i / s(t̂_i); σ(t̂_i))).
  """
  sigma: Array
  x: Array
  denoised: Array


# ----------------------------------------------------------------------------- values


def is_traced(*xs) -> bool:
  """True when any of `xs` is a jax Tracer (its value is unknown at trace time)."""
  return any(isinstance(x, jax.core.Tracer) for x in xs)


def host_or_device(dtype, *xs):
  """`xs` as float64 NumPy values when all are concrete, else as jnp values in `dtype`."""
  if is_traced(*xs):
    return tuple(jnp.asarray(x, dtype) for x in xs)
  return tuple(np.asarray(x, np.float64) for x in xs)


def float_latents(latents) -> Array:
  """`latents` as a floating JAX array, checked to be 4-D NHWC."""
  _checks.check_nhwc("latents", latents)
  latents = jnp.asarray(latents)
  if not jnp.issubdtype(latents.dtype, jnp.floating):
    latents = latents.astype(jnp.float32)
  return latents


def sigma_vector(sigma, x) -> Array:
  """A scalar noise level as the `(batch,)` vector a denoiser takes."""
  return jnp.broadcast_to(jnp.asarray(sigma, x.dtype), (x.shape[0],))


def safe_sqrt(v):
  """sqrt(max(v, 0)) whose value and gradient are finite (0) where v <= 0."""
  positive = v > 0
  return jnp.where(positive, jnp.sqrt(jnp.where(positive, v, 1)), 0)


def call_denoiser(denoise: Denoiser, x, sigma) -> Array:
  """D(x; σ) for a scalar σ, cast back to the dtype of x."""
  return jnp.asarray(denoise(x, sigma_vector(sigma, x))).astype(x.dtype)


# ----------------------------------------------------------------------------- checks


def check_solver(solver: str) -> None:
  _checks.check_choice("solver", solver, SOLVERS)


def check_sigma_table(name: str, sigmas, min_steps: int) -> None:
  """Checks a `(N + 1,)` table σ_0 > ... > σ_{N−1} > σ_N = 0 (values only if concrete)."""
  shape = np.shape(sigmas)
  if len(shape) != 1 or shape[0] < min_steps + 1:
    raise ValueError(
        f"{name} must be a 1-D table of at least {min_steps + 1} noise levels "
        f"(num_steps + 1, ending in 0), got shape {shape}.")
  v = _checks.concrete_value(sigmas)
  if v is None:
    if _checks.traced_checks_enabled():
      t = jnp.asarray(sigmas)
      _checks.check_traced(t[-1] == 0, f"{name} must end in 0 (t_N = 0), got last "
                           "level {}.", t[-1])
      _checks.check_traced(jnp.isfinite(t[:-1]) & (t[:-1] > 0), f"{name} must be finite "
                           "and > 0 before the final 0, got {}.", t[:-1])
      _checks.check_traced(t[1:] < t[:-1], f"{name} must be strictly decreasing, got "
                           "{} after a larger level.", t[1:])
    return
  v = v.astype(np.float64)
  if v[-1] != 0:
    raise ValueError(f"{name} must end in 0 (t_N = 0), got last level {float(v[-1])!r}.")
  if not np.all(v[:-1] > 0) or not np.all(np.isfinite(v)):
    raise ValueError(
        f"{name} must be finite and > 0 before the final 0, got "
        f"{np.array2string(v, threshold=8)}.")
  if not np.all(np.diff(v) < 0):
    raise ValueError(
        f"{name} must be strictly decreasing, got {np.array2string(v, threshold=8)}.")


def noise_is_static_zero(*amounts) -> bool:
  """True when one of `amounts` is a concrete 0, so no noise is ever added."""
  for a in amounts:
    v = _checks.concrete_value(a)
    if v is not None and v.size == 1 and float(v) == 0.0:
      return True
  return False


check_key_given = keys_lib.check_key_given
per_sample_keys = keys_lib.per_sample_keys
step_noise = keys_lib.step_noise


def noise_keys(eta, S_noise, key, batch: int, who: str):
  """Per-sample keys of an ancestral or SDE sampler; None when η or S_noise is
  statically 0 (no noise is ever added).

  Raises:
    ValueError: η < 0, or noise without a key (naming `who`).
  """
  _checks.check_nonnegative("eta", eta)
  if noise_is_static_zero(eta, S_noise):
    return None
  check_key_given(key, f"{who} (eta > 0)")
  return per_sample_keys(key, batch)


def initial_state(latents, sigma0, init=None):
  """x_0 = σ_0 · latents, or init + σ_0 · latents when starting from an image
  (SDEdit / headstart); σ_0 a scalar in the latents' dtype."""
  x = latents * sigma0
  if init is None:
    return x
  init = jnp.asarray(init)
  if init.shape != latents.shape:
    raise ValueError(f"init has shape {init.shape}; expected the latents' shape "
                     f"{latents.shape} (NHWC).")
  return init.astype(latents.dtype) + x


# ----------------------------------------------------------------------------- churn


def churn_keys(S_churn, key, batch: int):
  """Per-sample keys when churn may add noise; None when S_churn is statically 0."""
  _checks.check_nonnegative("S_churn", S_churn)
  if noise_is_static_zero(S_churn):
    return None
  what = ("a traced S_churn (it may be > 0)" if is_traced(S_churn)
          else f"S_churn={float(np.asarray(S_churn))!r}")
  check_key_given(key, f"{what} (churn, Algorithm 2)")
  return per_sample_keys(key, batch)


def churn_gamma(S_churn, num_steps: int, dtype):
  """γ = min(S_churn/N, √2 − 1), the churn inside the window (Algorithm 2)."""
  return jnp.minimum(jnp.asarray(S_churn, dtype) / num_steps,
                     jnp.asarray(math.sqrt(2.0) - 1.0, dtype))


class Churn(NamedTuple):
  """The noise of Algorithm 2 (`churn_settings`), in the latents' dtype."""
  keys: Array     # (B,) per-sample keys
  gamma: Array    # min(S_churn/N, √2 − 1)
  S_min: Array
  S_max: Array
  S_noise: Array


def churn_settings(S_churn, S_min, S_max, S_noise, key, batch: int, num_steps: int,
                   dtype) -> Churn | None:
  """Algorithm 2's churn for N = `num_steps` steps; None when S_churn is statically 0.

  Raises:
    ValueError: S_churn < 0, or noise without a key.
  """
  keys = churn_keys(S_churn, key, batch)
  if keys is None:
    return None
  S_min, S_max, S_noise = (jnp.asarray(v, dtype) for v in (S_min, S_max, S_noise))
  return Churn(keys, churn_gamma(S_churn, num_steps, dtype), S_min, S_max, S_noise)


def apply_churn(churn: Churn | None, x, sigma, i, round_sigma=None):
  """(σ̂_i, x̂_i) of Algorithm 2, lines 4–7, for step i at level σ_i.

  γ_i = γ if S_min <= σ_i <= S_max else 0, σ̂_i = round(σ_i + γ_i σ_i) and
  x̂_i = x_i + sqrt(σ̂_i² − σ_i²) S_noise ε_i with ε_i `step_noise(keys, i, x)`;
  outside the window (or with `churn` None) exactly (σ_i, x_i), selected, not
  recomputed.
  """
  if churn is None:
    return sigma, x
  in_window = (churn.S_min <= sigma) & (sigma <= churn.S_max)
  gamma = jnp.where(in_window, churn.gamma, 0)
  raised = sigma + gamma * sigma
  if round_sigma is not None:
    raised = jnp.asarray(round_sigma(raised), x.dtype)
  churning = gamma > 0
  sigma_hat = jnp.where(churning, raised, sigma)
  x_raised = x + (safe_sqrt(sigma_hat**2 - sigma**2) * churn.S_noise
                  * step_noise(churn.keys, i, x))
  return sigma_hat, jnp.where(churning, x_raised, x)


# ----------------------------------------------------------------------------- output


def finish(x, per_step, return_trajectory: bool):
  """`x`, or `(x, Trajectory)` from the stacked per-step (sigma, x, denoised)."""
  if not return_trajectory:
    return x
  return x, Trajectory(*per_step)


def scan_then_last(step, x, scanned, last, return_trajectory: bool):
  """Steps 0..N−2 in one `lax.scan`, then a static last step; `finish`ed.

  `step(x, *inputs, is_last) -> (x_next, (sigma, x, denoised))`: the scan runs it with
  `is_last=False` over the leading axis of the tuple `scanned`; the last step runs it
  once on the tuple `last` with `is_last=True` (so it may skip its second evaluation).
  """
  def body(x, step_in):
    x, seen = step(x, *step_in, False)
    return x, (seen if return_trajectory else None)

  x, seen = jax.lax.scan(body, x, scanned)
  x, seen_last = step(x, *last, True)
  per_step = stack_steps(seen, list(seen_last)) if return_trajectory else None
  return finish(x, per_step, return_trajectory)


def stack_steps(*parts):
  """Concatenates per-step (sigma, x, denoised) tuples along the step axis.

  Each part is either a stacked tuple from `lax.scan` (leading step axis) or a single
  step's tuple, marked by wrapping it in a list.
  """
  stacked = []
  for part in parts:
    if isinstance(part, list):
      part = jax.tree.map(lambda v: v[None], tuple(part))
    stacked.append(part)
  return tuple(jnp.concatenate(leaves, axis=0) for leaves in zip(*stacked))


def sigma_table(dtype, sigmas, num_steps, sigma_min, sigma_max, rho, min_steps=2):
  """The `(N + 1,)` σ table ending in 0: `sigmas` if given, else Karras levels (Eq. 5).

  NumPy float64 when every input is concrete, else jnp in `dtype`.
  """
  if sigmas is None:
    _checks.check_int_at_least("num_steps", num_steps, min_steps)
    sigma_min, sigma_max, rho = host_or_device(dtype, sigma_min, sigma_max, rho)
    return schedules.karras_sigmas(num_steps, sigma_min, sigma_max, rho)
  check_sigma_table("sigmas", sigmas, min_steps)
  if is_traced(sigmas):
    return jnp.asarray(sigmas, dtype)
  return np.asarray(sigmas, np.float64)


def check_rounded_levels(levels, sigma_min) -> None:
  """Raises ValueError if `round_sigma` sent a (concrete) noise level to <= 0."""
  v = _checks.concrete_value(levels)
  if v is None or np.all(v > 0):
    return
  raise ValueError(
      f"round_sigma maps the noise levels to {np.array2string(v, threshold=8)}, which "
      f"include 0: sigma_min={float(np.asarray(sigma_min))!r} is below the smallest "
      "positive level the denoiser supports (for iDDPM, "
      "schedules.iddpm_u_table()[M - 1] ≈ 0.0064). Raise sigma_min to it, as "
      "NVlabs/edm does with net.sigma_min.")
