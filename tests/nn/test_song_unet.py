"""Facts about SongUNet (DDPM++ / NCSN++) as NVlabs/edm builds it.

Full-size models are only traced abstractly (`jax.eval_shape`); numerical checks use a
tiny network whose parameters are filled on the host, so each test compiles at most
one small forward pass.
"""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from edmjax.nn import BUFFERS, SongUNet

DDPMPP_CIFAR10 = dict(img_resolution=32, in_channels=3, out_channels=3, augment_dim=9,
                      model_channels=128, channel_mult=(2, 2, 2), embedding_type="positional",
                      encoder_type="standard", decoder_type="standard",
                      channel_mult_noise=1, resample_filter=(1, 1))
NCSNPP_CIFAR10 = dict(DDPMPP_CIFAR10, embedding_type="fourier", encoder_type="residual",
                      channel_mult_noise=2, resample_filter=(1, 3, 3, 1))
TINY = dict(img_resolution=8, in_channels=3, out_channels=3, model_channels=16,
            channel_mult=(1, 2), num_blocks=1, attn_resolutions=(4,))


def abstract_variables(net, batch=2, resolution=None):
  """Variable shapes of `net.init` without materialising anything."""
  r = resolution or net.img_resolution
  f32 = jnp.float32
  return jax.eval_shape(
      net.init, jax.random.key(0), jax.ShapeDtypeStruct((batch, r, r, net.in_channels), f32),
      jax.ShapeDtypeStruct((batch,), f32),
      jax.ShapeDtypeStruct((batch, net.label_dim), f32) if net.label_dim else None,
      jax.ShapeDtypeStruct((batch, net.augment_dim), f32) if net.augment_dim else None)


def num_params(variables):
  return sum(int(np.prod(p.shape)) for p in jax.tree_util.tree_leaves(variables["params"]))


def host_variables(shapes, seed=0):
  """O(1)-scale variables on the host: weights ~ N(0, 1/fan_in), vectors ~ N(0, 0.1^2)."""
  rng = np.random.default_rng(seed)

  def fill(s):
    if len(s.shape) >= 2:
      return jnp.asarray(rng.standard_normal(s.shape) / np.sqrt(np.prod(s.shape[:-1])), s.dtype)
    return jnp.asarray(0.1 * rng.standard_normal(s.shape), s.dtype)

  return jax.tree_util.tree_map(fill, shapes)


@pytest.mark.parametrize("config, label_dim, expected", [
    (DDPMPP_CIFAR10, 0, 55_733_891),
    (DDPMPP_CIFAR10, 10, 55_735_299),
    (NCSNPP_CIFAR10, 0, 56_397_827),
])
def test_parameter_counts_equal_nvlabs(config, label_dim, expected):
  variables = abstract_variables(SongUNet(**config, label_dim=label_dim), batch=1)
  assert num_params(variables) == expected


def test_ncsnpp_fourier_frequencies_are_a_buffer_not_a_parameter():
  variables = abstract_variables(SongUNet(**NCSNPP_CIFAR10), batch=1)
  chex.assert_shape(variables[BUFFERS]["map_noise"]["freqs"], (128,))  # 256 noise channels / 2
  assert "map_noise" not in variables["params"]


def test_parameter_names_follow_nvlabs_modules():
  p = abstract_variables(SongUNet(**DDPMPP_CIFAR10, label_dim=10), batch=1)["params"]
  assert {"map_label", "map_augment", "map_layer0", "map_layer1", "enc", "dec"} == set(p)
  assert set(p["enc"]) == {"32x32_conv", "32x32_block0", "32x32_block1", "32x32_block2",
                            "32x32_block3", "16x16_down", "16x16_block0", "16x16_block1",
                            "16x16_block2", "16x16_block3", "8x8_down", "8x8_block0",
                            "8x8_block1", "8x8_block2", "8x8_block3"}
  assert set(p["dec"]["16x16_block4"]) == {"norm0", "conv0", "affine", "norm1", "conv1",
                                           "skip", "norm2", "qkv", "proj"}
  chex.assert_shape(p["enc"]["32x32_conv"]["weight"], (3, 3, 3, 128))        # HWIO
  chex.assert_shape(p["dec"]["16x16_block4"]["qkv"]["weight"], (1, 1, 256, 768))
  chex.assert_shape(p["map_label"]["weight"], (10, 128))                    # (in, out)
  assert "map_augment" in p and "bias" not in p["map_augment"]
  ncsn = abstract_variables(SongUNet(**NCSNPP_CIFAR10), batch=1)["params"]
  chex.assert_shape(ncsn["enc"]["16x16_aux_residual"]["weight"], (3, 3, 3, 256))
  chex.assert_shape(ncsn["enc"]["8x8_aux_residual"]["weight"], (3, 3, 256, 256))


