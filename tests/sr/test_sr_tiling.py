"""Tiling: pointwise and local models are reproduced exactly; no seams; clear errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from edmjax.sr import tiling


def _image(shape=(2, 37, 50, 3), seed=0):
  return jax.random.normal(jax.random.key(seed), shape)


def test_pointwise_affine_model_is_reproduced_exactly():
  x = _image()
  f = lambda t: 1.7 * t - 0.3  # noqa: E731
  y = tiling.tiled_apply(f, x, tile=16, overlap=6)
  np.testing.assert_allclose(y, f(x), rtol=1e-6, atol=1e-6)


def test_local_model_is_reproduced_away_from_tile_borders():
  """A 3×3 convolution (radius 1, zero padding) with margin >= 1: equal everywhere."""
  x = _image()
  k = jax.random.normal(jax.random.key(1), (3, 3, 3, 4))

  def conv(t):
    return jax.lax.conv_general_dilated(t, k, (1, 1), "SAME",
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"))

  y = tiling.tiled_apply(conv, x, tile=16, overlap=8, margin=1)
  np.testing.assert_allclose(y, conv(x), rtol=1e-5, atol=1e-5)
  # Without the margin the tiles' own zero padding leaks in near tile borders.
  y0 = tiling.tiled_apply(conv, x, tile=16, overlap=8, margin=0)
  assert float(jnp.max(jnp.abs(y0 - conv(x)))) > 1e-3


def test_no_seam_on_a_constant_image_and_weights_cover_the_image():
  x = jnp.full((1, 40, 40, 1), 0.25)
  y = tiling.tiled_apply(lambda t: t * 2.0, x, tile=16, overlap=6)
  np.testing.assert_allclose(y, 0.5, rtol=0, atol=1e-6)
  # A model that outputs a different constant per tile position blends smoothly:
  # neighbouring pixels never jump by more than the window's steepest step allows.
  sh, sw, weights = tiling.tile_weights(40, 40, 16, 6)
  assert weights.min() >= 0 and weights.max() == 1
  idx = jnp.arange(len(sh) * len(sw), dtype=jnp.float32)
  y = tiling.tiled_apply(lambda t: jnp.broadcast_to(idx[:, None, None, None], t.shape),
                         jnp.zeros((1, 40, 40, 1)), tile=16, overlap=6)
  jump = max(float(jnp.max(jnp.abs(jnp.diff(y, axis=a)))) for a in (1, 2))
  assert jump < 0.5 * float(idx.max())


def test_tiled_denoiser_passes_conditions_and_sigma():
  x, u = _image((2, 20, 20, 3)), _image((2, 20, 20, 3), seed=1)
  den = tiling.make_tiled_denoiser(lambda xt, s, ut: xt * s[:, None, None, None] + ut, u,
                                   tile=8, overlap=4)
  sigma = jnp.array([0.5, 2.0])
  np.testing.assert_allclose(den(x, sigma), x * sigma[:, None, None, None] + u, atol=1e-5)


def test_errors_name_the_values():
  with pytest.raises(ValueError, match="height is 12 pixels, smaller than the tile \\(16\\)"):
    tiling.tiled_apply(lambda t: t, jnp.zeros((1, 12, 40, 1)), tile=16, overlap=4)
  with pytest.raises(ValueError, match="overlap=16 must be smaller than tile=16"):
    tiling.tiled_apply(lambda t: t, jnp.zeros((1, 40, 40, 1)), tile=16, overlap=16)
  with pytest.raises(ValueError, match="overlap=4 must exceed 2·margin=4"):
    tiling.tiled_apply(lambda t: t, jnp.zeros((1, 40, 40, 1)), tile=16, overlap=4, margin=2)
