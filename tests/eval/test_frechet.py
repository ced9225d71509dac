"""Fréchet distance, streaming feature statistics and KID (edmjax.eval.frechet)."""

import warnings

import numpy as np
import pytest
import scipy.linalg

from edmjax.eval import frechet

D = 64


def _scipy_fd(mu1, s1, mu2, s2, eps=1e-6):
  """pytorch-fid's `calculate_frechet_distance` (scipy.linalg.sqrtm of Σ1Σ2)."""
  diff = mu1 - mu2
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    covmean, _ = scipy.linalg.sqrtm(s1.dot(s2), disp=False)
    if not np.isfinite(covmean).all():
      off = np.eye(s1.shape[0]) * eps
      covmean = scipy.linalg.sqrtm((s1 + off).dot(s2 + off))
  return diff @ diff + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean.real)


def _rot_cov(rng, eigs):
  q, _ = np.linalg.qr(rng.normal(size=(len(eigs), len(eigs))))
  return (q * eigs) @ q.T


def _cases():
  rng = np.random.default_rng(0)
  yield "random", (np.cov(rng.normal(size=(500, D)), rowvar=False),
                   np.cov(rng.normal(size=(500, D)) @ rng.normal(size=(D, D)) * 0.3,
                          rowvar=False))
  yield "near_singular", (_rot_cov(rng, np.logspace(-12, 0, D)),
                          _rot_cov(rng, np.logspace(-10, 1, D)))
  # Fewer samples than dimensions: rank 19 and 29 covariances (exactly singular).
  yield "singular", (np.cov(rng.normal(size=(20, D)), rowvar=False),
                     np.cov(rng.normal(size=(30, D)) + 0.5, rowvar=False))


@pytest.mark.parametrize("name,covs", list(_cases()))
def test_frechet_distance_matches_scipy_sqrtm(name, covs):
  rng = np.random.default_rng(1)
  s1, s2 = covs
  mu1 = rng.normal(size=D)
  mu2 = mu1 + 0.1 * rng.normal(size=D)
  ours = frechet.frechet_distance(mu1, s1, mu2, s2)
  ref = _scipy_fd(mu1, s1, mu2, s2)
  # Measured: 2e-15 (random), 4e-9 (near-singular, singular) relative.
  assert abs(ours - ref) <= 1e-6 * abs(ref), (name, ours, ref)


def test_frechet_distance_closed_forms():
  rng = np.random.default_rng(2)
  # Commuting (diagonal) covariances: d² = |Δμ|² + Σ(√a - √b)².
  a, b = rng.uniform(0.1, 3, D), rng.uniform(0.1, 3, D)
  mu1, mu2 = rng.normal(size=D), rng.normal(size=D)
  want = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
  got = frechet.frechet_distance(mu1, np.diag(a), mu2, np.diag(b))
  np.testing.assert_allclose(got, want, rtol=1e-12)
  # Identical Gaussians: 0, also for a singular covariance.
  s = np.cov(rng.normal(size=(10, D)), rowvar=False)
  assert abs(frechet.frechet_distance(mu1, s, mu1, s)) < 1e-9
  # Pure mean shift.
  np.testing.assert_allclose(frechet.frechet_distance(mu1, s, mu1 + 2.0, s),
                             4.0 * D, rtol=1e-9)


def test_streaming_stats_equal_numpy_and_merge_across_shards():
  rng = np.random.default_rng(3)
  x = rng.normal(size=(1000, 16)) * rng.uniform(0.5, 2, 16) + 1e6  # big offset
  sizes = [1, 0, 7, 250, 2, 500, 240]
  stats = frechet.init_feature_stats(16)
  start = 0
  for n in sizes:
    stats = frechet.update_feature_stats(stats, x[start:start + n].astype(np.float32)
                                         if n == 7 else x[start:start + n])
    start += n
  assert stats.count == 1000
  x7 = x.copy()
  x7[1:8] = x[1:8].astype(np.float32)
  mu, sigma = frechet.feature_mean_cov(stats)
  np.testing.assert_allclose(mu, x7.mean(0), rtol=1e-14)
  np.testing.assert_allclose(sigma, np.cov(x7, rowvar=False), rtol=1e-9, atol=1e-9)
  # Four shards accumulated separately, then merged (e.g. one per host).
  shards = [frechet.update_feature_stats(frechet.init_feature_stats(16), s)
            for s in np.array_split(x, 4)]
  merged = shards[0]
  for s in shards[1:]:
    merged = frechet.merge_feature_stats(merged, s)
  mu_m, sigma_m = frechet.feature_mean_cov(merged)
  np.testing.assert_allclose(mu_m, x.mean(0), rtol=1e-14)
  np.testing.assert_allclose(sigma_m, np.cov(x, rowvar=False), rtol=1e-9, atol=1e-9)


