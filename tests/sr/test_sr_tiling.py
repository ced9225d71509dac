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


# ----------------------------------------------------------------------------- bounded memory

W_WIDE = jax.random.normal(jax.random.key(5), (3, 64)) / 8


def _wide(t):
  """A per-pixel net with a 64-channel hidden layer: its activations dominate memory."""
  h = jnp.tanh(jnp.einsum("bhwc,cd->bhwd", t, W_WIDE))
  return jnp.einsum("bhwd,dc->bhwc", h, W_WIDE.T)


def _conv(t):
  k = jax.random.normal(jax.random.key(1), (3, 3, 3, 4))
  return jax.lax.conv_general_dilated(t, k, (1, 1), "SAME",
                                      dimension_numbers=("NHWC", "HWIO", "NHWC"))


def test_plan_counts_tiles_batches_and_calls():
  plan = tiling.plan_tiles(40, 56, 16, 8)
  assert plan.starts_h == (0, 8, 16, 24) and len(plan.starts_w) == 6
  assert (plan.tiles, plan.positions_per_call, plan.calls) == (24, 24, 1)
  plan = tiling.plan_tiles(40, 56, 16, 8, tile_batch=10)
  assert (plan.positions_per_call, plan.calls) == (10, 3)  # 24 = 10 + 10 + 4 (+6 padding)
  plan = tiling.plan_tiles(40, 56, 16, 8, batch=2, tile_batch=10)
  assert (plan.positions_per_call, plan.calls) == (5, 5)  # 10 tiles a call = 2 images x 5
  assert tiling.plan_tiles(40, 56, 16, 8, tile_batch=1000).calls == 1


def test_batched_tiles_give_the_same_image():
  x = _image((2, 40, 56, 3))
  whole = tiling.tiled_apply(_conv, x, tile=16, overlap=8, margin=1)
  for tile_batch in (1, 7):  # 7: the last call is padded; batch 2 gives 3 positions a call
    batched = tiling.tiled_apply(_conv, x, tile=16, overlap=8, margin=1,
                                 tile_batch=tile_batch)
    np.testing.assert_allclose(batched, whole, rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(whole, _conv(x), rtol=1e-5, atol=1e-5)


def test_peak_tile_memory_is_one_batch_not_the_whole_image():
  def temp_bytes(shape, tile_batch):
    f = jax.jit(lambda x: tiling.tiled_apply(_wide, x, tile=16, overlap=8,
                                             tile_batch=tile_batch))
    return f.lower(jax.ShapeDtypeStruct(shape, jnp.float32)).compile().memory_analysis(
        ).temp_size_in_bytes

  per_tile_hidden = 16 * 16 * 64 * 4  # one tile's hidden activations, float32
  small, big = (1, 64, 64, 3), (1, 256, 256, 3)  # 49 and 961 tiles
  # All tiles at once: memory grows with the number of tiles (the 152 GB).
  assert temp_bytes(big, None) > 900 * per_tile_hidden
  # Batches of 8: about 8 tiles' activations plus image-sized buffers, at any size.
  image_bytes = 256 * 256 * 3 * 4
  for shape in (small, big):
    assert temp_bytes(shape, 8) < 8 * per_tile_hidden * 2 + 4 * image_bytes
  assert temp_bytes(big, 8) < temp_bytes(big, None) / 20


def test_progress_is_reported_once_per_call():
  calls = []
  x = _image((1, 40, 56, 3))
  y = jax.jit(lambda x: tiling.tiled_apply(_wide, x, tile=16, overlap=8, tile_batch=10,
                                           progress=lambda i: calls.append(int(i))))(x)
  jax.block_until_ready(y)
  jax.effects_barrier()
  assert sorted(calls) == [0, 1, 2]


def test_budget_picks_the_batch_and_measurement_sees_the_activations():
  per, fixed = tiling.measure_tile_bytes(_wide, jax.ShapeDtypeStruct((1, 16, 16, 3),
                                                                     jnp.float32))
  assert per >= 16 * 16 * 64 * 4  # at least the hidden layer of one tile
  assert tiling.tile_batch_for_budget(per, 10 * per + fixed, fixed_bytes=fixed) == 10
  assert tiling.tile_batch_for_budget(per, per / 2) == 1  # never 0
  assert tiling.tile_batch_for_budget(per, 1e12, tiles=37) == 37


@pytest.mark.parametrize("tile, overlap, match", [
    (16, 16, "overlap=16 must be smaller than tile=16"),
    (16, 20, "overlap=20 must be smaller than tile=16"),
    (16, -1, "overlap must be a Python int >= 0|overlap=-1 is too small"),
    (0, 0, "tile=0 is too small"),
    (-8, 0, "tile=-8 is too small"),
])
def test_tile_starts_rejects_bad_geometry_instead_of_dividing_by_zero(tile, overlap, match):
  with pytest.raises(ValueError, match=match):
    tiling.tile_starts(100, tile, overlap)
  with pytest.raises(ValueError, match=match):
    tiling.plan_tiles(100, 100, tile, overlap)
