"""PSNR and SSIM (edmjax.eval.image_metrics) equal scikit-image's on the same inputs."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from skimage import data as skdata
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from edmjax.eval import image_metrics

WANG = dict(gaussian_weights=True, sigma=1.5, use_sample_covariance=False)


def _photo_pairs(dtype):
  """Real photographs (128×128 crops in [0, 1]) and noisy/blurred versions."""
  rng = np.random.default_rng(0)
  x = np.stack([skdata.astronaut()[100:228, 150:278], skdata.coffee()[50:178, 200:328],
                skdata.chelsea()[60:188, 100:228]]).astype(np.float64) / 255
  y = x.copy()
  y[0] = np.clip(x[0] + 0.05 * rng.normal(size=x[0].shape), 0, 1)
  y[1] = 0.25 * (np.roll(x[1], 1, 0) + np.roll(x[1], -1, 0) + np.roll(x[1], 1, 1)
                 + np.roll(x[1], -1, 1))
  y[2] = np.round(x[2] * 15) / 15
  return x.astype(dtype), y.astype(dtype)


def _sk(fn, x, y, **kw):
  return np.array([fn(x[i], y[i], **kw) for i in range(x.shape[0])])


@pytest.mark.parametrize("kw", [{}, WANG], ids=["skimage_default", "gaussian"])
def test_ssim_equals_skimage_float64(kw):
  rng = np.random.default_rng(1)
  a = rng.uniform(-1, 1, (3, 20, 23, 3))
  b = np.clip(a + 0.3 * rng.normal(size=a.shape), -1, 1)
  px, py = _photo_pairs(np.float64)
  with jax.enable_x64(True):
    fn = jax.jit(lambda x, y, r: image_metrics.ssim(x, y, data_range=r, **kw),
                 static_argnums=2)
    got_rand = np.asarray(fn(a, b, 2.0))
    got_photo = np.asarray(fn(px, py, 1.0))
  want_rand = _sk(structural_similarity, a, b, data_range=2.0, channel_axis=-1, **kw)
  want_photo = _sk(structural_similarity, px, py, data_range=1.0, channel_axis=-1, **kw)
  assert got_rand.shape == (3,)
  np.testing.assert_allclose(got_rand, want_rand, atol=1e-12)  # measured ~5e-16
  np.testing.assert_allclose(got_photo, want_photo, atol=1e-12)


@pytest.mark.parametrize("kw", [{}, WANG], ids=["skimage_default", "gaussian"])
def test_ssim_float32_within_1e5_of_skimage(kw):
  x, y = _photo_pairs(np.float32)
  got = np.asarray(jax.jit(lambda a, b: image_metrics.ssim(a, b, data_range=1.0, **kw))(
      x, y))
  assert got.dtype == np.float32
  want = _sk(structural_similarity, x.astype(np.float64), y.astype(np.float64),
             data_range=1.0, channel_axis=-1, **kw)
  np.testing.assert_allclose(got, want, atol=1e-5)  # measured <= 5e-6


def test_ssim_grey_images_and_identity():
  faces = skdata.lfw_subset()[:4, :, :, None].astype(np.float64)  # 25×25 grey
  noisy = np.clip(faces + 0.1 * np.random.default_rng(2).normal(size=faces.shape), 0, 1)
  with jax.enable_x64(True):
    got = np.asarray(image_metrics.ssim(faces, noisy, data_range=1.0))
    same = np.asarray(image_metrics.ssim(faces, faces, data_range=1.0, **WANG))
  want = _sk(structural_similarity, faces[..., 0], noisy[..., 0], data_range=1.0)
  np.testing.assert_allclose(got, want, atol=1e-12)
  np.testing.assert_allclose(same, 1.0, atol=1e-12)


def test_psnr_equals_skimage():
  x, y = _photo_pairs(np.float64)
  with jax.enable_x64(True):
    got = np.asarray(jax.jit(lambda a, b: image_metrics.psnr(a, b, data_range=1.0))(x, y))
  want = _sk(peak_signal_noise_ratio, x, y, data_range=1.0)
  np.testing.assert_allclose(got, want, rtol=1e-12)
  x32, y32 = 2 * x.astype(np.float32) - 1, 2 * y.astype(np.float32) - 1  # [-1, 1]
  got32 = np.asarray(image_metrics.psnr(x32, y32))  # default data_range=2
  want32 = _sk(peak_signal_noise_ratio, x32, y32, data_range=2.0)
  np.testing.assert_allclose(got32, want32, rtol=1e-5)
  assert np.isinf(np.asarray(image_metrics.psnr(x32, x32))).all()


def test_bad_inputs_raise_value_errors():
  x = jnp.zeros((2, 16, 16, 3))
  with pytest.raises(ValueError, match="4-D NHWC"):
    image_metrics.psnr(jnp.zeros((16, 16, 3)), jnp.zeros((16, 16, 3)))
  with pytest.raises(ValueError, match="same shape"):
    image_metrics.ssim(x, jnp.zeros((2, 16, 16, 1)))
  with pytest.raises(ValueError, match="win_size must be odd"):
    image_metrics.ssim(x, x, win_size=6)
  with pytest.raises(ValueError, match="smaller than win_size=7"):
    image_metrics.ssim(jnp.zeros((1, 5, 16, 1)), jnp.zeros((1, 5, 16, 1)))
  with pytest.raises(ValueError, match="data_range must be > 0"):
    image_metrics.psnr(x, x, data_range=0.0)
