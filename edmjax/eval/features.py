"""Feature networks by name, and streaming feature statistics of many images.

FID compares Gaussian fits of features of generated and of real images. Two feature
networks are available:

* 'inception': the FID Inception-v3 pool features (2048-d) of `edmjax.eval.inception`;
  needs the converted TensorFlow weights file (`load_inception_params(path)` or
  `$EDMJAX_INCEPTION_WEIGHTS`), gives the standard FID.
* 'digits': the penultimate features of the embedded digits classifier
  (`edmjax.eval.digits_classifier`), fully offline; its Fréchet distance is FD_digits.

`feature_network(kind)` returns the unjitted feature function and metadata;
`accumulate_feature_stats` runs it batch by batch (the caller passes a jitted function)
into float64 `FeatureStats`. Images are NHWC in [-1, 1] (or uint8 for Inception).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import numpy as np

from edmjax.eval import digits_classifier as dc
from edmjax.eval import frechet
from edmjax.eval import inception

__all__ = ["FEATURE_KINDS", "FeatureNetwork", "feature_network", "accumulate_feature_stats",
           "frechet_distance_to"]

FEATURE_KINDS = ("inception", "digits")


class FeatureNetwork(NamedTuple):
  """A feature function `apply(variables, images) -> (batch, dim)` and its variables."""
  kind: str
  apply: Callable[[Any, Any], Any]
  variables: Any
  dim: int
  metadata: dict


def feature_network(kind: str, *, inception_path: str | None = None) -> FeatureNetwork:
  """The feature network `kind` ('inception' or 'digits'), ready to apply (not jitted).

  Args:
    kind: one of `FEATURE_KINDS`.
    inception_path: the FID Inception weights file; None reads
      `$EDMJAX_INCEPTION_WEIGHTS`.

  Raises:
    ValueError: for an unknown kind.
    FileNotFoundError: 'inception' without a weights file; the message says which file
      is needed and where to get it.
  """
  if kind == "inception":
    variables = inception.load_inception_params(inception_path)
    return FeatureNetwork("inception", lambda v, x: inception.inception_features(v, x),
                          variables, 2048, {"network": "inception"})
  if kind == "digits":
    clf = dc.load_digits_classifier()
    return FeatureNetwork("digits",
                          lambda v, x: dc.digits_features(v, x, clf.config)[0],
                          clf.params, clf.config.hidden,
                          {"network": "digits_classifier", "hidden": clf.config.hidden})
  raise ValueError(f"Unknown feature network {kind!r}; choose one of {FEATURE_KINDS}.")


def accumulate_feature_stats(apply: Callable[[Any], Any], batches: Iterable[Any], dim: int
                             ) -> frechet.FeatureStats:
  """Float64 mean/covariance statistics of `apply(batch)` over every batch.

  Args:
    apply: images `(b, H, W, C)` -> features `(b, dim)` (jit it yourself).
    batches: an iterable of NHWC image batches.
    dim: feature dimension.

  Returns:
    `frechet.FeatureStats`; `frechet.feature_mean_cov` gives (μ, Σ).
  """
  stats = frechet.init_feature_stats(dim)
  for batch in batches:
    if len(batch) == 0:
      continue
    stats = frechet.update_feature_stats(stats, np.asarray(apply(batch), np.float64))
  return stats


def frechet_distance_to(reference: frechet.ReferenceStats, apply: Callable[[Any], Any],
                        images: Any, dim: int, *, batch_size: int = 512) -> float:
  """Fréchet distance between the features of `images` and reference statistics.

  Args:
    reference: statistics of real images (`frechet.load_reference_stats`, or a
      `DigitsClassifier.reference`).
    apply: images -> `(b, dim)` features, jitted once by the caller (so that scoring
      many image sets compiles once).
    images: `(n, H, W, C)` images, n >= 2.
    dim: feature dimension.
    batch_size: images per call of `apply`.
  """
  images = np.asarray(images)
  stats = accumulate_feature_stats(
      apply, (images[i:i + batch_size] for i in range(0, len(images), batch_size)), dim)
  mu, sigma = frechet.feature_mean_cov(stats)
  return frechet.frechet_distance(mu, sigma, reference.mu, reference.sigma)
