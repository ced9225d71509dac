"""Fréchet distance and kernel distance between feature distributions (host, float64).

Feature statistics are accumulated on the host in NumPy float64, batch by batch, with
the parallel update of Chan, Golub & LeVeque (1979): each batch contributes its own
count, mean and centred sum of outer products, and two partial states merge as

.. math::

  n = n_a + n_b, \\qquad \\delta = \\bar x_b - \\bar x_a, \\qquad
  \\bar x = \\bar x_a + \\delta\\, n_b / n, \\qquad
  M_2 = M_{2,a} + M_{2,b} + \\delta\\delta^\\top n_a n_b / n,

so the covariance :math:`\\Sigma = M_2 / (n - 1)` never suffers the cancellation of
:math:`E[xx^\\top] - \\bar x\\bar x^\\top`, and states from different hosts or shards merge
exactly (`merge_feature_stats`).

The Fréchet distance between the Gaussians :math:`N(\\mu_1, \\Sigma_1)` and
:math:`N(\\mu_2, \\Sigma_2)` (Dowson & Landau 1982; FID of Heusel et al. 2017,
arXiv 1706.08500) is

.. math::

  d^2 = \\lVert \\mu_1 - \\mu_2 \\rVert^2 + \\operatorname{tr}\\Sigma_1
        + \\operatorname{tr}\\Sigma_2 - 2 \\operatorname{tr}\\sqrt{\\Sigma_1\\Sigma_2}.

The reference implementations (pytorch-fid, NVlabs/edm) evaluate the last term with
`scipy.linalg.sqrtm(Σ1 Σ2)`. Here it is computed without scipy from the similar,
symmetric positive semi-definite matrix :math:`A = \\Sigma_1^{1/2}\\Sigma_2\\Sigma_1^{1/2}`:
:math:`\\Sigma_1\\Sigma_2` and :math:`A` share their eigenvalues
:math:`\\lambda_i \\ge 0`, so :math:`\\operatorname{tr}\\sqrt{\\Sigma_1\\Sigma_2} =
\\sum_i \\sqrt{\\lambda_i}`, with two symmetric eigen-decompositions (`numpy.linalg.eigh`)
and eigenvalues below round-off (n·eps·λ_max) set to zero. This is stable for singular covariances
(fewer samples than dimensions), where `sqrtm` needs an `eps·I` offset.

KID (Bińkowski et al. 2018, "Demystifying MMD GANs", arXiv 1801.01401) is the unbiased
estimate of the squared MMD with the cubic polynomial kernel
:math:`k(x, y) = (x^\\top y / d + 1)^3`, averaged over random subsets as in
torch-fidelity and clean-fid.
"""

from __future__ import annotations

import json
import os
from typing import Any, NamedTuple

import numpy as np


class FeatureStats(NamedTuple):
  """Running first and second moments of a feature set (host NumPy, float64).

  Attributes:
    count: number of feature vectors seen; Python int.
    mean: running mean, shape (dim,), float64.
    m2: centred sum of outer products :math:`\\sum_i (x_i - \\bar x)(x_i - \\bar x)^\\top`,
      shape (dim, dim), float64.
  """
  count: int
  mean: np.ndarray
  m2: np.ndarray


class ReferenceStats(NamedTuple):
  """Gaussian statistics of a reference feature set, as saved in a `.npz` file.

  Attributes:
    mu: mean, shape (dim,), float64.
    sigma: covariance, shape (dim, dim), float64.
    count: number of samples behind the statistics (-1 when unknown, e.g. for files
      written by pytorch-fid, which hold only `mu` and `sigma`).
    metadata: free-form dict of strings/numbers (feature network, data set, ...).
  """
  mu: np.ndarray
  sigma: np.ndarray
  count: int
  metadata: dict


# ----------------------------------------------------------------------------- checks

def _as_features(name: str, features: Any, dim: int | None = None) -> np.ndarray:
  """Validates a (num, dim) feature matrix and returns it as float64."""
  x = np.asarray(features)
  if x.ndim != 2:
    raise ValueError(
        f"{name} must be a 2-D array (num_samples, feature_dim), got shape {x.shape}.")
  if dim is not None and x.shape[1] != dim:
    raise ValueError(
        f"{name} has feature dimension {x.shape[1]} but {dim} was expected "
        "(mismatched feature dims).")
  x = x.astype(np.float64)
  if not np.all(np.isfinite(x)):
    bad = int(np.sum(~np.isfinite(x)))
    raise ValueError(f"{name} contains {bad} non-finite values (NaN or inf).")
  return x


