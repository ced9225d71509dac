"""Facts about EDM2UNet (NVlabs/edm2 `UNet` + the uncertainty head of `Precond`).

The reference numbers come from NVlabs/edm2's own code (commit 4bf8162) with random
weights, written by tests/fixtures/make_edm2_fixture.py; this file reads them
without torch. Full-size networks are traced abstractly (`jax.eval_shape`).
"""

import functools
import json
import os
import subprocess

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from edmjax import precond
from edmjax.nn import BUFFERS, EDM2UNet, MPConv, mp_cat, mp_silu, mp_sum, normalize
from edmjax.nn import edm2_unet

FIXTURE = os.path.join(os.path.dirname(__file__), "..", "fixtures", "edm2_reference.npz")


@pytest.fixture(scope="module")
def ref():
  return np.load(FIXTURE)


def _config(ref, name):
  cfg = json.loads(str(ref["meta/configs"]))[name]
  return {k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items()}


def _state_dict(ref, name):
  prefix = f"{name}/sd/"
  return {k[len(prefix):]: ref[k] for k in ref.files if k.startswith(prefix)}


def _abstract(net, batch=1):
  r, f32 = net.img_resolution, jnp.float32
  return jax.eval_shape(
      net.init, jax.random.key(0), jax.ShapeDtypeStruct((batch, r, r, net.img_channels), f32),
      jax.ShapeDtypeStruct((batch,), f32),
      jax.ShapeDtypeStruct((batch, net.label_dim), f32) if net.label_dim else None)


def _count(tree):
  return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(tree))


# edm2-img64-s (64x64x3 pixels, 280,209,381) is counted through its preset in
# tests/train/test_edm2_train.py; each count traces a full-size network.
@pytest.mark.parametrize("channels, model_channels, expected", [
    (4, 128, 124_713_253),   # edm2-img512-xs (64x64x4 latents)
    (4, 192, 280_212_837),   # edm2-img512-s
])
def test_parameter_counts_equal_nvlabs(channels, model_channels, expected):
  variables = _abstract(EDM2UNet(64, channels, 1000, model_channels=model_channels))
  assert _count(variables["params"]) == expected            # UNet + uncertainty head
  assert _count(variables["params"]["logvar_linear"]) == 128
  assert set(variables[BUFFERS]) == {"unet", "logvar_fourier"}


@pytest.mark.parametrize("name", ["cond", "uncond"])
def test_variables_map_one_to_one_onto_precond_state_dict(ref, name):
  sd = _state_dict(ref, name)
  variables = edm2_unet.variables_from_state_dict(sd)
  template = _abstract(EDM2UNet(**_config(ref, name)))
  chex.assert_trees_all_equal_shapes(variables, template)
  back = edm2_unet.state_dict_from_variables(variables)
  assert set(back) == set(sd)
  for k, v in sd.items():
    np.testing.assert_array_equal(back[k], v, err_msg=k)


@pytest.fixture(scope="module")
def reference_outputs(ref):
  """D and u of our network with NVlabs' weights, for both fixture configs.

  The conditional net runs once on a doubled batch: the labels, then zeros (what
  NVlabs' Precond passes for class_labels=None, as EDM2UNet does).
  """
  out = {}
  for name in ("cond", "uncond"):
    net = EDM2UNet(**_config(ref, name))
    variables = edm2_unet.variables_from_state_dict(_state_dict(ref, name))
    x = jnp.asarray(ref[f"{name}/x"].transpose(0, 2, 3, 1))       # NCHW -> NHWC
    sigma = jnp.asarray(ref[f"{name}/sigma"])
    labels = None
    if net.label_dim:
      labels = jnp.asarray(ref[f"{name}/labels"])
      x, sigma, labels = (jnp.concatenate([x, x]), jnp.concatenate([sigma, sigma]),
                          jnp.concatenate([labels, jnp.zeros_like(labels)]))
    apply = lambda x_in, c, labels, net=net, v=variables: net.apply(
        v, x_in, c, labels, return_logvar=True)
    D, logvar = jax.jit(precond.make_uncertainty_denoiser(apply, "edm2"))(x, sigma, labels)
    n = ref[f"{name}/sigma"].shape[0]
    out[name] = (D[:n], logvar[:n], D[n:] if net.label_dim else None)
  return out