@pytest.mark.parametrize("overrides", [
    dict(),
    dict(embedding_type="fourier", channel_mult_noise=2, encoder_type="residual",
         resample_filter=(1, 3, 3, 1)),
    dict(encoder_type="skip", decoder_type="skip"),
    dict(encoder_type="skip", decoder_type="skip", resample_filter=(1, 3, 3, 1),
         label_dim=10, augment_dim=9, out_channels=6),
    dict(channel_mult=(1, 2, 2), attn_resolutions=(8, 2), label_dim=4),
])
def test_output_is_nhwc_with_out_channels(overrides):
  net = SongUNet(**{**TINY, **overrides})
  b, r = 3, net.img_resolution
  args = (jnp.zeros((b, r, r, 3)), jnp.zeros((b,)),
          jnp.zeros((b, net.label_dim)) if net.label_dim else None,
          jnp.zeros((b, net.augment_dim)) if net.augment_dim else None)
  out, _ = jax.eval_shape(net.init_with_output, jax.random.key(0), *args)
  chex.assert_shape(out, (b, r, r, net.out_channels))
  assert out.dtype == jnp.float32
  # Fully convolutional: a 2x larger input with the same variables gives a 2x larger output.
  big = jax.eval_shape(net.init_with_output, jax.random.key(0),
                       jnp.zeros((b, 2 * r, 2 * r, 3)), *args[1:])[0]
  chex.assert_shape(big, (b, 2 * r, 2 * r, net.out_channels))


def test_input_errors_say_what_is_expected():
  net = SongUNet(**TINY)
  x, n = jnp.zeros((2, 8, 8, 3)), jnp.zeros((2,))
  with pytest.raises(ValueError, match="label_dim=0"):
    jax.eval_shape(net.init, jax.random.key(0), x, n, jnp.zeros((2, 10)))
  with pytest.raises(ValueError, match="NHWC"):
    jax.eval_shape(net.init, jax.random.key(0), jnp.zeros((2, 3, 8, 8)), n)
  with pytest.raises(ValueError, match="multiples"):
    jax.eval_shape(net.init, jax.random.key(0), jnp.zeros((2, 7, 7, 3)), n)
  with pytest.raises(ValueError, match="encoder_type"):
    jax.eval_shape(SongUNet(**TINY, encoder_type="resnet").init, jax.random.key(0), x, n)


@pytest.fixture(scope="module")
def conditional():
  """A tiny class- and augment-conditional NCSN++ with dropout 0.5 and label dropout 1."""
  net = SongUNet(**TINY, label_dim=4, augment_dim=2, dropout=0.5, label_dropout=1.0,
                 embedding_type="fourier", encoder_type="residual", decoder_type="skip",
                 resample_filter=(1, 3, 3, 1), channel_mult_noise=2)
  variables = host_variables(abstract_variables(net))
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.standard_normal((2, 8, 8, 3)), jnp.float32)
  n = jnp.asarray([0.3, -1.2], jnp.float32)
  y = jax.nn.one_hot(jnp.array([1, 3]), 4)
  a = jnp.asarray(rng.standard_normal((2, 2)), jnp.float32)

  @functools.partial(jax.jit, static_argnames="train")
  @chex.assert_max_traces(n=2)  # one trace per value of `train`, none per key or label
  def forward(variables, x, n, y, a, key, train):
    return net.apply(variables, x, n, y, a, train=train, rngs={"dropout": key})

  return net, variables, (x, n, y, a), forward


def key(seed):
  """An 'unsafe_rbg' key: the nets take any key type; it compiles much faster on CPU."""
  return jax.random.key(seed, impl="unsafe_rbg")


def test_dropout_is_off_at_eval_and_keyed_in_training(conditional):
  _, variables, (x, n, y, a), forward = conditional
  k1, k2 = key(1), key(2)
  eval1 = forward(variables, x, n, y, a, k1, False)
  eval2 = forward(variables, x, n, y, a, k2, False)
  np.testing.assert_array_equal(eval1, eval2)
  train1 = forward(variables, x, n, y, a, k1, True)
  train1b = forward(variables, x, n, y, a, k1, True)
  train2 = forward(variables, x, n, y, a, k2, True)
  np.testing.assert_array_equal(train1, train1b)
  assert np.abs(train1 - train2).max() > 1e-3
  assert np.abs(train1 - eval1).max() > 1e-3
  assert np.all(np.isfinite(eval1)) and np.abs(eval1).max() > 1e-2  # O(1), not degenerate


def test_label_dropout_one_replaces_labels_by_zeros_in_training(conditional):
  _, variables, (x, n, y, a), forward = conditional
  k = key(3)
  zeros = jnp.zeros_like(y)
  np.testing.assert_array_equal(forward(variables, x, n, y, a, k, True),
                                forward(variables, x, n, zeros, a, k, True))
  # At evaluation the labels do reach the network.
  assert np.abs(forward(variables, x, n, y, a, k, False)
                - forward(variables, x, n, zeros, a, k, False)).max() > 1e-3


def test_bfloat16_compute_keeps_float32_params(conditional):
  net, variables, (x, n, y, a), forward = conditional
  ref = forward(variables, x, n, y, a, key(0), False)
  bf16 = net.clone(dtype=jnp.bfloat16)
  chex.assert_trees_all_equal_dtypes(abstract_variables(bf16), abstract_variables(net))
  out = jax.jit(bf16.apply)(variables, x, n, y, a)
  assert out.dtype == jnp.bfloat16
  out = np.asarray(out, np.float32)
  assert np.all(np.isfinite(out))
  np.testing.assert_allclose(out, ref, atol=0.1 * np.abs(ref).max())