def _kid_reference(f1, f2, num_subsets, m, seed):
  """clean-fid's `kernel_distance` loop, on torch-fidelity's subset draws."""
  rng = np.random.RandomState(seed)
  n = f1.shape[1]
  vals = []
  for _ in range(num_subsets):
    x = f1[rng.choice(len(f1), m, replace=False)]
    y = f2[rng.choice(len(f2), m, replace=False)]
    a = (x @ x.T / n + 1) ** 3 + (y @ y.T / n + 1) ** 3
    b = (x @ y.T / n + 1) ** 3
    vals.append((a.sum() - np.diag(a).sum()) / (m * (m - 1)) - b.sum() * 2 / m ** 2)
  return np.mean(vals), np.std(vals)


def test_kid_matches_reference_and_is_unbiased():
  rng = np.random.default_rng(4)
  f1 = rng.normal(size=(300, 32))
  f2 = rng.normal(size=(250, 32)) * 1.3 + 0.2
  mean, std = frechet.kernel_inception_distance(f1, f2, num_subsets=20,
                                                subset_size=100, seed=5)
  ref_mean, ref_std = _kid_reference(f1, f2, 20, 100, 5)
  np.testing.assert_allclose([mean, std], [ref_mean, ref_std], rtol=1e-12)
  assert mean > 5 * std / np.sqrt(20)
  # Same distribution: over independent draws the estimate is centred on 0
  # (the biased V-statistic would be positive by ~ 2·E k(x, x) / m).
  vals = np.array([frechet.polynomial_mmd2_unbiased(rng.normal(size=(20, 8)),
                                                    rng.normal(size=(20, 8)))
                   for _ in range(300)])
  assert abs(vals.mean()) < 4 * vals.std() / np.sqrt(len(vals))
  # subset_size is clipped to the smaller set.
  frechet.kernel_inception_distance(f1[:30], f2, num_subsets=2)


def test_reference_stats_roundtrip(tmp_path):
  rng = np.random.default_rng(6)
  stats = frechet.update_feature_stats(frechet.init_feature_stats(8),
                                       rng.normal(size=(50, 8)))
  ref = frechet.reference_stats(stats, {"network": "test", "dataset": "digits"})
  frechet.save_reference_stats(tmp_path / "s.npz", ref.mu, ref.sigma, count=ref.count,
                               metadata=ref.metadata)
  back = frechet.load_reference_stats(tmp_path / "s.npz")
  np.testing.assert_array_equal(back.mu, ref.mu)
  np.testing.assert_array_equal(back.sigma, ref.sigma)
  assert back.count == 50 and back.metadata == {"network": "test", "dataset": "digits"}
  assert frechet.frechet_distance_from_stats(back, stats) == pytest.approx(0, abs=1e-9)
  # pytorch-fid's files hold only mu and sigma.
  np.savez(tmp_path / "p.npz", mu=ref.mu, sigma=ref.sigma)
  assert frechet.load_reference_stats(tmp_path / "p.npz").count == -1
  np.savez(tmp_path / "bad.npz", mean=ref.mu)
  with pytest.raises(ValueError, match="'mu' and 'sigma'"):
    frechet.load_reference_stats(tmp_path / "bad.npz")


def test_bad_inputs_raise_value_errors():
  mu, s = np.zeros(4), np.eye(4)
  with pytest.raises(ValueError, match="mu1 must be a vector"):
    frechet.frechet_distance(np.zeros((4, 1)), s, mu, s)
  with pytest.raises(ValueError, match="sigma2 must have shape"):
    frechet.frechet_distance(mu, s, mu, np.eye(3))
  with pytest.raises(ValueError, match="mismatched feature dims"):
    frechet.frechet_distance(mu, s, np.zeros(3), np.eye(3))
  with pytest.raises(ValueError, match="sigma1 contains non-finite"):
    frechet.frechet_distance(mu, s * np.nan, mu, s)
  stats = frechet.init_feature_stats(4)
  with pytest.raises(ValueError, match="features must be a 2-D array"):
    frechet.update_feature_stats(stats, np.zeros((2, 2, 2)))
  with pytest.raises(ValueError, match="mismatched feature dims"):
    frechet.update_feature_stats(stats, np.zeros((2, 5)))
  with pytest.raises(ValueError, match="non-finite"):
    frechet.update_feature_stats(stats, np.array([[0.0, 1.0, np.inf, 0.0]]))
  with pytest.raises(ValueError, match="at least 2 samples, got count=1"):
    frechet.feature_mean_cov(frechet.update_feature_stats(stats, np.zeros((1, 4))))
  with pytest.raises(ValueError, match="mismatched feature dims"):
    frechet.merge_feature_stats(stats, frechet.init_feature_stats(3))
  with pytest.raises(ValueError, match="at least 2 samples"):
    frechet.kernel_inception_distance(np.zeros((1, 4)), np.zeros((5, 4)))