def _check_gaussian(name_mu: str, mu: Any, name_sigma: str, sigma: Any):
  mu = np.asarray(mu, dtype=np.float64)
  sigma = np.asarray(sigma, dtype=np.float64)
  if mu.ndim != 1:
    raise ValueError(f"{name_mu} must be a vector (dim,), got shape {mu.shape}.")
  if sigma.shape != (mu.shape[0], mu.shape[0]):
    raise ValueError(
        f"{name_sigma} must have shape {(mu.shape[0], mu.shape[0])} to match "
        f"{name_mu}, got shape {sigma.shape}.")
  for n, v in ((name_mu, mu), (name_sigma, sigma)):
    if not np.all(np.isfinite(v)):
      raise ValueError(f"{n} contains non-finite values (NaN or inf).")
  return mu, sigma


# ------------------------------------------------------------------------ accumulator

def init_feature_stats(dim: int) -> FeatureStats:
  """Empty statistics for features of size `dim`."""
  if isinstance(dim, bool) or not isinstance(dim, (int, np.integer)) or dim < 1:
    raise ValueError(f"dim must be a positive int, got {dim!r}.")
  return FeatureStats(0, np.zeros((dim,), np.float64), np.zeros((dim, dim), np.float64))


def merge_feature_stats(a: FeatureStats, b: FeatureStats) -> FeatureStats:
  """Merges two partial statistics exactly (Chan et al. 1979 parallel update).

  Use it to combine per-host or per-shard accumulators; the result equals the
  statistics of the concatenated feature sets (up to float64 round-off).
  """
  if a.mean.shape != b.mean.shape:
    raise ValueError(
        f"cannot merge statistics of feature dims {a.mean.shape[0]} and "
        f"{b.mean.shape[0]} (mismatched feature dims).")
  if b.count == 0:
    return a
  if a.count == 0:
    return b
  n = a.count + b.count
  delta = b.mean - a.mean
  mean = a.mean + delta * (b.count / n)
  m2 = a.m2 + b.m2 + np.outer(delta, delta) * (a.count * b.count / n)
  return FeatureStats(n, mean, m2)


def update_feature_stats(stats: FeatureStats, features: Any) -> FeatureStats:
  """Adds a batch of features, shape (batch, dim), to the running statistics.

  Args:
    stats: the current `FeatureStats` (from `init_feature_stats`).
    features: array (batch, dim), any float dtype (NumPy or JAX); cast to float64.

  Returns:
    The updated `FeatureStats`; `stats` is not modified.

  Example:
    >>> s = init_feature_stats(3)
    >>> for feats in np.ones((2, 5, 3)):             # two batches of 5 feature vectors
    ...   s = update_feature_stats(s, feats)
    >>> s.count, s.mean.tolist()
    (10, [1.0, 1.0, 1.0])
    >>> mu, sigma = feature_mean_cov(s)
  """
  x = _as_features("features", features, stats.mean.shape[0])
  if x.shape[0] == 0:
    return stats
  mean_b = x.mean(axis=0)
  xc = x - mean_b
  batch = FeatureStats(int(x.shape[0]), mean_b, xc.T @ xc)
  return merge_feature_stats(stats, batch)


def feature_mean_cov(stats: FeatureStats) -> tuple[np.ndarray, np.ndarray]:
  """Mean and unbiased covariance :math:`M_2/(n-1)` (as `np.cov`), both float64."""
  if stats.count < 2:
    raise ValueError(
        f"the covariance needs at least 2 samples, got count={stats.count}.")
  sigma = stats.m2 / (stats.count - 1)
  return stats.mean.copy(), 0.5 * (sigma + sigma.T)


def feature_statistics(features: Any) -> tuple[np.ndarray, np.ndarray]:
  """Mean and covariance of a (num, dim) feature matrix in float64 (one batch)."""
  x = _as_features("features", features)
  return feature_mean_cov(update_feature_stats(init_feature_stats(x.shape[1]), x))


# ----------------------------------------------------------------- Fréchet distance

def _resolved(w: np.ndarray) -> np.ndarray:
  """Eigenvalues with those below round-off (n·eps·max|w|) set to exactly 0.

  Eigenvalues under this level are not resolved by `eigh`; keeping their round-off
  would add sqrt(round-off) ~ 1e-8·scale per null direction to the trace.
  """
  tol = w.shape[0] * np.finfo(np.float64).eps * max(float(np.max(np.abs(w))), 0.0)
  return np.where(w > tol, w, 0.0)


