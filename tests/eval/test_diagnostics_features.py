"""edmjax.eval.features: streaming statistics and the Fréchet distance to a reference."""

import numpy as np
import pytest

from edmjax.eval import features
from edmjax.eval import frechet


def test_frechet_distance_to_matches_the_direct_formula_for_any_batch_size():
  rng = np.random.RandomState(0)
  a = rng.randn(300, 2, 2, 2)
  b = 0.7 * rng.randn(200, 2, 2, 2) + 0.3
  flat = lambda x: np.asarray(x).reshape(len(x), -1)  # noqa: E731
  mu, sigma = frechet.feature_statistics(flat(b))
  ref = frechet.ReferenceStats(mu, sigma, len(b), {})
  want = frechet.frechet_distance_features(flat(a), flat(b))
  for bs in (7, 64, 1000):
    got = features.frechet_distance_to(ref, flat, a, 8, batch_size=bs)
    assert got == pytest.approx(want, rel=1e-9)


def test_unknown_and_missing_feature_networks_give_clear_errors(monkeypatch):
  with pytest.raises(ValueError, match="inception"):
    features.feature_network("resnet")
  monkeypatch.delenv("EDMJAX_INCEPTION_WEIGHTS", raising=False)
  with pytest.raises(FileNotFoundError, match="pt_inception-2015-12-05"):
    features.feature_network("inception")
