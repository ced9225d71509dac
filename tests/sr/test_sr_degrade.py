"""Facts about the degradations: exactness, shapes, block means, consistency, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from edmjax.sr import degrade


def _images(shape, seed=0):
  return jax.random.uniform(jax.random.key(seed), shape, minval=-1.0, maxval=1.0)


@pytest.mark.parametrize("scale", [2, 4, 8])
def test_area_downsample_of_constant_is_exact(scale):
  x = jnp.full((2, 16, 24, 3), 0.3721, jnp.float32)
  y = degrade.area_downsample(x, scale)
  assert y.shape == (2, 16 // scale, 24 // scale, 3)
  np.testing.assert_array_equal(np.asarray(y), np.float32(0.3721))


def test_area_downsample_is_the_block_mean():
  x = np.asarray(_images((1, 8, 12, 2)), np.float64)
  y = np.asarray(degrade.area_downsample(jnp.asarray(x), 4))
  for i in range(2):
    for j in range(3):
      np.testing.assert_allclose(y[0, i, j], x[0, 4 * i:4 * i + 4, 4 * j:4 * j + 4].mean((0, 1)),
                                 rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("method", ["area", "bicubic"])
@pytest.mark.parametrize("scale", [2, 4, 8])
def test_downsample_upsample_shapes(method, scale):
  x = _images((2, 32, 16, 3))
  lr = degrade.downsample(x, scale, method)
  assert lr.shape == (2, 32 // scale, 16 // scale, 3)
  assert degrade.upsample(lr, scale).shape == x.shape


def test_bicubic_upsampling_keeps_constants_and_nearest_is_right_inverse():
  c = jnp.full((1, 4, 4, 1), -0.25)
  np.testing.assert_allclose(degrade.upsample(c, 4), -0.25, atol=1e-6)
  lr = _images((1, 4, 5, 3))
  np.testing.assert_allclose(degrade.area_downsample(degrade.nearest_upsample(lr, 4), 4), lr,
                             atol=1e-6)


def test_consistency_is_infinite_for_an_exact_downsample_and_projection_makes_it_so():
  hr = _images((2, 16, 16, 3))
  cfg = degrade.DegradeConfig(scale=4)
  lr = degrade.degrade(None, hr, cfg)
  assert np.all(np.isinf(np.asarray(degrade.lr_consistency(hr, lr, cfg))))
  sr = hr + 0.05 + 0.1 * _images((2, 16, 16, 3), seed=1)  # a colour shift of 0.05
  np.testing.assert_allclose(degrade.lr_consistency(sr, lr, cfg),
                             10 * np.log10(4 / 0.05**2), atol=1.0)
  projected = degrade.project_consistent(sr, lr, 4)
  assert np.all(np.asarray(degrade.lr_consistency(projected, lr, 4)) > 100)
  np.testing.assert_allclose(degrade.mean_colour_error(projected, lr), 0.0, atol=1e-4)


def test_blur_keeps_constants_and_noise_has_its_std():
  c = jnp.full((1, 16, 16, 1), 0.5)
  np.testing.assert_allclose(degrade.gaussian_blur(c, 1.5), 0.5, atol=1e-6)
  hr = jnp.zeros((4, 64, 64, 3))
  lr = degrade.degrade(jax.random.key(0), hr, degrade.DegradeConfig(scale=2, noise_std=0.1))
  assert abs(float(jnp.std(lr)) - 0.1) < 0.005


def test_mean_colour_error_units():
  a = jnp.zeros((1, 4, 4, 3))
  b = jnp.full((1, 2, 2, 3), 2.0 / 255)  # 1/255 of the 8-bit range in [-1, 1]
  np.testing.assert_allclose(degrade.mean_colour_error(a, b), 1.0, rtol=1e-5)


@pytest.mark.parametrize("scale", [3, 16, 1, True])
def test_bad_scale_names_the_value(scale):
  with pytest.raises(ValueError, match=f"scale={scale!r}"):
    degrade.DegradeConfig(scale=scale)
  with pytest.raises(ValueError, match="scale="):
    degrade.area_downsample(jnp.zeros((1, 48, 48, 1)), scale)


def test_indivisible_image_and_bad_method_errors():
  with pytest.raises(ValueError, match="18x16 is not divisible by scale=4"):
    degrade.area_downsample(jnp.zeros((1, 18, 16, 1)), 4)
  with pytest.raises(ValueError, match="method='lanczos'"):
    degrade.DegradeConfig(method="lanczos")
  with pytest.raises(ValueError, match="noise_std"):
    degrade.DegradeConfig(noise_std=-0.1)