@pytest.mark.parametrize("name", ["cond", "uncond"])
def test_forward_matches_nvlabs_at_float32_precision(ref, reference_outputs, name):
  D, logvar, D_nolabels = reference_outputs[name]
  expected = ref[f"{name}/D"].transpose(0, 2, 3, 1)
  # float32 rounding through ~20 layers: measured max |ΔD| 7e-8 (cond), 7e-7 (uncond).
  np.testing.assert_allclose(D, expected, rtol=0, atol=5e-6)
  np.testing.assert_allclose(logvar, ref[f"{name}/logvar"], rtol=0, atol=1e-6)
  if D_nolabels is not None:
    np.testing.assert_allclose(D_nolabels, ref[f"{name}/D_nolabels"].transpose(0, 2, 3, 1),
                               rtol=0, atol=5e-6)


# ----------------------------------------------------------------------------- magnitudes


def _rms(x):
  return float(jnp.sqrt(jnp.mean(jnp.square(x.astype(jnp.float32)))))


@pytest.fixture(scope="module")
def unit_gaussians():
  k1, k2 = jax.random.split(jax.random.key(0))
  return (jax.random.normal(k1, (8, 32, 32, 64)), jax.random.normal(k2, (8, 32, 32, 64)))


def test_mp_silu_sum_cat_preserve_unit_magnitude(unit_gaussians):
  a, b = unit_gaussians
  # Magnitude is the RMS (the paper's ‖·‖/√N). silu's output has mean 0.21, so the
  # std of mp_silu is 0.94 while its RMS is 1.
  assert abs(_rms(mp_silu(a)) - 1) < 0.02
  for t in (0.3, 0.5, 0.8):
    assert abs(_rms(mp_sum(a, b, t)) - 1) < 0.02
    assert abs(_rms(mp_cat(a[..., :16], b, t=t)) - 1) < 0.02
    chex.assert_shape(mp_cat(a[..., :16], b, t=t), (8, 32, 32, 80))
  # mp_cat's weighting: b's share of the squared magnitude is t² / ((1 − t)² + t²).
  y = mp_cat(a[..., :16], b, t=0.3)
  share = float(jnp.sum(y[..., 16:]**2) / jnp.sum(y**2))
  assert abs(share - 0.09 / 0.58) < 0.01


@pytest.mark.parametrize("kernel, features", [((3, 3), 48), ((1, 1), 32), ((), 96)])
def test_mp_conv_with_normalised_weights_preserves_unit_magnitude(unit_gaussians, kernel,
                                                                  features):
  x = unit_gaussians[0]
  if not kernel:
    x = x.reshape(-1, 64)
  layer = MPConv(features, kernel)
  variables = layer.init(jax.random.key(1), x)
  w = variables["params"]["weight"]
  chex.assert_shape(w, kernel + (64, features))
  y = layer.apply(variables, x)
  if kernel == (3, 3):
    y = y[:, 1:-1, 1:-1]     # zero padding lowers the border's magnitude; interior only
  assert abs(_rms(y) - 1) < 0.02
  np.testing.assert_allclose(_rms(layer.apply(variables, x, gain=0.5)), 0.5 * _rms(
      layer.apply(variables, x)), rtol=1e-5)


def test_normalize_gives_unit_rms_over_the_axes():
  x = 3.0 * np.random.default_rng(2).standard_normal((4, 5, 6)).astype(np.float32)
  y = normalize(x)                                   # every axis but the first
  rms = jnp.sqrt(jnp.mean(y**2, axis=(1, 2)))
  np.testing.assert_allclose(rms, 1.0, atol=1e-4)    # ε = 1e-4 on an RMS of ~3
  np.testing.assert_allclose(jnp.sqrt(jnp.mean(normalize(x, axis=-1)**2, -1)), 1.0, atol=1e-4)


