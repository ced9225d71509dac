"""FID Inception: weight loading, name mapping and preprocessing (no torch needed)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from edmjax.eval import inception


def _random_state_dict():
  """A state_dict with the pytorch-fid / torch-fidelity names and shapes."""
  shapes = inception._expected_shapes()  # pylint: disable=protected-access
  rng = np.random.default_rng(0)
  sd = {}
  flat = jax.tree_util.tree_flatten_with_path(
      shapes, is_leaf=lambda s: isinstance(s, tuple))[0]
  for path, shape in flat:
    keys = [k.key for k in path]
    col, *mods, leaf = keys
    if mods == ["fc"]:
      name = {"kernel": "weight", "bias": "bias"}[leaf]
      value = rng.normal(size=shape[::-1] if leaf == "kernel" else shape)
    elif leaf == "kernel":
      name, value = "weight", rng.normal(size=(shape[3], shape[2], shape[0], shape[1]))
    else:
      name = {("params", "scale"): "weight", ("params", "bias"): "bias",
              ("batch_stats", "mean"): "running_mean",
              ("batch_stats", "var"): "running_var"}[(col, leaf)]
      value = rng.uniform(0.5, 1.5, size=shape)
    sd[".".join(mods + [name])] = value.astype(np.float32)
    if name == "running_var":
      sd[".".join(mods + ["num_batches_tracked"])] = np.array(0, np.int64)
  return sd


def test_missing_weights_error_says_what_to_do(monkeypatch, tmp_path):
  monkeypatch.delenv(inception.WEIGHTS_ENV, raising=False)
  with pytest.raises(FileNotFoundError) as e:
    inception.load_inception_params()
  msg = str(e.value)
  assert "pt_inception-2015-12-05-6726825d.pth" in msg
  assert ("github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
          "weights-inception-2015-12-05-6726825d.pth") in msg
  assert "EDMJAX_INCEPTION_WEIGHTS" in msg and "pytorch-fid" in msg
  monkeypatch.setenv(inception.WEIGHTS_ENV, str(tmp_path / "nope.pth"))
  with pytest.raises(FileNotFoundError, match="nope.pth' does not exist"):
    inception.load_inception_params()


def test_npz_state_dict_maps_onto_flax_tree(tmp_path, monkeypatch):
  sd = _random_state_dict()
  assert len([k for k in sd if k.endswith("conv.weight")]) == 94
  inception.save_inception_npz(tmp_path / "w.npz", sd)
  monkeypatch.setenv(inception.WEIGHTS_ENV, str(tmp_path / "w.npz"))
  v = inception.load_inception_params()
  k = np.asarray(v["params"]["Mixed_6b"]["branch7x7_2"]["conv"]["kernel"])
  np.testing.assert_array_equal(
      k, sd["Mixed_6b.branch7x7_2.conv.weight"].transpose(2, 3, 1, 0))
  assert k.shape == (1, 7, 128, 128)
  np.testing.assert_array_equal(v["batch_stats"]["Conv2d_1a_3x3"]["bn"]["var"],
                                sd["Conv2d_1a_3x3.bn.running_var"])
  np.testing.assert_array_equal(v["params"]["fc"]["kernel"], sd["fc.weight"].T)
  # A missing tensor or a wrong shape is reported by name.
  bad = dict(sd)
  del bad["Mixed_7c.branch_pool.conv.weight"]
  with pytest.raises(ValueError, match="missing variables.*Mixed_7c"):
    inception.state_dict_to_variables(bad)
  bad = dict(sd)
  bad["fc.bias"] = np.zeros(1000, np.float32)
  with pytest.raises(ValueError, match="wrong shapes.*fc"):
    inception.state_dict_to_variables(bad)


def test_tf1_resize_exact_cases():
  x = jnp.asarray(np.random.default_rng(1).uniform(0, 255, (1, 13, 7, 3)), jnp.float32)
  np.testing.assert_array_equal(inception.resize_bilinear_tf1(x, (13, 7)), x)
  # Upsampling by 2 with TF1 coordinates (src = dst/2): even outputs copy input
  # pixels, odd ones are the mean of two neighbours, the last row/col repeats.
  y = np.asarray(inception.resize_bilinear_tf1(x, (26, 14)))
  xn = np.asarray(x)
  np.testing.assert_allclose(y[:, ::2, ::2], xn, rtol=1e-6)
  np.testing.assert_allclose(y[:, 1:-1:2, ::2], 0.5 * (xn[:, :-1] + xn[:, 1:]), rtol=1e-6)
  np.testing.assert_allclose(y[:, -1, ::2], xn[:, -1], rtol=1e-6)


def test_preprocess_ranges_and_errors():
  u8 = jnp.full((1, 8, 8, 1), 255, jnp.uint8)
  f = jnp.full((1, 8, 8, 1), 1.0, jnp.float32)
  pu, pf = inception.preprocess_inception(u8), inception.preprocess_inception(f)
  assert pu.shape == (1, 299, 299, 3)
  np.testing.assert_allclose(pu, 127 / 128)
  np.testing.assert_allclose(pf, 127 / 128)
  np.testing.assert_array_equal(inception.to_uint8(jnp.array([-1.0, 0.0, 1.0])),
                                [0, 128, 255])
  with pytest.raises(ValueError, match="4-D NHWC"):
    inception.preprocess_inception(jnp.zeros((8, 8, 3)))
  with pytest.raises(ValueError, match="1 or 3 channels"):
    inception.preprocess_inception(jnp.zeros((1, 8, 8, 4)))
  with pytest.raises(ValueError, match="uint8 in \\[0, 255\\] or float"):
    inception.preprocess_inception(jnp.zeros((1, 8, 8, 3), jnp.int32))
