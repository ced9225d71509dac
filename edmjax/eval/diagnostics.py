"""Diagnostics that explain a run: loss per σ against its floor, ε statistics, pixel drift,
memorisation.

Four questions a failing (or suspiciously good) diffusion run raises, each answered by a
pure function returning a NamedTuple of arrays (writers for CSV and PNG are in
`edmjax.eval.diagnostic_plots`):

* Where in σ is the loss too high? `sigma_loss_profile` evaluates a denoiser's
  per-element loss on a σ grid (Karras et al. 2022, Figure 5a) next to the exact floor
  L*(σ) of the finite training set, on the *same* Monte Carlo pairs (y, n), so the
  excess loss L(σ) − L*(σ) has a small paired standard error. For an ideal denoiser the
  excess is 0.
* Is a DDPM ε-model biased? `eps_stats_per_timestep` gives the mean and standard
  deviation of ε_θ(x_t, t) and the ε loss per timestep t, with the ideal ε-model's loss
  on the same pairs. The ideal E[ε | x_t] has mean 0; a constant offset shows directly.
* Do samples drift dark or saturate? `pixel_histograms` counts pixel values per step of
  a sampling trajectory (e.g. the denoised estimates D(x_i; σ_i) of
  `edm_sampler(..., return_trajectory=True)`), with the mean, standard deviation and
  the share of pixels beyond ±1 per step.
* Does the model copy its training set? `memorisation_report` gives each generated
  sample's distance to its nearest training image next to the same distance for
  held-out real images; copies sit at 0, novel samples near the held-out distances.

Images are NHWC. Functions built on JAX (`sigma_loss_profile`,
`eps_stats_per_timestep`, `pixel_histograms`) are not jitted here: jit the caller (the
Monte Carlo sizes and bin counts are static). Nearest-neighbour distances are computed
on the host in float64 NumPy, from differences, so an exact copy has distance exactly 0.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from edmjax._arrays import Array
from edmjax import _checks
from edmjax import ddpm
from edmjax import oracle

Denoiser = Callable[[Array, Array], Array]
EpsFn = Callable[[Array, Array], Array]

__all__ = [
    "log_sigma_grid", "SigmaLossProfile", "denoising_errors", "sigma_loss_profile",
    "EpsStats", "eps_stats_per_timestep", "ddpm_timestep_grid", "PixelHistograms",
    "pixel_histograms", "nearest_neighbour_distances", "MemorisationReport",
    "memorisation_report", "memorisation_summary",
]


# ------------------------------------------------------------------------- helpers


def _float_data(data: Any) -> Array:
  data = jnp.asarray(data)
  dtype = data.dtype if jnp.issubdtype(data.dtype, jnp.floating) else jnp.float32
  return data.astype(dtype)


def _mean_stderr(per_sample: Array) -> tuple[Array, Array]:
  """Mean over the last axis and its standard error (NaN for a single sample)."""
  n = per_sample.shape[-1]
  mean = jnp.mean(per_sample, axis=-1)
  if n < 2:
    return mean, jnp.full_like(mean, jnp.nan)
  return mean, jnp.std(per_sample, axis=-1, ddof=1) / np.sqrt(n)


def _draw_pairs(key: Array, data: Array, num_samples: int) -> tuple[Array, Array]:
  """(y, n): `num_samples` training images drawn uniformly and unit Gaussian noise.

  Drawn exactly as `oracle.dataset_loss_lower_bound` does with the same key, so the
  floor of `sigma_loss_profile` equals that function's estimate.
  """
  k_idx, k_noise = jax.random.split(key)
  idx = jax.random.randint(k_idx, (num_samples,), 0, data.shape[0])
  y = data[idx]
  return y, jax.random.normal(k_noise, y.shape, data.dtype)


# ------------------------------------------------------------------ loss per σ


def log_sigma_grid(num: int, sigma_min: float = 0.002, sigma_max: float = 80.0) -> np.ndarray:
  """`num` noise levels evenly spaced in log σ from σ_min to σ_max (float64, host).

  The axis of Karras et al. 2022, Figure 5a.
  """
  _checks.check_int_at_least("num", num, 1)
  _checks.check_positive("sigma_min", sigma_min)
  _checks.check_positive("sigma_max", sigma_max)
  _checks.check_less("sigma_min", sigma_min, "sigma_max", sigma_max)
  return np.geomspace(sigma_min, sigma_max, num)


class SigmaLossProfile(NamedTuple):
  """A denoiser's loss per noise level and the finite-data floor (each `(S,)`).

  Losses are unweighted per-element means, (1/d)‖D(y + σn; σ) − y‖² with d = H·W·C;
  multiply by `weight` for the training objective's λ(σ)-weighted loss.
  """
  sigma: Array          # the noise levels σ_s
  loss: Array           # E‖D(y + σn; σ) − y‖²/d of the model
  loss_stderr: Array    # its Monte Carlo standard error
  bound: Array          # L*(σ): the same for the ideal finite-data denoiser D*
  bound_stderr: Array
  excess: Array         # loss − bound, paired over the same (y, n)
  excess_stderr: Array  # standard error of the paired difference
  weight: Array         # λ(σ) (ones when no weight was given)


def denoising_errors(denoise: Denoiser, y: Array, n: Array, sigmas: Any) -> Array:
  """Per-sample, per-element squared denoising errors on a σ grid.

  .. math::
    e_{s,b} = \\frac{1}{d} \\lVert D(y_b + σ_s n_b; σ_s) − y_b \\rVert^2.

  One denoiser call per σ over the whole batch, in a `lax.map`.

  Args:
    denoise: `denoise(x, sigma)` on NHWC `x` and `sigma` of shape `(batch,)`.
    y: NHWC clean images `(B, H, W, C)`.
    n: unit Gaussian noise shaped like `y`.
    sigmas: `(S,)` noise levels > 0.

  Returns:
    `(S, B)` errors in the dtype of `y`.
  """
  _checks.check_nhwc("y", y)
  if tuple(n.shape) != tuple(y.shape):
    raise ValueError(f"n has shape {n.shape}; expected y's shape {y.shape}.")
  sigmas = jnp.reshape(jnp.asarray(sigmas, y.dtype), (-1,))
  batch = y.shape[0]

  def one_sigma(sigma):
    s = jnp.full((batch,), sigma, y.dtype)
    d = denoise(y + sigma * n, s).astype(y.dtype)
    return jnp.mean(jnp.square(d - y), axis=(1, 2, 3))

  return jax.lax.map(one_sigma, sigmas)


def sigma_loss_profile(denoise: Denoiser, key: Array, data: Any, sigmas: Any,
                       num_samples: int, *, weight: Callable[[Array], Array] | None = None,
                       chunk_size: int = 256) -> SigmaLossProfile:
  """Loss per σ of a denoiser on a finite data set, with the exact floor L*(σ).

  Karras et al. 2022, Figure 5a plots the loss of a trained denoiser against σ. On a
  finite training set {y_i} the loss cannot fall below that of the ideal denoiser
  D* (`oracle.dataset_denoiser`, Eq. 57),

  .. math::
    L^*(σ) = \\frac{1}{d} E_{y, n} ‖D^*(y + σn; σ) − y‖^2,

  so the excess L(σ) − L*(σ) ≥ 0 is what training can still remove at each σ (at
  small σ, L* ≈ 0 is only reached by a model that has memorised the data; at large σ,
  L* is the variance of the data). Both losses are evaluated on the same
  `num_samples` pairs (y, n) at every σ (common random numbers), drawn as in
  `oracle.dataset_loss_lower_bound` (so `bound` equals its estimate for the same
  key), and the excess and its standard error are paired.

  Args:
    denoise: the model `denoise(x, sigma)`; NHWC `x`, `sigma` of shape `(batch,)`.
      A DDPM ε-model enters through `ddpm.ddpm_as_denoiser`.
    key: a jax.random key.
    data: `(N, H, W, C)` training set (the one the model was trained on).
    sigmas: `(S,)` noise levels > 0, e.g. `log_sigma_grid(S)`.
    num_samples: Monte Carlo pairs (static); one model batch.
    weight: optional λ(σ) (e.g. `losses.edm_loss_weight`), stored in `weight`.
    chunk_size: data points per step of the oracle's streamed sum.

  Returns:
    A `SigmaLossProfile` of `(S,)` arrays in the data's floating dtype.

  Example:
    >>> data = jnp.asarray(np.random.RandomState(0).randn(50, 4, 4, 1), jnp.float32)
    >>> prof = sigma_loss_profile(oracle.dataset_denoiser(data), jax.random.key(0),
    ...                           data, log_sigma_grid(5, 0.01, 10.0), 64)
    >>> bool(jnp.all(jnp.abs(prof.excess) < 1e-5))
    True
  """
  _checks.check_nhwc("data", data)
  _checks.check_int_at_least("num_samples", num_samples, 1)
  _checks.check_positive("sigmas", sigmas)
  data = _float_data(data)
  sigmas = jnp.reshape(jnp.asarray(sigmas, data.dtype), (-1,))
  y, n = _draw_pairs(key, data, num_samples)
  e_model = denoising_errors(denoise, y, n, sigmas)
  e_ideal = denoising_errors(oracle.dataset_denoiser(data, chunk_size), y, n, sigmas)
  loss, loss_se = _mean_stderr(e_model)
  bound, bound_se = _mean_stderr(e_ideal)
  excess, excess_se = _mean_stderr(e_model - e_ideal)
  w = jnp.ones_like(sigmas) if weight is None else jnp.asarray(weight(sigmas), data.dtype)
  return SigmaLossProfile(sigma=sigmas, loss=loss, loss_stderr=loss_se, bound=bound,
                          bound_stderr=bound_se, excess=excess, excess_stderr=excess_se,
                          weight=jnp.broadcast_to(w, sigmas.shape))


# ------------------------------------------------------------- DDPM ε per step


class EpsStats(NamedTuple):
  """Statistics of a DDPM ε-model per timestep (each `(K,)`)."""
  t: Array               # int32 timesteps
  sigma: Array           # σ_t = sqrt(1/ᾱ_t − 1), the EDM noise level of step t
  eps_mean: Array        # mean of ε_θ(x_t, t) over samples and elements (ideal: 0)
  eps_mean_stderr: Array # standard error of eps_mean (over samples)
  eps_std: Array         # standard deviation of ε_θ(x_t, t) over samples and elements
  loss: Array            # E (ε_θ(x_t, t) − ε)² per element (Ho et al. 2020, L_simple)
  loss_stderr: Array
  bound: Array           # the same loss of the ideal ε-model of the data set
  bound_stderr: Array


def ddpm_timestep_grid(num: int, T: int) -> np.ndarray:
  """`num` distinct timesteps spread over [0, T − 1], denser at small t (int64, host).

  Spaced evenly in sqrt(t), so the small-noise end, where ε is hardest to predict,
  gets more points; always contains 0 and T − 1.
  """
  _checks.check_int_at_least("T", T, 1)
  _checks.check_int_at_least("num", num, 1)
  t = np.unique(np.round(np.linspace(0.0, np.sqrt(T - 1), num) ** 2).astype(np.int64))
  return t


def eps_stats_per_timestep(eps_fn: EpsFn, key: Array, data: Any, betas: Any,
                           timesteps: Any, num_samples: int, *, with_bound: bool = True,
                           chunk_size: int = 256) -> EpsStats:
  """Mean and spread of predicted ε, and the ε loss, per DDPM timestep.

  For each t, x_t = sqrt(ᾱ_t) y + sqrt(1 − ᾱ_t) ε on `num_samples` pairs (y, ε)
  (the same pairs at every t), and

  .. math::
    \\bar ε_t = \\mathrm{mean}\\, ε_θ(x_t, t),\\quad
    s_t = \\mathrm{std}\\, ε_θ(x_t, t),\\quad
    L_t = \\mathrm{mean}\\, (ε_θ(x_t, t) − ε)^2.

  The ideal model E[ε | x_t] has E[ε̄_t] = 0 (E[E[ε | x_t]] = E[ε] = 0), so a mean
  that departs from 0 by many standard errors is a bias of the model; its loss is the
  floor L*_ε(t) = L*(σ_t)/σ_t² (`bound`, from `ddpm.ddpm_eps_from_denoiser` of
  `oracle.dataset_denoiser`, on the same pairs).

  Args:
    eps_fn: ε-model `eps_fn(x_t, t)` with integer `t` of shape `(batch,)`.
    key: a jax.random key.
    data: `(N, H, W, C)` training set.
    betas: the β table (or `ddpm.DDPMTables`).
    timesteps: `(K,)` integer steps in [0, T), e.g. `ddpm_timestep_grid(K, T)`.
    num_samples: Monte Carlo pairs per timestep (static).
    with_bound: also evaluate the ideal ε-model (a streamed pass over the data).
    chunk_size: data points per step of the oracle's streamed sum.

  Returns:
    An `EpsStats` of `(K,)` arrays (`bound` is NaN without `with_bound`).
  """
  _checks.check_nhwc("data", data)
  _checks.check_int_at_least("num_samples", num_samples, 1)
  data = _float_data(data)
  tables = ddpm.ddpm_tables(betas)
  T = len(tables.betas)
  t_values = _checks.concrete_value(timesteps)
  if t_values is not None and np.any((t_values < 0) | (t_values >= T)):
    raise ValueError(f"timesteps must lie in [0, {T}), got {t_values.ravel().tolist()}.")
  timesteps = jnp.reshape(jnp.asarray(timesteps, jnp.int32), (-1,))
  y, eps = _draw_pairs(key, data, num_samples)
  ideal = (ddpm.ddpm_eps_from_denoiser(oracle.dataset_denoiser(data, chunk_size), tables)
           if with_bound else None)
  sigmas_t = jnp.asarray(tables.sigmas, data.dtype)[timesteps]

  def one_step(t):
    tt = jnp.full((num_samples,), t, jnp.int32)
    x_t = ddpm.q_sample(y, tt, eps, tables)
    pred = eps_fn(x_t, tt).astype(data.dtype)
    per_mean = jnp.mean(pred, axis=(1, 2, 3))
    err = jnp.mean(jnp.square(pred - eps), axis=(1, 2, 3))
    std = jnp.std(pred)
    if ideal is not None:
      err_ideal = jnp.mean(jnp.square(ideal(x_t, tt).astype(data.dtype) - eps), axis=(1, 2, 3))
    else:
      err_ideal = jnp.full_like(err, jnp.nan)
    return per_mean, std, err, err_ideal

  per_mean, std, err, err_ideal = jax.lax.map(one_step, timesteps)
  mean, mean_se = _mean_stderr(per_mean)
  loss, loss_se = _mean_stderr(err)
  bound, bound_se = _mean_stderr(err_ideal)
  return EpsStats(t=timesteps, sigma=sigmas_t, eps_mean=mean, eps_mean_stderr=mean_se,
                  eps_std=std, loss=loss, loss_stderr=loss_se, bound=bound,
                  bound_stderr=bound_se)


# ----------------------------------------------------- pixel values per step


class PixelHistograms(NamedTuple):
  """Pixel-value histograms along a trajectory (`steps` = leading axis of the input)."""
  edges: Array          # (num_bins + 1,) bin edges over value_range
  counts: Array         # (steps, num_bins) int32; values beyond the range fall in the end
                        # bins, so each row sums to the number of finite pixels
  mean: Array           # (steps,) mean pixel value (a drift to dark is a falling mean)
  std: Array            # (steps,)
  frac_below: Array     # (steps,) share of pixels below the lower saturation level
  frac_above: Array     # (steps,) share above the upper one (saturation)
  num_nonfinite: Array  # (steps,) int32 count of NaN / inf pixels (not in `counts`)


def pixel_histograms(images: Any, *, value_range: tuple[float, float] = (-1.5, 1.5),
                     num_bins: int = 60,
                     saturation: tuple[float, float] = (-1.0, 1.0)) -> PixelHistograms:
  """Histograms of pixel values at each step of a sampling trajectory.

  Args:
    images: `(steps, B, H, W, C)`: e.g. `Trajectory.denoised` of a sampler (the
      images the sampler believes in at each step, in data range) or the DDPM
      states; a single NHWC batch is treated as one step.
    value_range: (lo, hi) of the bins; values outside are counted in the first or
      last bin.
    num_bins: number of equal-width bins (static).
    saturation: (lo, hi) levels; `frac_below` / `frac_above` count values strictly
      beyond them (for data in [−1, 1]: black and white clipping).

  Returns:
    A `PixelHistograms` (jax arrays; statistics in float32 or the input's dtype).
  """
  images = jnp.asarray(images)
  if images.ndim == 4:
    images = images[None]
  if images.ndim != 5:
    raise ValueError("images must be (steps, batch, height, width, channels) or one NHWC "
                     f"batch, got shape {images.shape}.")
  _checks.check_int_at_least("num_bins", num_bins, 1)
  lo, hi = (float(v) for v in value_range)
  _checks.check_less("value_range[0]", lo, "value_range[1]", hi)
  dtype = images.dtype if jnp.issubdtype(images.dtype, jnp.floating) else jnp.float32
  x = jnp.reshape(images.astype(dtype), (images.shape[0], -1))
  finite = jnp.isfinite(x)
  safe = jnp.where(finite, x, 0.0)
  idx = jnp.clip(jnp.floor((safe - lo) / (hi - lo) * num_bins), 0, num_bins - 1)
  idx = idx.astype(jnp.int32)

  def count(i, ok):
    return jnp.zeros((num_bins,), jnp.int32).at[i].add(ok.astype(jnp.int32))

  counts = jax.vmap(count)(idx, finite)
  n_ok = jnp.maximum(jnp.sum(finite, axis=1), 1).astype(dtype)
  mean = jnp.sum(safe, axis=1) / n_ok
  var = jnp.sum(jnp.where(finite, jnp.square(safe - mean[:, None]), 0.0), axis=1) / n_ok
  below = jnp.sum(finite & (safe < saturation[0]), axis=1) / n_ok
  above = jnp.sum(finite & (safe > saturation[1]), axis=1) / n_ok
  edges = jnp.asarray(np.linspace(lo, hi, num_bins + 1), dtype)
  return PixelHistograms(edges=edges, counts=counts, mean=mean, std=jnp.sqrt(var),
                         frac_below=below, frac_above=above,
                         num_nonfinite=jnp.sum(~finite, axis=1).astype(jnp.int32))


# ------------------------------------------------------------- memorisation


def nearest_neighbour_distances(queries: Any, references: Any, *,
                                max_elements: int = 1 << 24
                                ) -> tuple[np.ndarray, np.ndarray]:
  """Euclidean distance from each query image to its nearest reference image.

  Computed on the host in float64 from differences ‖q − r‖ (not from
  ‖q‖² + ‖r‖² − 2q·r, which cancels), so a query that is a copy of a reference has
  distance exactly 0.

  Args:
    queries: `(n, ...)` images (NHWC or any shape per image).
    references: `(m, ...)` images of the same per-image shape, m >= 1.
    max_elements: bound on the size of the temporary difference array (queries are
      processed in chunks of `max_elements // (m·d)`).

  Returns:
    `(distances (n,) float64, index (n,) int64)`: the distance to and the index of
    the nearest reference.
  """
  q = np.asarray(queries, np.float64)
  r = np.asarray(references, np.float64)
  if q.shape[1:] != r.shape[1:]:
    raise ValueError(f"queries have images of shape {q.shape[1:]} but references "
                     f"{r.shape[1:]}; they must match.")
  if len(r) < 1:
    raise ValueError("references must hold at least one image.")
  q = q.reshape(len(q), -1)
  r = r.reshape(len(r), -1)
  chunk = max(1, max_elements // max(1, r.size))
  dist = np.empty((len(q),), np.float64)
  index = np.empty((len(q),), np.int64)
  for s in range(0, len(q), chunk):
    d2 = np.sum(np.square(q[s:s + chunk, None, :] - r[None, :, :]), axis=-1)
    j = np.argmin(d2, axis=1)
    index[s:s + chunk] = j
    dist[s:s + chunk] = np.sqrt(d2[np.arange(len(j)), j])
  return dist, index


class MemorisationReport(NamedTuple):
  """Nearest-training-neighbour distances of generated and of held-out real images."""
  sample_distances: np.ndarray   # (n_samples,) float64
  sample_index: np.ndarray       # (n_samples,) index of the nearest training image
  heldout_distances: np.ndarray  # (n_heldout,) float64


def memorisation_report(samples: Any, heldout: Any, train: Any) -> MemorisationReport:
  """Nearest-training-neighbour distances: generated samples vs held-out real images.

  Held-out real images were never trained on, so their distances to the training set
  show how far a *new* image from the data distribution typically is. A model that
  generalises produces samples at similar distances; one that memorises produces
  samples at (or near) distance 0, i.e. training images.

  Args:
    samples: `(n, H, W, C)` generated images (same value range as the data).
    heldout: `(k, H, W, C)` real images not in `train`.
    train: `(m, H, W, C)` the training set.

  Returns:
    A `MemorisationReport`; `memorisation_summary` turns it into numbers.
  """
  ds, idx = nearest_neighbour_distances(samples, train)
  dh, _ = nearest_neighbour_distances(heldout, train)
  return MemorisationReport(sample_distances=ds, sample_index=idx, heldout_distances=dh)


def memorisation_summary(report: MemorisationReport, *, copy_tolerance: float = 1e-6
                         ) -> dict[str, float]:
  """Summary numbers of a `MemorisationReport`.

  Returns:
    A dict with, for `samples` and `heldout`: `*_median`, `*_mean`, `*_p05` (5th
    percentile), `*_min`; `median_ratio` = samples / held-out median (≈ 1: as novel
    as new real images; ≪ 1: copies); `frac_below_heldout_p05`: share of samples
    closer to the training set than 95% of held-out images (≈ 0.05 when samples are
    as novel as real data); `num_copies`: samples within `copy_tolerance` of a
    training image; and the counts.
  """
  out: dict[str, float] = {}
  for name, d in (("samples", report.sample_distances), ("heldout", report.heldout_distances)):
    d = np.asarray(d, np.float64)
    out[f"num_{name}"] = int(d.size)
    if d.size == 0:
      continue
    out[f"{name}_median"] = float(np.median(d))
    out[f"{name}_mean"] = float(np.mean(d))
    out[f"{name}_p05"] = float(np.percentile(d, 5))
    out[f"{name}_min"] = float(np.min(d))
  ds = np.asarray(report.sample_distances, np.float64)
  dh = np.asarray(report.heldout_distances, np.float64)
  if ds.size and dh.size:
    out["median_ratio"] = out["samples_median"] / max(out["heldout_median"], 1e-300)
    out["frac_below_heldout_p05"] = float(np.mean(ds < out["heldout_p05"]))
  out["num_copies"] = int(np.sum(ds <= copy_tolerance))
  return out
