"""Diagnostics (edmjax.eval.diagnostics): facts checked against oracles and closed forms."""

import csv
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from edmjax import ddpm
from edmjax import oracle
from edmjax import samplers
from edmjax.eval import diagnostic_plots as dp
from edmjax.eval import diagnostics as dg

SHAPE = (4, 4, 1)


@pytest.fixture(scope="module")
def data():
  rng = np.random.RandomState(0)
  return jnp.asarray(0.5 * rng.randn(48, *SHAPE) + 0.1, jnp.float32)


@pytest.fixture(scope="module")
def betas():
  return ddpm.linear_beta_schedule(1000)


# ------------------------------------------------------------------ loss per σ


SIGMAS = dg.log_sigma_grid(7, 0.01, 100.0)
_oracle_bound = jax.jit(lambda k, d: oracle.dataset_loss_lower_bound(k, d, SIGMAS, 512))


@pytest.fixture(scope="module")
def ideal_profile(data):
  f = jax.jit(lambda d, k: dg.sigma_loss_profile(oracle.dataset_denoiser(d), k, d, SIGMAS, 512))
  return f(data, jax.random.key(1))


def test_ideal_denoiser_loss_equals_the_finite_data_bound(data, ideal_profile):
  """L(σ) of D* equals oracle.dataset_loss_lower_bound (independent draws) within MC error."""
  p = ideal_profile
  ref = _oracle_bound(jax.random.key(7), data)
  z = (p.loss - ref.loss) / jnp.sqrt(p.loss_stderr**2 + ref.stderr**2 + 1e-30)
  assert bool(jnp.all(jnp.abs(z) < 4.0)), z
  # Paired on the same (y, n): the excess of the ideal denoiser is exactly zero.
  np.testing.assert_allclose(np.asarray(p.excess), 0.0, atol=1e-7)
  np.testing.assert_allclose(np.asarray(p.bound), np.asarray(p.loss), rtol=1e-6)


def test_bound_is_the_oracle_estimate_for_the_same_key(data, ideal_profile):
  ref = _oracle_bound(jax.random.key(1), data)
  np.testing.assert_allclose(np.asarray(ideal_profile.bound), np.asarray(ref.loss),
                             rtol=1e-5, atol=1e-9)


def test_bound_at_large_sigma_is_the_data_variance(data, ideal_profile):
  """σ → ∞: D* → data mean, so L*(σ) → (1/d) E‖y − ȳ‖² (here σ = 100)."""
  var = float(jnp.mean(jnp.square(data - jnp.mean(data, axis=0, keepdims=True))))
  p = ideal_profile
  assert abs(float(p.bound[-1]) - var) < 4 * float(p.bound_stderr[-1]) + 1e-3 * var


def test_a_suboptimal_denoiser_shows_positive_excess(data):
  """The Gaussian fit of the data is not the finite-data optimum: excess > 0 at mid σ."""
  mean, std = float(jnp.mean(data)), float(jnp.std(data))
  denoise = oracle.gaussian_denoiser(mean, std)
  sigmas = np.array([0.05, 0.3, 1.0])
  p = jax.jit(lambda d: dg.sigma_loss_profile(
      denoise, jax.random.key(3), d, sigmas, 256, weight=lambda s: 1.0 / s**2))(data)
  assert bool(jnp.all(p.excess > 5 * p.excess_stderr)), (p.excess, p.excess_stderr)
  np.testing.assert_allclose(np.asarray(p.weight), 1.0 / sigmas**2, rtol=1e-6)


# ------------------------------------------------------------------- DDPM ε


@pytest.fixture(scope="module")
def eps_stats(data, betas):
  ideal = ddpm.ddpm_eps_from_denoiser(oracle.dataset_denoiser(data), betas)
  biased = lambda x, t: ideal(x, t) + 0.3  # noqa: E731
  ts = dg.ddpm_timestep_grid(8, 1000)

  @jax.jit
  def run(d):
    return (dg.eps_stats_per_timestep(ideal, jax.random.key(0), d, betas, ts, 256),
            dg.eps_stats_per_timestep(biased, jax.random.key(0), d, betas, ts, 256))

  return run(data)


def test_ideal_eps_model_has_zero_mean_and_its_loss_is_the_bound(eps_stats):
  ideal, _ = eps_stats
  assert bool(jnp.all(jnp.abs(ideal.eps_mean) < 4 * ideal.eps_mean_stderr)), ideal.eps_mean
  np.testing.assert_allclose(np.asarray(ideal.loss), np.asarray(ideal.bound), rtol=1e-5,
                             atol=1e-9)
  assert bool(jnp.all(ideal.eps_std < 1.05))


def test_biased_eps_model_shows_its_offset_per_timestep(eps_stats):
  """ε_θ = ε* + b: mean ε = b at every t, and the loss exceeds the floor by b² (MC)."""
  ideal, biased = eps_stats
  b = 0.3
  np.testing.assert_allclose(np.asarray(biased.eps_mean - ideal.eps_mean), b, atol=1e-5)
  assert bool(jnp.all(jnp.abs(biased.eps_mean - b) < 4 * biased.eps_mean_stderr))
  excess = biased.loss - biased.bound
  assert bool(jnp.all(jnp.abs(excess - b**2) < 4 * 2 * b * biased.eps_mean_stderr + 1e-4))
  t = np.asarray(biased.t)
  assert t[0] == 0 and t[-1] == 999 and np.all(np.diff(t) > 0)


def test_eps_stats_rejects_out_of_range_timesteps(data, betas):
  with pytest.raises(ValueError, match=r"\[0, 1000\)"):
    dg.eps_stats_per_timestep(lambda x, t: x, jax.random.key(0), data, betas, [0, 1000], 4)


