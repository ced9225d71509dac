"""Reference statistics in NVlabs/edm's format (`fid.py ref`: an .npz with mu, sigma).

NVlabs writes `np.savez(f, mu=mu, sigma=sigma)` (float64) and reads `dict(np.load(f))`,
then `calculate_fid_from_inception_stats(mu, sigma, ref['mu'], ref['sigma'])`:
|mu − mu_ref|² + tr(sigma + sigma_ref − 2 sqrtm(sigma sigma_ref)), with scipy's sqrtm.
"""

import numpy as np
import scipy.linalg

from edmjax.eval import frechet


def _gaussian(rng, dim=64, n=500):
  f = rng.standard_normal((n, dim)) @ rng.standard_normal((dim, dim)) / 8 + rng.normal(
      size=dim)
  return f.mean(0), np.cov(f, rowvar=False)


def _nvlabs_fid(mu, sigma, mu_ref, sigma_ref):
  """NVlabs/edm fid.py's formula, as it states it."""
  m = np.square(mu - mu_ref).sum()
  s = scipy.linalg.sqrtm(np.dot(sigma, sigma_ref))  # NVlabs passes disp=False (same value)
  return float(np.real(m + np.trace(sigma + sigma_ref - s * 2)))


def test_nvlabs_files_read_and_ours_are_nvlabs_readable(tmp_path):
  rng = np.random.default_rng(0)
  (mu, sigma), (mu2, sigma2) = _gaussian(rng), _gaussian(rng)
  # A file as NVlabs' `fid.py ref` writes it.
  np.savez(tmp_path / "nvlabs.npz", mu=mu, sigma=sigma)
  ref = frechet.load_reference_stats(tmp_path / "nvlabs.npz")
  np.testing.assert_array_equal(ref.mu, mu)
  np.testing.assert_array_equal(ref.sigma, sigma)
  assert ref.count == -1 and ref.metadata == {}
  # A file edmjax writes, read the way NVlabs' fid.py reads it (no pickle allowed).
  frechet.save_reference_stats(tmp_path / "ours.npz", mu2, sigma2, count=500,
                               metadata={"features": "pt_inception-2015-12-05"})
  with open(tmp_path / "ours.npz", "rb") as f:
    theirs = dict(np.load(f))
  assert theirs["mu"].dtype == np.float64 and theirs["sigma"].shape == (64, 64)
  np.testing.assert_array_equal(theirs["mu"], mu2)
  # The same FID either way.
  want = _nvlabs_fid(mu, sigma, theirs["mu"], theirs["sigma"])
  got = frechet.frechet_distance_from_stats(ref, frechet.load_reference_stats(
      tmp_path / "ours.npz"))
  assert abs(got - want) <= 1e-9 * want