def _psd_sqrt(a: np.ndarray) -> np.ndarray:
  """Symmetric square root of a symmetric PSD matrix via `eigh` (negatives -> 0)."""
  w, v = np.linalg.eigh(0.5 * (a + a.T))
  return (v * np.sqrt(_resolved(w))) @ v.T


def trace_sqrt_product(sigma1: Any, sigma2: Any) -> float:
  """:math:`\\operatorname{tr}\\sqrt{\\Sigma_1\\Sigma_2}` of two PSD matrices, float64.

  Computed as :math:`\\sum_i \\sqrt{\\lambda_i(\\Sigma_1^{1/2}\\Sigma_2\\Sigma_1^{1/2})}`;
  the symmetrised middle matrix is similar to :math:`\\Sigma_1\\Sigma_2`.
  """
  s1 = np.asarray(sigma1, np.float64)
  s2 = np.asarray(sigma2, np.float64)
  r1 = _psd_sqrt(s1)
  m = r1 @ s2 @ r1
  w = np.linalg.eigvalsh(0.5 * (m + m.T))
  return float(np.sum(np.sqrt(_resolved(w))))


def frechet_distance(mu1: Any, sigma1: Any, mu2: Any, sigma2: Any) -> float:
  """Squared Fréchet (2-Wasserstein) distance between two Gaussians, in float64.

  .. math::

    d^2 = \\lVert \\mu_1 - \\mu_2 \\rVert^2 + \\operatorname{tr}\\Sigma_1
          + \\operatorname{tr}\\Sigma_2 - 2 \\operatorname{tr}\\sqrt{\\Sigma_1\\Sigma_2}

  (Dowson & Landau 1982; FID, Heusel et al. 2017). Equals pytorch-fid's
  `calculate_frechet_distance` (scipy `sqrtm`) to ~1e-9 relative on well-conditioned
  inputs and stays finite and accurate on singular covariances.

  Args:
    mu1: mean of the first distribution, shape (dim,).
    sigma1: covariance, shape (dim, dim), symmetric PSD.
    mu2: mean of the second distribution, shape (dim,).
    sigma2: covariance, shape (dim, dim).

  Returns:
    The distance as a Python float (clipped at 0 against round-off).
  """
  mu1, sigma1 = _check_gaussian("mu1", mu1, "sigma1", sigma1)
  mu2, sigma2 = _check_gaussian("mu2", mu2, "sigma2", sigma2)
  if mu1.shape != mu2.shape:
    raise ValueError(
        f"mu1 has dim {mu1.shape[0]} but mu2 has dim {mu2.shape[0]} "
        "(mismatched feature dims).")
  diff = mu1 - mu2
  fd = (diff @ diff + np.trace(sigma1) + np.trace(sigma2)
        - 2.0 * trace_sqrt_product(sigma1, sigma2))
  return float(max(fd, 0.0))


def frechet_distance_from_stats(a: FeatureStats | ReferenceStats,
                                b: FeatureStats | ReferenceStats) -> float:
  """`frechet_distance` between two `FeatureStats` / `ReferenceStats`."""
  def mc(s):
    return (s.mu, s.sigma) if isinstance(s, ReferenceStats) else feature_mean_cov(s)
  (m1, s1), (m2, s2) = mc(a), mc(b)
  return frechet_distance(m1, s1, m2, s2)


def frechet_distance_features(features1: Any, features2: Any) -> float:
  """`frechet_distance` between the Gaussian fits of two (num, dim) feature sets."""
  f1 = _as_features("features1", features1)
  f2 = _as_features("features2", features2, f1.shape[1])
  return frechet_distance(*feature_statistics(f1), *feature_statistics(f2))


# ------------------------------------------------------------------------------ KID