# -------------------------------------------------------------- histograms


def test_histogram_counts_sum_to_pixels_per_step():
  den = oracle.gaussian_denoiser(-0.2, 0.5)
  z = jax.random.normal(jax.random.key(0), (32,) + SHAPE)
  _, traj = jax.jit(lambda z: samplers.edm_sampler(den, z, num_steps=6,
                                                    return_trajectory=True))(z)
  h = jax.jit(lambda d: dg.pixel_histograms(d, value_range=(-1.0, 1.0), num_bins=10))(
      traj.denoised)
  assert h.counts.shape == (6, 10)
  np.testing.assert_array_equal(np.asarray(h.counts).sum(axis=1), 32 * 16)
  assert int(jnp.sum(h.num_nonfinite)) == 0
  # Denoised estimates of N(−0.2, 0.5²) data sit around −0.2 (drift would show here).
  assert abs(float(h.mean[-1]) + 0.2) < 0.15
  x = np.asarray(traj.denoised[-1]).ravel()
  assert float(h.frac_above[-1]) == pytest.approx(np.mean(x > 1.0), abs=1e-6)
  assert float(h.std[-1]) == pytest.approx(np.std(x), rel=1e-4)


def test_histogram_end_bins_absorb_outliers_and_nan_is_counted_apart():
  x = jnp.array([-5.0, -1.0, 0.0, 0.99, 3.0, jnp.nan, jnp.inf, 0.5]).reshape(1, 1, 2, 4, 1)
  h = dg.pixel_histograms(x, value_range=(-1.0, 1.0), num_bins=4)
  np.testing.assert_array_equal(np.asarray(h.counts[0]), [2, 0, 1, 3])
  assert int(h.num_nonfinite[0]) == 2
  assert float(h.frac_below[0]) == pytest.approx(1 / 6)
  assert float(h.frac_above[0]) == pytest.approx(1 / 6)


# ------------------------------------------------------------ memorisation


def test_copies_have_distance_zero_and_heldout_is_positive():
  rng = np.random.RandomState(0)
  train = rng.uniform(-1, 1, (60, 8, 8, 1))
  heldout = rng.uniform(-1, 1, (20, 8, 8, 1))
  picks = np.array([3, 17, 42, 59])
  rep = dg.memorisation_report(train[picks], heldout, train)
  np.testing.assert_array_equal(rep.sample_distances, 0.0)
  np.testing.assert_array_equal(rep.sample_index, picks)
  assert np.all(rep.heldout_distances > 0.5)
  s = dg.memorisation_summary(rep)
  assert s["num_copies"] == 4 and s["median_ratio"] == 0.0
  assert s["frac_below_heldout_p05"] == 1.0
  # Distances agree with a brute-force float64 reference.
  ref = np.sqrt(((heldout[:, None] - train[None]) ** 2).reshape(20, 60, -1).sum(-1)).min(1)
  np.testing.assert_allclose(rep.heldout_distances, ref, rtol=1e-12)


def test_nearest_neighbour_chunks_do_not_change_the_answer():
  rng = np.random.RandomState(1)
  q, r = rng.randn(37, 3, 3, 2), rng.randn(11, 3, 3, 2)
  d1, i1 = dg.nearest_neighbour_distances(q, r)
  d2, i2 = dg.nearest_neighbour_distances(q, r, max_elements=50)
  np.testing.assert_array_equal(i1, i2)
  np.testing.assert_allclose(d1, d2, rtol=0, atol=0)


# ---------------------------------------------------------------- writers


def _rows(path):
  with open(path, newline="", encoding="utf-8") as f:
    return list(csv.reader(f))


def test_writers_produce_csv_and_png(tmp_path, ideal_profile, eps_stats):
  from PIL import Image
  out = str(tmp_path)
  dp.write_sigma_loss_csv(os.path.join(out, "sigma.csv"), ideal_profile)
  rows = _rows(os.path.join(out, "sigma.csv"))
  assert rows[0][:3] == ["sigma", "loss", "loss_stderr"] and len(rows) == 1 + 7
  dp.plot_sigma_loss(os.path.join(out, "sigma.png"), {"a": ideal_profile, "b": ideal_profile})
  dp.write_eps_stats_csv(os.path.join(out, "eps.csv"), eps_stats[1])
  assert len(_rows(os.path.join(out, "eps.csv"))) == 1 + len(eps_stats[1].t)
  dp.plot_eps_stats(os.path.join(out, "eps.png"), eps_stats[1])
  h = dg.pixel_histograms(jnp.zeros((3, 2) + SHAPE), num_bins=5)
  dp.write_histograms_csv(os.path.join(out, "hist.csv"), h, [3.0, 2.0, 1.0])
  rows = _rows(os.path.join(out, "hist.csv"))
  assert len(rows) == 4 and len(rows[0]) == 7 + 5
  dp.plot_pixel_histograms(os.path.join(out, "hist.png"), h, [3.0, 2.0, 1.0])
  rep = dg.memorisation_report(np.zeros((2,) + SHAPE), np.ones((3,) + SHAPE),
                               np.zeros((4,) + SHAPE))
  dp.write_memorisation_csv(os.path.join(out, "nn.csv"), rep)
  assert [r[0] for r in _rows(os.path.join(out, "nn.csv"))[1:]] == ["sample"] * 2 + ["heldout"] * 3
  dp.plot_memorisation(os.path.join(out, "nn.png"), rep)
  for name in ("sigma", "eps", "hist", "nn"):
    with Image.open(os.path.join(out, f"{name}.png")) as im:
      assert im.size[0] > 300 and im.size[1] > 200
