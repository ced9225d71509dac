"""Power-function EMA and its post-hoc reconstruction (Karras et al. 2024, Sec. 3).

EDM2 ("Analyzing and Improving the Training Dynamics of Diffusion Models", arXiv
2312.02696) averages the parameters θ(τ) of a run with a power-function profile: at
training time t (images seen), the average with exponent γ is

.. math::
  \\hat θ_γ(t) = \\frac{γ + 1}{t^{γ + 1}} \\int_0^t τ^γ\\, θ(τ)\\, dτ,

and its width relative to t, σ_rel = sqrt((γ+1)/((γ+2)²(γ+3))) (Eq. 123), names it
(`exp_to_std`, `std_to_exp`). Tracked during training with the per-step update

.. math::
  β(t) = (1 − Δt/t)^{γ + 1},\\qquad \\hat θ ← β\\,\\hat θ + (1 − β)\\,θ

(Eq. 127, `power_function_beta`, `update_tracks`; t the images seen *after* the step,
Δt the batch), it is exactly the discrete average with weight
(i^{γ+1} − (i−1)^{γ+1})/n^{γ+1} on the parameters after step i of n (batch 1).

Post hoc: snapshots of a few tracked averages (two σ_rel, every so many images) span
the profiles of every other σ_rel at any snapshot time approximately. The least-
squares combination of the snapshot profiles closest (in L²) to the wanted profile
solves A x = b with the inner products of power-function profiles in closed form
(Algorithm 3: `power_function_correlation`, `solve_posthoc_coefficients`), and the
reconstruction is Σ_i x_i θ̂_i (`reconstruct`, streamed one snapshot at a time).

The six NVlabs/edm2 functions (`training/phema.py`) have its signatures and compute
in float64 on the host (NumPy). The EMA tracks themselves are pytrees updated inside
the jitted step (`init_tracks`, `update_tracks`; float32).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "exp_to_std", "std_to_exp", "power_function_response", "power_function_correlation",
    "power_function_beta", "solve_posthoc_coefficients", "init_tracks", "update_tracks",
    "track_betas", "reconstruct", "DEFAULT_STDS", "MAX_STD",
]

DEFAULT_STDS = (0.050, 0.100)
"""The σ_rel of the two tracks NVlabs/edm2 trains with (`PowerFunctionEMA`)."""

MAX_STD = math.sqrt(1 / 12)
"""σ_rel of γ = 0 (the uniform average of the whole run); profiles with γ > 0 are
narrower, so σ_rel must lie in (0, MAX_STD) ≈ (0, 0.2887)."""


def exp_to_std(exp):
  """σ_rel of the power-function profile with exponent γ (Eq. 123), float64.

  σ_rel = sqrt((γ + 1) / ((γ + 2)² (γ + 3))).

  Example:
    >>> print(round(float(exp_to_std(6.937)), 4))
    0.1
  """
  exp = np.float64(exp)
  return np.sqrt((exp + 1) / ((exp + 2)**2 * (exp + 3)))


def std_to_exp(std):
  """The exponent γ > 0 of the profile with relative width σ_rel (Eq. 126), float64.

  Inverts `exp_to_std`: γ is the largest real root of
  γ³ + 7γ² + (16 − σ_rel⁻²) γ + (12 − σ_rel⁻²) = 0 (Algorithm 2).

  Raises:
    ValueError: σ_rel outside (0, MAX_STD), naming the value.

  Example:
    >>> print(np.round(std_to_exp([0.05, 0.1]), 3))
    [16.972  6.937]
  """
  std = np.asarray(std, np.float64)
  ok = (std > 0) & (std < MAX_STD)
  if not np.all(ok):
    raise ValueError(f"std={float(std[~ok][0])!r} is not allowed; a relative "
                     f"standard deviation σ_rel must lie in (0, {MAX_STD:.4f}).")
  inv2 = std.reshape(-1)**-2
  exps = [max(r.real for r in np.roots([1.0, 7.0, 16.0 - t, 12.0 - t])
              if abs(r.imag) <= 1e-9 * max(1.0, abs(r.real))) for t in inv2]
  return np.float64(exps).reshape(std.shape)


def power_function_response(ofs, std, len, axis=0):  # pylint: disable=redefined-builtin
  """Discrete response of power-function EMAs: weights on steps 0 … len − 1 (Eq. 121).

  For each (ofs, std) pair (broadcast), the weight of step τ is
  (γ + 1)/ofs · (τ/ofs)^γ for τ ≤ ofs and 0 after, normalised to sum 1. The step
  axis is inserted at `axis` of the broadcast shape of (ofs, std).

  Returns:
    float64 array with a new axis of length `len` at `axis`.
  """
  ofs, std = np.broadcast_arrays(np.float64(ofs), np.float64(std))
  exp = np.expand_dims(std_to_exp(std), axis)
  ofs = np.expand_dims(ofs, axis)
  shape = [1] * exp.ndim
  shape[axis] = -1
  tau = np.arange(len, dtype=np.float64).reshape(shape)
  with np.errstate(divide="ignore", invalid="ignore"):
    resp = np.where(tau <= ofs, (tau / ofs)**exp, 0.0) * (exp + 1) / ofs
  return resp / resp.sum(axis=axis, keepdims=True)


def power_function_correlation(a_ofs, a_std, b_ofs, b_std):
  """⟨p_a, p_b⟩: inner product of two power-function profiles (Eq. 151, Algorithm 3).

  With p(τ) = (γ + 1)/t (τ/t)^γ on [0, t], for a ending at t_a and b at t_b:
  (γ_a + 1)(γ_b + 1) r^e / ((γ_a + γ_b + 1) max(t_a, t_b)), with r = t_a/t_b and
  e = γ_b if t_a < t_b else −γ_a. Arguments broadcast; float64.
  """
  a_exp = std_to_exp(a_std)
  b_exp = std_to_exp(b_std)
  a_ofs = np.float64(a_ofs)
  b_ofs = np.float64(b_ofs)
  ratio = a_ofs / b_ofs
  e = np.where(a_ofs < b_ofs, b_exp, -a_exp)
  return ((a_exp + 1) * (b_exp + 1) * ratio**e
          / ((a_exp + b_exp + 1) * np.maximum(a_ofs, b_ofs)))


def power_function_beta(std, t_next, t_delta):
  """β of the EMA update that tracks σ_rel `std` (Eq. 127): (1 − t_delta/t_next)^(γ+1).

  `t_next` is the training time after the step (NVlabs' `cur_nimg` after the
  increment) and `t_delta` the step's length (the batch); float64.

  Example:
    >>> float(power_function_beta(0.1, t_next=64, t_delta=64))   # first step: θ̂ = θ
    0.0
  """
  return (1 - np.float64(t_delta) / np.float64(t_next))**(std_to_exp(std) + 1)


def solve_posthoc_coefficients(in_ofs, in_std, out_ofs, out_std):
  """Coefficients x[in, out] with Σ_i x[i, j] θ̂_i ≈ the profile (out_ofs, out_std[j]).

  Least squares in L² over profiles (Algorithm 3): A = ⟨p_in_i, p_in_k⟩,
  B = ⟨p_in_i, p_out_j⟩, X = A⁻¹ B, each column then scaled to sum 1 (so a
  constant parameter stays constant). `in_*` broadcast together, `out_*` too.

  Returns:
    float64 `(num_in, num_out)`.
  """
  in_ofs, in_std = np.broadcast_arrays(np.float64(in_ofs), np.float64(in_std))
  out_ofs, out_std = np.broadcast_arrays(np.float64(out_ofs), np.float64(out_std))
  col = lambda v: v.reshape(-1, 1)
  row = lambda v: v.reshape(1, -1)
  A = power_function_correlation(col(in_ofs), col(in_std), row(in_ofs), row(in_std))
  B = power_function_correlation(col(in_ofs), col(in_std), row(out_ofs), row(out_std))
  X = np.linalg.solve(A, B)
  return X / X.sum(axis=0, keepdims=True)


# ----------------------------------------------------------------------------- tracks


def init_tracks(params, stds: Sequence[float] = DEFAULT_STDS) -> tuple:
  """One copy of `params` per σ_rel in `stds` (NVlabs' `PowerFunctionEMA.__init__`)."""
  std_to_exp(np.asarray(stds, np.float64))  # validates
  return tuple(jax.tree.map(jnp.copy, params) for _ in stds)


def track_betas(stds: Sequence[float], nimg, batch_size):
  """β_k = (1 − batch/nimg)^(γ_k + 1) for each σ_rel, float32 `(len(stds),)`.

  `nimg` (images seen after this step) may be traced; the exponents are host
  constants. Computed as exp((γ + 1) log1p(−batch/nimg)), which is 0 at the first
  step (nimg = batch).
  """
  exps = np.float32(std_to_exp(np.asarray(stds, np.float64)) + 1)
  frac = jnp.float32(batch_size) / jnp.asarray(nimg, jnp.float32)
  return jnp.exp(jnp.asarray(exps) * jnp.log1p(-frac))


def update_tracks(tracks: tuple, params, *, stds: Sequence[float], nimg,
                  batch_size) -> tuple:
  """One power-function EMA step of every track: θ̂_k ← θ + β_k (θ̂_k − θ).

  Args:
    tracks: the tuple of `init_tracks`, one pytree per σ_rel.
    params: the parameters after this step's optimizer update.
    stds: the tracks' σ_rel (static; as given to `init_tracks`).
    nimg: training images seen after this step (NVlabs' `cur_nimg` after the
      increment); may be traced.
    batch_size: images of this step.

  Returns:
    The updated tuple (a pure function; NVlabs' `PowerFunctionEMA.update`).
  """
  if len(tracks) != len(stds):
    raise ValueError(f"{len(tracks)} EMA tracks but {len(stds)} stds {tuple(stds)}.")
  betas = track_betas(stds, nimg, batch_size)
  return tuple(
      jax.tree.map(lambda e, p, b=betas[k]: p + b.astype(p.dtype) * (e - p), track, params)
      for k, track in enumerate(tracks))


# ----------------------------------------------------------------------------- post hoc


def reconstruct(in_nimg: Sequence[int], in_std: Sequence[float],
                load: Callable[[int], Any], out_std: Sequence[float],
                out_nimg: int | None = None) -> list:
  """Post-hoc EMA: the averages of profiles (out_nimg, out_std) from snapshots.

  As NVlabs/edm2's `reconstruct_phema.py`: snapshots after `out_nimg` (and at time
  0) are ignored, the coefficients are float64 (`solve_posthoc_coefficients`), and
  the snapshots are read one at a time (`load(i)` is called once per used i, in
  order) and accumulated in float32, so memory holds one snapshot plus the outputs.

  Args:
    in_nimg, in_std: training time and σ_rel of each snapshot.
    load: `load(i)` -> the i-th snapshot's parameter pytree.
    out_std: the σ_rel to reconstruct.
    out_nimg: the time to reconstruct at (one of `in_nimg`); None is the latest.

  Returns:
    One float32 pytree per `out_std`.

  Raises:
    ValueError: no snapshot before `out_nimg`, `out_nimg` not a snapshot time, or
      lengths that differ.
  """
  in_nimg = np.asarray(in_nimg, np.int64)
  in_std = np.asarray(in_std, np.float64)
  if in_nimg.shape != in_std.shape or in_nimg.ndim != 1:
    raise ValueError(f"in_nimg ({in_nimg.shape}) and in_std ({in_std.shape}) must be "
                     "1-D and of the same length.")
  if out_nimg is None:
    out_nimg = int(in_nimg.max(initial=0))
  elif not np.any(in_nimg == out_nimg):
    raise ValueError(f"out_nimg={out_nimg} is not the time of any snapshot "
                     f"({sorted(set(in_nimg.tolist()))}).")
  used = np.flatnonzero((in_nimg > 0) & (in_nimg <= out_nimg))
  if not used.size:
    raise ValueError(f"no snapshot with 0 < nimg <= {out_nimg}.")
  out_std = np.asarray(out_std, np.float64).reshape(-1)
  coefs = solve_posthoc_coefficients(in_nimg[used], in_std[used], out_nimg, out_std)
  out = None
  for row, i in enumerate(used):
    snap = jax.tree.map(lambda v: np.asarray(v, np.float32), load(int(i)))
    if out is None:
      out = [jax.tree.map(np.zeros_like, snap) for _ in out_std]
    for j in range(out_std.size):
      c = np.float32(coefs[row, j])
      out[j] = jax.tree.map(lambda acc, v, c=c: acc + c * v, out[j], snap)
  return out
