"""Facts about edmjax.nn.conv: the convolution with a CPU-friendly weight gradient."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from edmjax.nn import conv


def _data(shape_x, shape_w, seed=0, dtype=jnp.float32):
  rng = np.random.default_rng(seed)
  x = jnp.asarray(rng.standard_normal(shape_x), dtype)
  w = jnp.asarray(rng.standard_normal(shape_w) * 0.1, dtype)
  return x, w


def _grads(mode, x, w, padding, g):
  out, vjp = jax.vjp(lambda x_, w_: conv.conv2d(x_, w_, padding, weight_grad=mode), x, w)
  return (out,) + vjp(g)


@pytest.mark.parametrize("batch, size, c_in, c_out, kernel, padding", [
    (8, 16, 4, 6, 3, 1),    # "same" 3x3, chunked into strided batch chunks
    (6, 16, 3, 5, 3, 2),    # padding larger than kernel // 2 (fused down-sampling path)
    (5, 8, 4, 4, 3, 0),     # "valid", odd batch
    (4, 8, 6, 3, 1, 0),     # 1x1: one matrix product
    (3, 4, 2, 2, 1, 1),     # 1x1 with padding: chunked convolution path
])
def test_chunked_weight_gradient_equals_xla(batch, size, c_in, c_out, kernel, padding):
  x, w = _data((batch, size, size, c_in), (kernel, kernel, c_in, c_out))
  out_size = size + 2 * padding - kernel + 1
  g = jnp.asarray(np.random.default_rng(1).standard_normal((batch, out_size, out_size, c_out)),
                  jnp.float32)
  ref = jax.jit(_grads, static_argnums=(0, 3))("xla", x, w, padding, g)
  got = jax.jit(_grads, static_argnums=(0, 3))("chunked", x, w, padding, g)
  chex.assert_shape(got[0], (batch, out_size, out_size, c_out))
  chex.assert_trees_all_close(got, ref, rtol=1e-5, atol=1e-5)


def test_weight_gradient_matches_a_float64_direct_sum():
  x, w = _data((4, 6, 6, 3), (3, 3, 3, 2), dtype=jnp.float32)
  g = np.random.default_rng(2).standard_normal((4, 6, 6, 2))
  _, _, dw = _grads("chunked", x, w, 1, jnp.asarray(g, jnp.float32))
  xp = np.pad(np.asarray(x, np.float64), ((0, 0), (1, 1), (1, 1), (0, 0)))
  want = np.zeros((3, 3, 3, 2))
  for i in range(3):
    for j in range(3):
      want[i, j] = np.einsum("nyxc,nyxo->co", xp[:, i:i + 6, j:j + 6], g)
  np.testing.assert_allclose(np.asarray(dw), want, rtol=1e-5, atol=1e-5)


def test_bfloat16_weight_gradient_accumulates_in_float32():
  x, w = _data((16, 16, 16, 8), (3, 3, 8, 8), dtype=jnp.bfloat16)
  g = jnp.ones((16, 16, 16, 8), jnp.bfloat16)
  _, _, dw = _grads("chunked", x, w, 1, g)
  assert dw.dtype == jnp.bfloat16
  want = _grads("xla", x.astype(jnp.float32), w.astype(jnp.float32), 1,
                g.astype(jnp.float32))[2]
  np.testing.assert_allclose(np.asarray(dw, np.float32), np.asarray(want), rtol=2e-2, atol=2e-2)


def test_num_chunks_divides_the_batch_and_respects_the_bounds():
  assert conv.num_chunks(32, 32 * 32) == 8        # 4 images of 1,024 positions per chunk
  assert conv.num_chunks(32, 8 * 8) == 1          # the whole batch fits in one chunk
  assert conv.num_chunks(30, 32 * 32) == 10       # 8 wanted; 10 is the next divisor of 30
  assert conv.num_chunks(512, 32 * 32) == conv.MAX_CHUNKS
  assert conv.num_chunks(7, 64 * 64) == 7
  for batch in range(1, 40):
    for positions in (16, 256, 1024, 4096, 16384):
      k = conv.num_chunks(batch, positions)
      assert batch % k == 0 and 1 <= k


def test_sharded_batch_gives_the_same_gradient_without_retracing():
  devices = np.array(jax.devices())
  mesh = Mesh(devices, ("data",))
  n = 2 * len(devices)
  x, w = _data((n, 16, 16, 4), (3, 3, 4, 4))
  x_sharded = jax.device_put(x, NamedSharding(mesh, PartitionSpec("data")))

  @jax.jit
  @chex.assert_max_traces(n=1)
  def loss_grad(w, x):
    return jax.grad(lambda w_: jnp.sum(jnp.sin(conv.conv2d(x, w_, 1, weight_grad="chunked"))))(w)

  def want(w):
    return jax.grad(lambda w_: jnp.sum(jnp.sin(conv.conv2d(x, w_, 1, weight_grad="xla"))))(w)

  # Sums of 4,096 float32 terms in a different order: equal to 1e-6 of the largest entry
  # (XLA's own gradient of the sharded batch differs from the unsharded one as much).
  for scale in (1.0, 2.0):
    ref = want(w * scale)
    chex.assert_trees_all_close(loss_grad(w * scale, x_sharded), ref, rtol=0,
                                atol=1e-6 * float(jnp.abs(ref).max()))


def test_bad_arguments_are_named():
  x, w = _data((2, 8, 8, 3), (3, 3, 3, 4))
  with pytest.raises(ValueError, match="weight_grad='fast'.*auto, xla, chunked"):
    conv.conv2d(x, w, 1, weight_grad="fast")
  with pytest.raises(ValueError, match=r"\(2, 8, 8, 3\).*\(3, 3, 4, 4\)"):
    conv.conv2d(x, jnp.zeros((3, 3, 4, 4)), 1)
  with pytest.raises(ValueError, match="padding must be >= 0, got -1"):
    conv.conv2d(x, w, -1)


def test_environment_override_of_auto_is_checked(monkeypatch):
  x, w = _data((2, 8, 8, 3), (3, 3, 3, 4))
  monkeypatch.setenv(conv.ENV_VAR, "sometimes")
  with pytest.raises(ValueError, match="EDMJAX_CONV_WEIGHT_GRAD='sometimes'"):
    conv.conv2d(x, w, 1)
  monkeypatch.setenv(conv.ENV_VAR, "xla")
  chex.assert_trees_all_close(conv.conv2d(x, w, 1), conv.conv2d(x, w, 1, weight_grad="chunked"))
