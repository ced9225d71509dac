"""Non-leaky augmentation: facts about each transformation and its labels.

Compilation dominates this file's runtime (threefry compiles slowly on CPU), so
most tests draw the per-sample uniforms with one shared jitted function and run
the rest of the pipeline (`_apply`, which `augment` calls) jitted per config;
`augment` itself is jitted in the tests about traces and keys.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from edmjax.data import augmentation as aug_lib
from edmjax.data import AugmentConfig, augment, edm_augment_config

N = 16
ALL_ON = {k: 1.0 for k in aug_lib._PROBABILITIES}
_UNIFORMS = jax.jit(aug_lib._uniforms, static_argnums=1)
_APPLY = jax.jit(aug_lib._apply, static_argnames="config")
_WARP = jax.jit(aug_lib._geometric_warp)


def _images(n=N, h=16, w=16, c=3, seed=0):
  return jnp.asarray(np.random.default_rng(seed).uniform(
      -1, 1, (n, h, w, c)).astype(np.float32))


def _run(config, x, seed=0):
  return _APPLY(_UNIFORMS(jax.random.key(seed), x.shape[0]), x, config)


def test_label_dimensions_follow_nvlabs():
  assert edm_augment_config().augment_dim == 9
  assert AugmentConfig(**ALL_ON).augment_dim == 19
  assert AugmentConfig().augment_dim == 0


def test_all_probabilities_zero_is_identity_with_zero_labels():
  x = _images()
  y, labels = _run(AugmentConfig(p=0.0, **ALL_ON), x)
  np.testing.assert_allclose(y, x, atol=2e-6)
  assert labels.shape == (N, 19)
  np.testing.assert_array_equal(labels, 0)


def test_xflip_and_yflip_labels_mark_exactly_the_flipped_images():
  x = _images()
  y, labels = _run(AugmentConfig(xflip=1e8), x)
  flipped = np.asarray(labels[:, 0] == 1)
  assert 0 < flipped.sum() < N  # the gate always opens; the flip is a coin
  np.testing.assert_array_equal(y[flipped], x[:, :, ::-1][flipped])
  np.testing.assert_array_equal(y[~flipped], x[~flipped])
  y, labels = _run(AugmentConfig(yflip=1.0), x, seed=1)
  flipped = np.asarray(labels[:, 0] == 1)
  assert 0 < flipped.sum() < N
  np.testing.assert_array_equal(y[flipped], x[:, ::-1][flipped])
  np.testing.assert_array_equal(y[~flipped], x[~flipped])


def test_rotate_int_is_rot90_by_the_labelled_quarter_turns():
  x = _images()
  y, labels = _run(AugmentConfig(rotate_int=1.0), x, seed=2)
  quarter_turns = {(0, 0): 0, (1, 0): 1, (1, 1): 2, (0, 1): 3}
  k = [quarter_turns[tuple(row)] for row in np.asarray(labels).astype(int)]
  assert set(k) == {0, 1, 2, 3}
  for i in range(N):
    np.testing.assert_array_equal(y[i], jnp.rot90(x[i], k=k[i], axes=(0, 1)))


def test_integer_translation_moves_pixels_exactly():
  x = _images()
  config = AugmentConfig(translate_int=1.0, translate_int_max=0.25)
  y, labels = _run(config, x, seed=3)
  tx = np.rint(np.asarray(labels[:, 0]) * 16 * 0.25).astype(int)
  ty = np.rint(np.asarray(labels[:, 1]) * 16 * 0.25).astype(int)
  assert np.any(tx != 0) and np.any(ty != 0)
  xn, yn = np.asarray(x), np.asarray(y)
  for i in range(N):
    # Output (r, c) reads input (r + ty, c - tx) wherever that is inside.
    rows = np.arange(max(0, -ty[i]), min(16, 16 - ty[i]))
    cols = np.arange(max(0, tx[i]), min(16, 16 + tx[i]))
    np.testing.assert_array_equal(
        yn[i][np.ix_(rows, cols)], xn[i][np.ix_(rows + ty[i], cols - tx[i])])


def test_geometric_stage_with_zero_strength_is_identity():
  # The sym6 up/down-sampling pair is orthonormal: no warp, no change.
  config = AugmentConfig(scale=1.0, rotate_frac=1.0, aniso=1.0,
                         translate_frac=1.0, scale_std=0.0, rotate_frac_max=0.0,
                         aniso_std=0.0, translate_frac_std=0.0)
  x = _images()
  y, labels = _run(config, x)
  np.testing.assert_allclose(y, x, atol=2e-6)
  assert labels.shape == (N, 7) and np.any(np.asarray(labels) != 0)


def _warp_inputs():
  yy, xx = np.mgrid[0:32, 0:32] / 32
  smooth = np.sin(2 * np.pi * (1.3 * xx + 0.4 * yy) + 0.3) * np.cos(
      2 * np.pi * 0.7 * yy)
  noise = np.random.default_rng(5).uniform(-1, 1, (32, 32))
  return jnp.asarray(np.stack([smooth, noise])[..., None].astype(np.float32))


def test_fractional_translation_by_whole_pixels_is_exact():
  x = _warp_inputs()
  g_inv = jnp.broadcast_to(aug_lib._translate2d(-2.0, -3.0), (2, 3, 3))
  y = _WARP(x, g_inv)  # content moves 2 right and 3 down
  np.testing.assert_allclose(y[:, 3:, 2:], x[:, :-3, :-2], atol=1e-6)


def test_quarter_rotation_through_the_resampler_matches_rot90():
  # Close but not exact: the sym6 filter is not quite symmetric (as in NVlabs).
  x = _warp_inputs()
  g_inv = jnp.broadcast_to(aug_lib._rotate2d(jnp.pi / 2), (2, 3, 3))
  y = _WARP(x, g_inv)
  np.testing.assert_allclose(y[0], jnp.rot90(x[0], k=1, axes=(0, 1)),
                             atol=0.05)


def test_colour_transforms_with_zero_strength_are_identity():
  config = AugmentConfig(brightness=1.0, contrast=1.0, hue=1.0, saturation=1.0,
                         brightness_std=0.0, contrast_std=0.0, hue_max=0.0,
                         saturation_std=0.0)
  for c in (1, 3):
    x = _images(c=c)
    y, labels = _run(config, x)
    np.testing.assert_allclose(y, x, atol=1e-5)
    assert labels.shape == (N, 5)


def test_brightness_offset_and_lumaflip_follow_their_labels():
  x = _images()
  y, labels = _run(AugmentConfig(brightness=1.0, lumaflip=1.0), x, seed=4)
  offset = 0.2 * labels[:, 0][:, None, None, None]  # brightness_std = 0.2
  flip = np.asarray(labels[:, 1] == 1)
  assert 0 < flip.sum() < N
  np.testing.assert_allclose(y[~flip], (x + offset)[~flip], atol=1e-5)
  # Luma flip reflects the colour through the grey plane: luma negates.
  luma = lambda im: jnp.mean(im, axis=-1)  # noqa: E731
  np.testing.assert_allclose(luma(y[flip]), -luma((x + offset)[flip]),
                             atol=1e-5)


def test_jitted_full_pipeline_traces_once_shapes_dtype_finite():
  config = AugmentConfig(p=0.7, **ALL_ON)

  @jax.jit
  @chex.assert_max_traces(n=1)
  def run(key, x):
    return augment(key, x, config)

  x = _images(n=4)
  outs = [run(jax.random.key(s), x) for s in range(3)]
  for y, labels in outs:
    assert y.shape == x.shape and y.dtype == x.dtype
    assert labels.shape == (4, 19) and labels.dtype == jnp.float32
    assert bool(jnp.all(jnp.isfinite(y)))
  assert not np.allclose(outs[0][0], outs[1][0])


def test_per_sample_keys_make_each_sample_depend_on_its_own_key_only():
  config = edm_augment_config(p=0.5)
  run = jax.jit(augment, static_argnames="config")
  x = _images(n=6)
  keys = jax.random.split(jax.random.key(0), 6)
  perm = np.array([3, 0, 5, 1, 4, 2])
  y, labels = run(keys, x, config)
  y_perm, labels_perm = run(keys[perm], x[perm], config)
  np.testing.assert_allclose(y_perm, y[perm], atol=1e-6)
  np.testing.assert_array_equal(labels_perm, labels[perm])


def test_bad_augment_input():
  with pytest.raises(ValueError, match="p=-0.1"):
    AugmentConfig(p=-0.1)
  with pytest.raises(ValueError, match="square"):
    augment(jax.random.key(0), _images(h=8, w=6), AugmentConfig(rotate_int=1))
  with pytest.raises(ValueError, match="C=2"):
    augment(jax.random.key(0), _images(c=2), AugmentConfig(hue=1))
  with pytest.raises(ValueError, match="NHWC"):
    augment(jax.random.key(0), jnp.zeros((8, 8, 3)), AugmentConfig())


def test_hue_and_saturation_keep_luma():
  # Both act only orthogonally to the grey axis (1, 1, 1) / sqrt(3).
  x = _images()
  y, labels = _run(AugmentConfig(hue=1.0, saturation=1.0), x, seed=6)
  assert np.all(np.asarray(labels[:, 1]) != 0)
  np.testing.assert_allclose(jnp.mean(y, axis=-1), jnp.mean(x, axis=-1),
                             atol=1e-5)
  assert not np.allclose(y, x, atol=1e-2)


def _nvlabs_warp_numpy(images, g_inv):
  """A NumPy transcription of NVlabs/edm's geometric execution, NCHW, float64.

  Unlike edmjax it pads by the batch-dependent margin NVlabs computes from the
  transformed corners, and uses affine_grid / grid_sample coordinates.
  """
  taps, fpad = aug_lib.SYM6, len(aug_lib.SYM6) // 4
  n, _, h, w = images.shape

  def correlate(x, kernel, pad, stride, axis):
    x = np.moveaxis(x, axis, -1)
    x = np.pad(x, [(0, 0)] * (x.ndim - 1) + [(pad, pad)])
    size = (x.shape[-1] - len(kernel)) // stride + 1
    y = np.stack([x[..., k * stride:k * stride + len(kernel)] @ kernel
                  for k in range(size)], -1)
    return np.moveaxis(y, -1, axis)

  def upsample(x, axis):
    z = np.zeros(x.shape[:axis] + (2 * x.shape[axis] - 1,) + x.shape[axis + 1:])
    np.moveaxis(z, axis, 0)[::2] = np.moveaxis(x, axis, 0)
    return correlate(z, taps[::-1], (len(taps) + 1) // 2, 1, axis)

  def translate(tx, ty):
    return np.array([[1, 0, tx], [0, 1, ty], [0, 0, 1.0]])

  def scale(sx, sy):
    return np.diag([sx, sy, 1.0])
  cx, cy = (w - 1) / 2, (h - 1) / 2
  corners = g_inv @ np.array([[-cx, cx, cx, -cx], [-cy, -cy, cy, cy], [1] * 4])
  xy = corners[:, :2, :].transpose(1, 0, 2).reshape(2, -1)
  margin = np.concatenate([-xy, xy]).max(axis=1)
  margin = margin + np.array([fpad * 2 - cx, fpad * 2 - cy] * 2)
  margin = np.minimum(np.maximum(margin, 0), [w - 1, h - 1] * 2)
  mx0, my0, mx1, my1 = np.ceil(margin).astype(int)
  x = np.pad(images, [(0, 0), (0, 0), (my0, my1), (mx0, mx1)], mode="reflect")
  g = translate((mx0 - mx1) / 2, (my0 - my1) / 2) @ g_inv
  x = upsample(upsample(x, 3), 2)
  g = translate(-0.5, -0.5) @ scale(2, 2) @ g @ scale(0.5, 0.5) @ translate(
      0.5, 0.5)
  ho, wo = (h + 2 * fpad) * 2, (w + 2 * fpad) * 2
  hi, wi = x.shape[2], x.shape[3]
  g = scale(2 / wi, 2 / hi) @ g @ scale(wo / 2, ho / 2)
  gx, gy = np.meshgrid((2 * np.arange(wo) + 1) / wo - 1,
                       (2 * np.arange(ho) + 1) / ho - 1)
  grid = np.einsum("nij,hwj->nhwi", g[:, :2],
                   np.stack([gx, gy, np.ones_like(gx)], -1))
  u, v = ((grid[..., 0] + 1) * wi - 1) / 2, ((grid[..., 1] + 1) * hi - 1) / 2
  out = np.zeros((n, x.shape[1], ho, wo))
  for b in range(n):
    u0, v0 = np.floor(u[b]).astype(int), np.floor(v[b]).astype(int)
    for dv, wv in ((0, 1 - (v[b] - v0)), (1, v[b] - v0)):
      for du, wu in ((0, 1 - (u[b] - u0)), (1, u[b] - u0)):
        vi, ui = v0 + dv, u0 + du
        inside = (vi >= 0) & (vi < hi) & (ui >= 0) & (ui < wi)
        out[b] += np.where(inside, wv * wu, 0) * x[b][
            :, np.clip(vi, 0, hi - 1), np.clip(ui, 0, wi - 1)]
  out = correlate(out, taps, (len(taps) - 1) // 2, 2, 3)[..., fpad:-fpad]
  return correlate(out, taps, (len(taps) - 1) // 2, 2, 2)[:, :, fpad:-fpad]


def test_geometric_warp_matches_numpy_transcription_of_nvlabs():
  # Strong random transforms of non-square images: the static (size - 1)
  # reflect padding gives the values of NVlabs' batch-dependent margin.
  config = AugmentConfig(scale=1, rotate_frac=1, aniso=1, translate_frac=1,
                         scale_std=0.5, aniso_std=0.4)
  u = _UNIFORMS(jax.random.key(1), N)[:6]  # reuse the compiled (N, .) draw
  params, _ = jax.vmap(lambda row: aug_lib._draw(row, config, 12, 10))(u)
  g_inv = np.asarray(params["g_inv"], np.float64)
  x = np.random.default_rng(0).uniform(-1, 1, (6, 12, 10, 2))
  want = _nvlabs_warp_numpy(x.transpose(0, 3, 1, 2), g_inv).transpose(
      0, 2, 3, 1)
  got = _WARP(jnp.asarray(x, jnp.float32), jnp.asarray(g_inv, jnp.float32))
  np.testing.assert_allclose(got, want, atol=2e-5)