# ----------------------------------------------------------------------------- renormalisation


def _weight_rms(params):
  """RMS over the input axes of every MPConv weight row."""
  flat = jax.tree_util.tree_flatten_with_path(params)[0]
  return {jax.tree_util.keystr(p): np.sqrt(np.mean(np.square(np.asarray(w)),
                                                   axis=tuple(range(w.ndim - 1))))
          for p, w in flat if p[-1].key == "weight"}


def _assert_unit_rows(params):
  """Every MPConv row at unit RMS: r/(ε + r) for a row of RMS r before, so 1 − ε/r."""
  rms = _weight_rms(params)
  for key, r in rms.items():
    assert np.all((r > 1 - 1e-3) & (r <= 1 + 1e-6)), (key, r)
  return rms


@pytest.fixture(scope="module")
def tiny(ref):
  """The fixture's conditional net with NVlabs' weights, and one jitted forward pass."""
  net = EDM2UNet(**_config(ref, "cond"))
  variables = edm2_unet.variables_from_state_dict(_state_dict(ref, "cond"))
  x = jnp.asarray(ref["cond/x"].transpose(0, 2, 3, 1)) * 0.5
  c = jnp.log(jnp.asarray(ref["cond/sigma"])) / 4
  labels = jnp.asarray(ref["cond/labels"])
  forward = jax.jit(lambda v, labels=labels, dtype=jnp.float32: net.clone(
      dtype=dtype).apply(v, x, c, labels), static_argnums=2)
  return net, variables, x, c, labels, forward


def test_initial_weights_are_stored_normalised(ref):
  for kernel in ((3, 3), ()):
    x = jnp.zeros((2, 4, 4, 3) if kernel else (2, 3))   # 3 inputs: the smallest rows
    _assert_unit_rows(jax.jit(MPConv(16, kernel).init)(jax.random.key(3), x)["params"])
  # Every weight of EDM2UNet is an MPConv's (and NVlabs' has as many); the other
  # parameters are the scalar gains.
  params = _abstract(EDM2UNet(**_config(ref, "cond")))["params"]
  flat = jax.tree_util.tree_flatten_with_path(params)[0]
  names = {str(p[-1].key) for p, _ in flat}
  assert names == {"weight", "emb_gain", "out_gain"}
  assert sum(str(p[-1].key) == "weight" for p, _ in flat) == sum(
      k.endswith(".weight") for k in _state_dict(ref, "cond"))


def test_renormalize_keeps_unit_rows_after_updates_and_changes_no_output(tiny):
  net, variables, _, _, _, forward = tiny
  renormalize = jax.jit(net.renormalize)
  p = renormalize(variables["params"])
  _assert_unit_rows(p)
  rng = np.random.default_rng(5)
  for _ in range(3):     # large updates, as an optimizer step could make
    raw = jax.tree.map(lambda w: w + np.float32(0.3) * rng.standard_normal(w.shape,
                                                                           np.float32), p)
    assert max(abs(r - 1).max() for r in _weight_rms(raw).values()) > 0.05
    p = renormalize(raw)
    _assert_unit_rows(p)
  np.testing.assert_array_equal(p["unet"]["out_gain"], raw["unet"]["out_gain"])  # gains kept
  # The forward normalises anyway: renormalising the stored weights changes the output
  # only through ε (a normalised row is rescaled by 1/(1 + ε) when normalised again):
  # at most ε per layer, ~20 layers deep.
  f_renorm, f_raw = forward({**variables, "params": p}), forward({**variables, "params": raw})
  assert _rms(f_renorm - f_raw) / _rms(f_raw) < 20 * edm2_unet.NORM_EPS


# ----------------------------------------------------------------------------- bf16, errors


