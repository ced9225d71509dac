"""Data statistics that set EDM's noise-level hyperparameters: σ_data and σ_max.

* σ_data (Karras et al. 2022, Sec. 5 and App. B.6) is the standard deviation of
  the data distribution, treated as the same for every pixel: the
  preconditioning makes the network input and training target unit-variance
  under that assumption. It is estimated here as the standard deviation of all
  pixel values of the data set (over N, H, W, C, about their common mean). EDM
  uses 0.5 for its image sets in [-1, 1].
* σ_max: Song & Ermon 2020 ("Improved techniques for training score-based
  generative models", Technique 1) choose the largest noise level "as large as
  the maximum Euclidean distance between all pairs of training data points", so
  that the noisiest distribution covers the whole data set; EDM's σ_max = 80 for
  CIFAR-10 in [-1, 1] follows that rule. :func:`data_report` suggests σ_max =
  the largest pairwise Euclidean distance, measured on a random subset of at
  most ``max_examples`` images (a subset can only underestimate it).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from edmjax import _checks

__all__ = ["DataReport", "data_report", "estimate_sigma_data",
           "max_pairwise_distance"]


def estimate_sigma_data(images: np.ndarray) -> float:
  """EDM's σ_data: the standard deviation of all pixel values of the data set.

  Args:
    images: NHWC array (N, H, W, C), values in [-1, 1].

  Returns:
    The standard deviation over every element (float64 accumulation).
  """
  _checks.check_nhwc("images", images)
  x = np.asarray(images)
  if x.shape[0] == 0:
    raise ValueError("images is empty; need at least one image.")
  chunks = [x[i:i + 4096] for i in range(0, x.shape[0], 4096)]  # bound memory
  mean = sum(float(c.sum(dtype=np.float64)) for c in chunks) / x.size
  sq = sum(float(np.square(c.astype(np.float64) - mean).sum()) for c in chunks)
  return float(np.sqrt(sq / x.size))


def max_pairwise_distance(images: np.ndarray, *, max_examples: int = 2048,
                          seed: int = 0) -> float:
  """Largest Euclidean distance between two images (on a subset if large).

  Args:
    images: NHWC array (N, H, W, C).
    max_examples: when N is larger, a random subset of this many images (drawn
      with `seed`) is used; the result is then a lower bound.
    seed: seed of that subset.

  Returns:
    max_{i, j} ||x_i - x_j||_2 over the (sub)set.
  """
  _checks.check_nhwc("images", images)
  _checks.check_int_at_least("max_examples", max_examples, 2)
  n = images.shape[0]
  if n < 2:
    return 0.0
  if n > max_examples:
    idx = np.random.default_rng(seed).choice(n, max_examples, replace=False)
    images = images[np.sort(idx)]
  x = np.asarray(images, dtype=np.float64).reshape(images.shape[0], -1)
  x = x - x.mean(axis=0, keepdims=True)  # distances are shift-invariant
  sq = np.einsum("nd,nd->n", x, x)
  d2 = sq[:, None] + sq[None, :] - 2.0 * (x @ x.T)
  return float(np.sqrt(max(d2.max(), 0.0)))


class DataReport(NamedTuple):
  """Statistics of an image data set (NHWC, values in [-1, 1]).

  Attributes:
    num_examples: N.
    shape: (H, W, C) of one image.
    mean: mean pixel value.
    sigma_data: standard deviation of all pixel values (EDM's σ_data).
    min: smallest pixel value.
    max: largest pixel value.
    max_distance: largest pairwise Euclidean distance between images (over
      `distance_examples` of them).
    distance_examples: number of images the distance was measured on.
    sigma_max: suggested σ_max (= max_distance, Song & Ermon's Technique 1).
  """

  num_examples: int
  shape: tuple[int, int, int]
  mean: float
  sigma_data: float
  min: float
  max: float
  max_distance: float
  distance_examples: int
  sigma_max: float

  def summary(self) -> str:
    """A few human-readable lines (what the training script's --dry-run prints)."""
    dim = int(np.prod(self.shape))
    return "\n".join([
        f"examples      {self.num_examples} of shape {self.shape} "
        f"(H, W, C; dim {dim})",
        f"pixel range   [{self.min:.3f}, {self.max:.3f}], mean {self.mean:.4f}",
        f"sigma_data    {self.sigma_data:.4f}  (std of all pixel values; "
        "EDM default 0.5)",
        f"max distance  {self.max_distance:.2f} over {self.distance_examples} "
        f"images (= {self.max_distance / np.sqrt(dim):.3f} * sqrt(dim))",
        f"sigma_max     {self.sigma_max:.1f}  suggested (max pairwise distance, "
        "Song & Ermon 2020; EDM uses 80 on CIFAR-10)",
    ])


def data_report(images: np.ndarray, *, max_examples: int = 2048,
                seed: int = 0) -> DataReport:
  """σ_data, a σ_max suggestion and basic statistics of an image set.

  Args:
    images: NHWC array (N, H, W, C), values in [-1, 1].
    max_examples: at most this many images enter the pairwise distances.
    seed: seed of that subset.

  Returns:
    A :class:`DataReport`; ``print(report.summary())`` for the dry run.
  """
  _checks.check_nhwc("images", images)
  x = np.asarray(images)
  if x.shape[0] == 0:
    raise ValueError("images is empty; need at least one image.")
  dist = max_pairwise_distance(x, max_examples=max_examples, seed=seed)
  return DataReport(
      num_examples=int(x.shape[0]), shape=tuple(int(s) for s in x.shape[1:]),
      mean=float(np.mean(x, dtype=np.float64)), sigma_data=estimate_sigma_data(x),
      min=float(x.min()), max=float(x.max()), max_distance=dist,
      distance_examples=int(min(x.shape[0], max_examples)), sigma_max=dist)
