"""σ_data and the σ_max suggestion."""

import numpy as np
import pytest

from edmjax import data


def test_sigma_data_closed_forms():
  signs = np.ones((4, 3, 3, 2), np.float32)
  signs[::2] = -1  # half the pixels -1, half +1: mean 0, std exactly 1
  assert data.estimate_sigma_data(signs) == pytest.approx(1.0, abs=1e-12)
  assert data.estimate_sigma_data(np.full((3, 2, 2, 1), 0.3)) == pytest.approx(
      0.0, abs=1e-12)
  x = np.random.default_rng(0).uniform(-1, 1, (50, 4, 4, 3)).astype(np.float32)
  assert data.estimate_sigma_data(x) == pytest.approx(float(np.std(x)),
                                                      rel=1e-5)


def test_max_distance_and_sigma_max_rule():
  x = np.stack([np.full((4, 4, 3), -1.0), np.zeros((4, 4, 3)),
                np.full((4, 4, 3), 1.0)]).astype(np.float32)
  report = data.data_report(x)
  assert report.max_distance == pytest.approx(2 * np.sqrt(48), rel=1e-9)
  assert report.sigma_max == report.max_distance
  assert report.shape == (4, 4, 3) and report.num_examples == 3
  assert "sigma_data" in report.summary() and "sigma_max" in report.summary()


def test_digits_report_and_subsampled_distance_is_a_lower_bound():
  images = data.load_digits().images
  report = data.data_report(images)
  assert report.sigma_data == pytest.approx(float(np.std(images)), rel=1e-5)
  assert 0 < report.sigma_data < 1 and report.min == -1 and report.max == 1
  sub = data.max_pairwise_distance(images, max_examples=100, seed=0)
  assert 0 < sub <= report.max_distance <= 2 * np.sqrt(64)


def test_stats_reject_non_nhwc():
  with pytest.raises(ValueError, match="NHWC"):
    data.estimate_sigma_data(np.zeros((3, 8, 8)))