def polynomial_mmd2_unbiased(x: Any, y: Any, *, degree: int = 3,
                             gamma: float | None = None, coef0: float = 1.0) -> float:
  """Unbiased squared MMD with the kernel :math:`k(x,y) = (\\gamma x^\\top y + c_0)^{p}`.

  .. math::

    \\widehat{\\mathrm{MMD}}^2 = \\frac{1}{m(m-1)} \\sum_{i \\ne j} [k(x_i,x_j) + k(y_i,y_j)]
      - \\frac{2}{m^2} \\sum_{i,j} k(x_i, y_j)

  with :math:`\\gamma = 1/d` by default (Bińkowski et al. 2018, eq. 3; the estimator of
  torch-fidelity's `mmd2(..., mmd_est='unbiased')` and clean-fid's `kernel_distance`).
  `x` and `y` have the same number m >= 2 of rows.
  """
  x = _as_features("x", x)
  y = _as_features("y", y, x.shape[1])
  m = x.shape[0]
  if y.shape[0] != m:
    raise ValueError(f"x and y must have the same number of rows, got {m} and "
                     f"{y.shape[0]}.")
  if m < 2:
    raise ValueError(f"the unbiased MMD needs at least 2 samples, got {m}.")
  g = 1.0 / x.shape[1] if gamma is None else float(gamma)
  k_xx = (x @ x.T * g + coef0) ** degree
  k_yy = (y @ y.T * g + coef0) ** degree
  k_xy = (x @ y.T * g + coef0) ** degree
  off = (k_xx.sum() - np.trace(k_xx) + k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
  return float(off - 2.0 * k_xy.sum() / (m * m))


def kernel_inception_distance(features1: Any, features2: Any, *,
                              num_subsets: int = 100, subset_size: int = 1000,
                              seed: int = 0) -> tuple[float, float]:
  """KID: unbiased cubic-kernel MMD² averaged over random subsets (mean, std).

  For each of `num_subsets` subsets, `m = min(subset_size, n1, n2)` rows are drawn
  without replacement from each feature set (NumPy `RandomState(seed)`, as in
  torch-fidelity), and `polynomial_mmd2_unbiased` is evaluated. Returns the mean and
  the (population, ddof=0) standard deviation over subsets, like torch-fidelity's
  `kernel_inception_distance_mean/std`. Values are in feature units (not ×1000).

  Args:
    features1: (n1, dim) features, e.g. of generated images.
    features2: (n2, dim) features of the reference set.
    num_subsets: number of random subsets (>= 1).
    subset_size: maximal subset size; clipped to the smaller set (must reach >= 2).
    seed: seed of the subset sampler.

  Returns:
    `(kid_mean, kid_std)` as Python floats.
  """
  f1 = _as_features("features1", features1)
  f2 = _as_features("features2", features2, f1.shape[1])
  if num_subsets < 1:
    raise ValueError(f"num_subsets must be >= 1, got {num_subsets}.")
  m = min(int(subset_size), f1.shape[0], f2.shape[0])
  if m < 2:
    raise ValueError(
        f"KID needs at least 2 samples per set, got subset size {m} "
        f"(n1={f1.shape[0]}, n2={f2.shape[0]}, subset_size={subset_size}).")
  rng = np.random.RandomState(seed)
  mmds = np.empty((num_subsets,), np.float64)
  for i in range(num_subsets):
    a = f1[rng.choice(f1.shape[0], m, replace=False)]
    b = f2[rng.choice(f2.shape[0], m, replace=False)]
    mmds[i] = polynomial_mmd2_unbiased(a, b)
  return float(mmds.mean()), float(mmds.std())


# ---------------------------------------------------------------------- persistence

def save_reference_stats(path: str | os.PathLike, mu: Any, sigma: Any, *,
                         count: int = -1, metadata: dict | None = None) -> None:
  """Writes reference statistics to an `.npz` with keys `mu`, `sigma`, `count`, `metadata`.

  The file is readable by pytorch-fid / clean-fid style loaders (`mu`, `sigma`);
  `metadata` (JSON-serialisable dict, e.g. feature network and data set) is stored as
  a JSON string.
  """
  mu, sigma = _check_gaussian("mu", mu, "sigma", sigma)
  meta = json.dumps(metadata or {}, sort_keys=True)
  np.savez(path, mu=mu, sigma=sigma, count=np.int64(count), metadata=np.str_(meta))


def load_reference_stats(path: str | os.PathLike) -> ReferenceStats:
  """Reads `.npz` statistics written by `save_reference_stats` or pytorch-fid."""
  with np.load(path, allow_pickle=False) as f:
    if "mu" not in f or "sigma" not in f:
      raise ValueError(
          f"{os.fspath(path)!r} holds keys {sorted(f.keys())}; reference statistics "
          "need 'mu' and 'sigma'.")
    mu, sigma = _check_gaussian("mu", f["mu"], "sigma", f["sigma"])
    count = int(f["count"]) if "count" in f else -1
    metadata = json.loads(str(f["metadata"])) if "metadata" in f else {}
  return ReferenceStats(mu, sigma, count, metadata)


def reference_stats(stats: FeatureStats, metadata: dict | None = None) -> ReferenceStats:
  """`ReferenceStats` (mean, covariance, count) of an accumulator."""
  mu, sigma = feature_mean_cov(stats)
  return ReferenceStats(mu, sigma, int(stats.count), dict(metadata or {}))
