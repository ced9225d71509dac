"""Facts about DhariwalUNet (ADM) as NVlabs/edm builds it."""

import chex
import jax
import jax.numpy as jnp
import numpy as np

from edmjax.nn import DhariwalUNet


def normal(seed, shape):
  """Standard normal test input drawn on the host (no compilation)."""
  return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def abstract_variables(net, batch=1):
  f32 = jnp.float32
  r = net.img_resolution
  return jax.eval_shape(
      net.init, jax.random.key(0), jax.ShapeDtypeStruct((batch, r, r, net.in_channels), f32),
      jax.ShapeDtypeStruct((batch,), f32),
      jax.ShapeDtypeStruct((batch, net.label_dim), f32) if net.label_dim else None,
      jax.ShapeDtypeStruct((batch, net.augment_dim), f32) if net.augment_dim else None)


def test_imagenet64_parameter_count_equals_nvlabs():
  net = DhariwalUNet(img_resolution=64, in_channels=3, out_channels=3, label_dim=1000)
  p = abstract_variables(net)["params"]
  assert sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(p)) == 295_899_267
  # Names follow NVlabs' modules; 64 channels per attention head.
  assert {"map_layer0", "map_layer1", "map_label", "enc", "dec", "out_norm", "out_conv"} == set(p)
  assert set(p["map_label"]) == {"weight"}
  chex.assert_shape(p["dec"]["32x32_block3"]["qkv"]["weight"], (1, 1, 384, 1152))
  chex.assert_shape(p["dec"]["8x8_in0"]["affine"]["weight"], (768, 2 * 768))  # adaptive scale
  chex.assert_shape(p["out_conv"]["weight"], (3, 3, 192, 3))


def test_output_shape_with_labels_augment_and_attention():
  net = DhariwalUNet(img_resolution=16, in_channels=3, out_channels=6, label_dim=5,
                     augment_dim=9, model_channels=64, channel_mult=(1, 2), num_blocks=1,
                     attn_resolutions=(8,))
  args = (jnp.zeros((2, 16, 16, 3)), jnp.zeros((2,)), jnp.zeros((2, 5)), jnp.zeros((2, 9)))
  out, v = jax.eval_shape(net.init_with_output, jax.random.key(0), *args)
  chex.assert_shape(out, (2, 16, 16, 6))
  enc = v["params"]["enc"]
  assert "qkv" in enc["8x8_block0"] and "qkv" not in enc["16x16_block0"]


def test_fresh_network_outputs_exactly_zero_and_uses_pytorch_default_init():
  # out_conv, every conv1/proj and map_augment are zero-initialised (init_zero); the
  # other layers draw kaiming-uniform * sqrt(1/3) = U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
  net = DhariwalUNet(img_resolution=8, in_channels=3, out_channels=3, label_dim=3,
                     augment_dim=2, model_channels=8, channel_mult=(1,), num_blocks=1)
  x = normal(0, (2, 8, 8, 3))
  out, v = jax.jit(net.init_with_output)(
      jax.random.key(1, impl="unsafe_rbg"), x, jnp.array([0.5, 7.0]), jnp.eye(3)[:2],
      jnp.ones((2, 2)))
  np.testing.assert_array_equal(out, 0.0)
  p = v["params"]
  for zero in (p["out_conv"], p["map_augment"], p["dec"]["8x8_in0"]["conv1"]):
    assert not any(np.any(leaf) for leaf in jax.tree_util.tree_leaves(zero))
  w, b = p["enc"]["8x8_conv"]["weight"], p["enc"]["8x8_conv"]["bias"]
  bound = 1 / np.sqrt(3 * 3 * 3)
  assert np.abs(w).max() <= bound and np.abs(b).max() <= bound
  assert np.abs(w).max() > 0.8 * bound