def test_bfloat16_agrees_with_float32_to_bfloat16_precision(tiny):
  _, variables, _, _, labels, forward = tiny
  f32, bf16 = forward(variables), forward(variables, labels, jnp.bfloat16)
  assert bf16.dtype == jnp.bfloat16
  rel = _rms(f32 - bf16.astype(jnp.float32)) / _rms(f32)
  # bf16's unit roundoff is 2^-8 = 0.0039; ~20 rounding layers in sequence give an
  # expected relative error of a few times that (measured 0.9% here, 1.6% on the
  # 3-level fixture net). Bound: 8 unit roundoffs.
  assert 0 < rel < 8 * 2.0**-8


def test_label_dropout_zeroes_labels_in_training_only(tiny):
  net, variables, x, c, labels, forward = tiny

  @functools.partial(jax.jit, static_argnums=0)
  def dropping(train):   # label_dropout 1; the net has no other dropout
    return net.clone(label_dropout=1.0).apply(variables, x, c, labels, train=train,
                                              rngs={"dropout": jax.random.key(4)})

  zeros = jnp.zeros_like(labels)   # NVlabs' unconditional input
  # Two compiled programs: equal up to float32 rounding (measured 1.2e-6).
  np.testing.assert_allclose(dropping(True), forward(variables, zeros), rtol=0, atol=1e-5)
  np.testing.assert_allclose(dropping(False), forward(variables, labels), rtol=0, atol=1e-5)
  assert not np.array_equal(forward(variables, labels), forward(variables, zeros))


def test_errors_name_the_problem(tiny):
  net, variables, x, c, labels, _ = tiny
  with pytest.raises(ValueError, match="NHWC"):
    net.apply(variables, x.transpose(0, 3, 1, 2), c, labels)
  with pytest.raises(ValueError, match=r"class_labels must have shape \(3, 3\)"):
    net.apply(variables, x, c, labels[:, :2])
  with pytest.raises(ValueError, match="label_dim=0"):
    net.clone(label_dim=0).init(jax.random.key(0), x, c, labels)
  with pytest.raises(ValueError, match="augment_labels must be None"):
    net.apply(variables, x, c, labels, jnp.zeros((3, 9)))
  with pytest.raises(ValueError, match="not an NVlabs/edm2 Precond key"):
    edm2_unet.variables_from_state_dict({"model.map_noise.freqs": np.zeros(4)})
  with pytest.raises(ValueError, match="return_logvar=True"):
    precond.make_uncertainty_denoiser(lambda x_in, c_noise: x_in)(x, jnp.ones(3))


def test_fully_convolutional_on_larger_inputs(tiny):
  net, variables, x, c, labels, _ = tiny
  big = jnp.tile(x, (1, 2, 2, 1))
  out = jax.eval_shape(functools.partial(net.apply, variables), big, c, labels)
  chex.assert_shape(out, big.shape)


# ----------------------------------------------------------------------------- NVlabs' code

_TORCH_PYTHON = os.environ.get("EDMJAX_TORCH_PYTHON")
_NVLABS_EDM2 = os.environ.get("EDMJAX_NVLABS_EDM2")


@pytest.mark.skipif(not (_TORCH_PYTHON and _NVLABS_EDM2),
                    reason="needs EDMJAX_TORCH_PYTHON (a Python with torch) and "
                    "EDMJAX_NVLABS_EDM2 (an NVlabs/edm2 checkout) to run NVlabs' own code")
def test_fixture_is_what_nvlabs_code_computes(ref, tmp_path):
  """Rerunning the fixture script with NVlabs/edm2's code reproduces the committed
  fixture bit for bit, so the comparisons above are against NVlabs' live forward
  pass, loss, schedule and phema, not against a stale file."""
  script = os.path.join(os.path.dirname(FIXTURE), "make_edm2_fixture.py")
  subprocess.run([_TORCH_PYTHON, script, "--edm2", _NVLABS_EDM2, "--out",
                  str(tmp_path / "again.npz")], check=True, capture_output=True)
  again = np.load(tmp_path / "again.npz")
  assert sorted(again.files) == sorted(ref.files)
  for k in ref.files:
    np.testing.assert_array_equal(again[k], ref[k], err_msg=k)
