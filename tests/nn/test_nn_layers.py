"""Facts about the building blocks of the EDM networks (edmjax.nn.layers)."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from edmjax.nn import layers
from edmjax.nn import (
    BUFFERS, Conv2d, FourierEmbedding, GroupNorm, Init, Linear, PositionalEmbedding,
    UNetBlock, weight_init)


@pytest.mark.parametrize("mode, bound, std", [
    ("xavier_uniform", np.sqrt(6 / (300 + 200)), np.sqrt(2 / (300 + 200))),
    ("kaiming_uniform", np.sqrt(3 / 300), np.sqrt(1 / 300)),
    ("xavier_normal", None, np.sqrt(2 / (300 + 200))),
    ("kaiming_normal", None, np.sqrt(1 / 300)),
])
def test_weight_init_matches_nvlabs_distributions(mode, bound, std):
  key0, key1 = jax.random.key(0, impl="unsafe_rbg"), jax.random.key(1, impl="unsafe_rbg")
  w = np.asarray(weight_init(mode, 300, 200, scale=0.5)(key0, (300, 200)))
  np.testing.assert_allclose(w.std(), 0.5 * std, rtol=0.02)
  if bound is not None:  # uniform on [-a, a]: the extremes are nearly reached, never passed
    assert 0.99 * 0.5 * bound < np.abs(w).max() <= 0.5 * bound
  assert not np.any(weight_init(mode, 3, 4, scale=0.0)(key1, (3, 4)))


def normal(seed, shape):
  """Standard normal test input drawn on the host (no compilation)."""
  return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def test_linear_and_conv_parameter_layout():
  v = jax.eval_shape(Linear(5).init, jax.random.key(0), jnp.ones((2, 3)))
  chex.assert_shape([v["params"]["weight"], v["params"]["bias"]], [(3, 5), (5,)])  # (in, out)
  v = jax.eval_shape(Conv2d(7, 3).init, jax.random.key(0), jnp.ones((1, 8, 8, 2)))
  chex.assert_shape([v["params"]["weight"], v["params"]["bias"]], [(3, 3, 2, 7), (7,)])  # HWIO
  v = jax.eval_shape(Conv2d(2, 0, down=True).init, jax.random.key(0), jnp.ones((1, 8, 8, 2)))
  assert not v  # kernel=0: a pure resampler, no variables (the FIR filter is a constant)


def test_box_filter_resampling_is_average_pool_and_nearest_upsampling():
  x = normal(0, (2, 8, 6, 3))
  down = Conv2d(3, 0, down=True, resample_filter=(1, 1)).apply({}, x)
  pooled = x.reshape(2, 4, 2, 3, 2, 3).mean(axis=(2, 4))
  np.testing.assert_allclose(down, pooled, atol=1e-6)
  up = Conv2d(3, 0, up=True, resample_filter=(1, 1)).apply({}, x)
  np.testing.assert_allclose(up, jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2), atol=1e-6)


def test_binomial_filter_preserves_constants_away_from_the_border():
  x = jnp.full((1, 8, 8, 2), 3.0)
  down = Conv2d(2, 0, down=True, resample_filter=(1, 3, 3, 1)).apply({}, x)
  up = Conv2d(2, 0, up=True, resample_filter=(1, 3, 3, 1)).apply({}, x)
  chex.assert_shape([down, up], [(1, 4, 4, 2), (1, 16, 16, 2)])
  np.testing.assert_allclose(down[:, 1:-1, 1:-1], 3.0, rtol=1e-6)
  np.testing.assert_allclose(up[:, 2:-2, 2:-2], 3.0, rtol=1e-6)


def test_fused_downsampling_convolves_before_resampling():
  # Fused: conv(x, W, pad=1+1) then FIR stride 2 without padding. With an identity 3x3
  # kernel this is exactly plain FIR downsampling; with a general kernel it is not the
  # unfused order (FIR first, conv at half resolution).
  x = normal(0, (1, 8, 8, 1))
  conv = Conv2d(1, 3, down=True, fused_resample=True, resample_filter=(1, 3, 3, 1))
  ident = jnp.zeros((3, 3, 1, 1)).at[1, 1].set(1.0)
  fused = conv.apply({"params": {"weight": ident, "bias": jnp.zeros(1)}}, x)
  plain = Conv2d(1, 0, down=True, resample_filter=(1, 3, 3, 1)).apply({}, x)
  chex.assert_shape(fused, (1, 4, 4, 1))
  np.testing.assert_allclose(fused, plain, atol=1e-6)
  w = normal(1, (3, 3, 1, 1))
  fused = conv.apply({"params": {"weight": w, "bias": jnp.zeros(1)}}, x)
  unfused = Conv2d(1, 3, down=True, resample_filter=(1, 3, 3, 1)).apply(
      {"params": {"weight": w, "bias": jnp.zeros(1)}}, x)
  assert np.abs(fused - unfused).max() > 1e-3


def test_conv_rejects_unsupported_resampling():
  x = jnp.ones((1, 4, 4, 2))
  with pytest.raises(ValueError, match="up and down"):
    Conv2d(2, 3, up=True, down=True).init(jax.random.key(0), x)
  with pytest.raises(ValueError, match="fused_resample"):
    Conv2d(2, 3, up=True, fused_resample=True).init(jax.random.key(0), x)


def test_group_norm_normalises_each_group():
  x = 5 + 3 * normal(0, (2, 4, 4, 8))  # 8 channels -> 2 groups
  y = jax.jit(GroupNorm().apply)({"params": {"weight": jnp.ones(8), "bias": jnp.zeros(8)}}, x)
  g = np.asarray(y).reshape(2, 16, 2, 4)
  np.testing.assert_allclose(g.mean(axis=(1, 3)), 0.0, atol=1e-5)
  np.testing.assert_allclose(g.var(axis=(1, 3)), 1.0, rtol=1e-3)


def test_group_norm_equals_a_float64_reference_with_affine_and_large_offset():
  # 32 channels -> min(32, 32 // 4) = 8 groups of 4; a mean of 300 against a std of 2
  # would cost digits in a one-pass E[x^2] - E[x]^2 variance.
  rng = np.random.default_rng(0)
  x = 300 + 2 * rng.standard_normal((3, 5, 7, 32))
  w, b = rng.standard_normal(32), rng.standard_normal(32)
  y = jax.jit(GroupNorm().apply)({"params": {"weight": jnp.asarray(w, jnp.float32),
                                             "bias": jnp.asarray(b, jnp.float32)}},
                                 jnp.asarray(x, jnp.float32))
  xg = x.reshape(3, 5, 7, 8, 4)
  mean = xg.mean(axis=(1, 2, 4), keepdims=True)
  var = xg.var(axis=(1, 2, 4), keepdims=True)
  want = ((xg - mean) / np.sqrt(var + 1e-5)).reshape(x.shape) * w + b
  np.testing.assert_allclose(np.asarray(y), want, atol=2e-4)


def test_adm_style_block_is_the_identity_at_init():
  # Zero-initialised conv1 and proj with skip_scale=1 and no channel change: x -> x.
  x = normal(0, (2, 4, 4, 64))
  emb = normal(1, (2, 16))
  block = UNetBlock(64, attention=True, init_conv=Init("kaiming_uniform"))
  y, v = jax.jit(block.init_with_output)(jax.random.key(2, impl="unsafe_rbg"), x, emb)
  assert "qkv" in v["params"] and "skip" not in v["params"]
  np.testing.assert_array_equal(y, x)


def test_attention_is_absent_below_channels_per_head():
  v = jax.eval_shape(UNetBlock(32, attention=True).init, jax.random.key(0),
                     jnp.ones((1, 4, 4, 32)), jnp.ones((1, 8)))
  assert "qkv" not in v["params"]  # 32 // 64 = 0 heads, as in NVlabs


def test_positional_embedding_frequencies():
  x = jnp.array([0.0, 2.0])
  e = PositionalEmbedding(8, max_positions=100, endpoint=True).apply({}, x)
  np.testing.assert_allclose(e[0], [1, 1, 1, 1, 0, 0, 0, 0])
  # endpoint=True: frequencies run from 1 down to exactly 1 / max_positions.
  np.testing.assert_allclose(e[1, 3], np.cos(2.0 / 100), rtol=1e-6)
  np.testing.assert_allclose(e[1, 4], np.sin(2.0), rtol=1e-6)


def test_fourier_frequencies_are_frozen_buffers():
  emb = FourierEmbedding(256)
  v = emb.init(jax.random.key(0), jnp.zeros((1,)))
  assert set(v) == {BUFFERS}  # not a parameter: optimizers over v['params'] never see it
  freqs = v[BUFFERS]["freqs"]
  chex.assert_shape(freqs, (128,))
  assert 12 < float(jnp.std(freqs)) < 20  # scale 16
  with pytest.raises(Exception):  # the frozen frequencies must be passed back to apply
    emb.apply({}, jnp.zeros((1,)))
  out = emb.apply(v, jnp.array([0.25]))
  np.testing.assert_allclose(out[0, :128], np.cos(2 * np.pi * 0.25 * np.asarray(freqs)),
                             atol=1e-4)


def _grouped_conv_reference(x, kernel, stride, padding, lhs_dilation=1):
  """The definition of FIR resampling: one kernel per channel (a grouped convolution)."""
  c = x.shape[-1]
  w = jnp.tile(jnp.asarray(kernel, x.dtype)[:, :, None, None], (1, 1, 1, c))
  return jax.lax.conv_general_dilated(
      x, w, (stride, stride), ((padding, padding),) * 2, lhs_dilation=(lhs_dilation,) * 2,
      dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=c)


@pytest.mark.parametrize("resample_filter", [(1, 1), (1, 3, 3, 1), (1, 2, 1)])
@pytest.mark.parametrize("padding", [0, 1, 2])
def test_fir_resampling_equals_grouped_convolution(resample_filter, padding):
  # The separable strided-slice implementation computes exactly the depthwise
  # convolution (down) and transposed convolution with 4 f (up) of NVlabs' Conv2d.
  f = layers.resample_kernel(resample_filter)
  k = f.shape[0]
  x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 8, 6, 3)), jnp.float32)
  down = layers.fir_downsample(x, f, padding)
  up = layers.fir_upsample(x, f, padding)
  chex.assert_trees_all_close(down, _grouped_conv_reference(x, f, 2, padding), atol=1e-6)
  chex.assert_trees_all_close(
      up, _grouped_conv_reference(x, 4 * f[::-1, ::-1], 1, k - 1 - padding, 2), atol=1e-6)
