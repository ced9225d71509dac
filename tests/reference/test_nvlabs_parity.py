"""edmjax against NVlabs/edm (commit 008a4e5) on the inputs of the committed fixtures.

Fixtures come from `make_fixtures.py` (torch and the reference needed only there).
Agreement is max|edmjax − NVlabs| / max|NVlabs| in float64: <= 1e-12 for the
samplers, preconditionings and losses; <= 1e-5 in float32 for the networks and the
augmentation pipeline (both sides float32, attention included). The samplers run
op by op (`jax.disable_jit`) with the same NumPy mixture denoiser the reference
was given, so no sampler program is compiled per case.

Documented differences, tested here: NVlabs builds iDDPM's ᾱ_j in float32 (an
int64 tensor times a float promotes to the default float32), so its u table is off
by up to ~5e-4 relative; edmjax's float64 table equals NVlabs' formula evaluated in
float64.
"""

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import refdata
from edmjax import keys, losses, precond, samplers, schedules
from edmjax import nn as edm_nn
from edmjax.data import augmentation

META, A = refdata.load("nvlabs_samplers")
CASES = {c["name"]: c for c in META["cases"]}
DENOISE = refdata.numpy_denoiser(A["gmm_means"], A["gmm_stds"], A["gmm_weights"])


def test_pinned_reference():
  assert META["reference"] == "NVlabs/edm"
  assert META["commit"].startswith("008a4e5")


def _run_sampler(case):
  kw = dict(case["kwargs"])
  key = None if case["noise_seed"] is None else jax.random.key(case["noise_seed"])
  if case["net"] == "iddpm":   # NVlabs clips the range to iDDPMPrecond's table
    kw.update(sigma_min=case["sigma_range"][0], sigma_max=case["sigma_range"][1],
              round_sigma=schedules.iddpm_round_sigma)
  fn = samplers.edm_sampler if case["function"] == "edm_sampler" else samplers.ablation_sampler
  return fn(DENOISE, jnp.asarray(A["latents"]), key, **kw)


@pytest.mark.parametrize("name", list(CASES))
def test_sampler_matches_nvlabs(name):
  # edm_sampler (deterministic, churn, iDDPM rounding), all 48 ablation combinations
  # with NVlabs' default ranges (VP: β_d = 19.9), α != 1 and churn.
  case = CASES[name]
  with jax.enable_x64(True), jax.disable_jit():
    if case["noise_seed"] is not None:   # the reference was handed edmjax's noise
      k = keys.per_sample_keys(jax.random.key(case["noise_seed"]), A["latents"].shape[0])
      head = np.stack([keys.step_noise(k, i, jnp.asarray(A["latents"])) for i in range(2)])
      np.testing.assert_array_equal(head, A[f"{name}/noise_head"])
    out = _run_sampler(case)
  assert refdata.rel_error(out, A[f"{name}/out"]) <= 1e-12


def test_iddpm_table_is_nvlabs_formula_in_float64_not_its_float32():
  u = schedules.iddpm_u_table()
  np.testing.assert_allclose(u, A["iddpm_u_float64"], rtol=1e-13, atol=0)
  # As-is, NVlabs evaluates ᾱ_j in float32 (ablation_sampler's loop and
  # iDDPMPrecond alike): a real difference of 1e-6 .. 1e-3, not an edmjax error.
  for as_is in (A["iddpm_u_ablation_as_is"], A["iddpm_u_precond_as_is"]):
    rel = np.abs(u[:-1] - as_is[:-1]) / u[:-1]
    assert 1e-6 < rel.max() < 1e-3, rel.max()


# ----------------------------------------------------------------------------- precond

P_META, P = refdata.load("nvlabs_precond")
SCALINGS = {"vp": precond.vp_scalings, "ve": precond.ve_scalings,
            "iddpm": precond.iddpm_scalings, "edm": precond.edm_scalings}


@pytest.mark.parametrize("name", list(SCALINGS))
def test_scalings_match_nvlabs_precond(name):
  with jax.enable_x64(True):
    sigma = jnp.asarray(P["sigma"])
    s = SCALINGS[name](sigma)
    for field in ("c_skip", "c_out", "c_in", "c_noise"):
      value = jnp.broadcast_to(getattr(s, field), sigma.shape)
      assert refdata.rel_error(value, P[f"{name}/{field}"]) <= 1e-12, field


# ----------------------------------------------------------------------------- losses

L_META, L = refdata.load("nvlabs_losses")
LOSSES = {"edm": losses.edm_loss, "vp": losses.vp_loss, "ve": losses.ve_loss}


@pytest.mark.parametrize("name", list(LOSSES))
def test_loss_matches_nvlabs_with_the_same_sigma_and_noise(name):
  denoise = refdata.numpy_denoiser(L["gmm_means"], L["gmm_stds"], L["gmm_weights"])
  with jax.enable_x64(True), jax.disable_jit():
    loss = LOSSES[name](denoise, jnp.asarray(L["images"]), None,
                        sigma=jnp.asarray(L[f"{name}/sigma"]),
                        noise=jnp.asarray(L[f"{name}/noise"]))
    assert refdata.rel_error(loss, L[f"{name}/loss"]) <= 1e-12
    # The σ densities: NVlabs' σ from its draw, by edmjax's formulas.
    draw = L[f"{name}/draw"]
    sigma = {"edm": lambda: np.exp(draw * 1.2 - 1.2),
             "vp": lambda: schedules.vp_sigma(1 + draw * (1e-5 - 1)),
             "ve": lambda: 0.02 * (100 / 0.02)**draw}[name]()
    assert refdata.rel_error(sigma, L[f"{name}/sigma"]) <= 1e-12


# ----------------------------------------------------------------------------- networks

N_META, N = refdata.load("nvlabs_networks")


def _flax_variables(net, name):
  """The NVlabs state dict of case `name` (deterministic weights), mapped onto the
  Flax variables by the documented rule (`edmjax.nn.layers`): `a.b.c` -> a/b/c,
  Linear w.T, Conv2d OIHW -> HWIO, FourierEmbedding.freqs -> 'buffers'."""
  x = jnp.asarray(N["x"])
  shapes = jax.eval_shape(lambda: net.init(jax.random.key(0), x, jnp.asarray(N["noise_labels"]),
                                           jnp.asarray(N["class_labels"]),
                                           jnp.asarray(N["augment_labels"])))
  flat = flax.traverse_util.flatten_dict(flax.core.unfreeze(shapes))
  mapped = {}
  for key, shape in zip(N[f"{name}/keys"], N[f"{name}/shapes"]):
    key = str(key)
    w = refdata.deterministic_weights(key, [int(s) for s in str(shape).split(",")])
    w = w.transpose(2, 3, 1, 0) if w.ndim == 4 else (w.T if w.ndim == 2 else w)
    parts = tuple(key.split("."))
    path = (edm_nn.BUFFERS if parts[-1] == "freqs" else "params",) + parts
    assert path in flat and flat[path].shape == w.shape, (key, path)
    mapped[path] = jnp.asarray(w)
  assert set(mapped) == set(flat), set(flat) ^ set(mapped)   # one to one
  return flax.traverse_util.unflatten_dict(mapped)


@pytest.mark.parametrize("name", list(N_META["cases"]))
def test_network_forward_matches_nvlabs(name):
  case = dict(N_META["cases"][name])
  cls = case.pop("cls")
  size = N_META["dhariwal_size"] if cls == "DhariwalUNet" else N_META["song_size"]
  config = {**N_META["common"], **size, **case}
  config = {k: tuple(v) if isinstance(v, list) else v for k, v in config.items()}
  net = getattr(edm_nn, cls)(**config)
  out = jax.jit(net.apply)(_flax_variables(net, name), jnp.asarray(N["x"]),
                           jnp.asarray(N["noise_labels"]), jnp.asarray(N["class_labels"]),
                           jnp.asarray(N["augment_labels"]))
  assert refdata.rel_error(out, N[f"{name}/out"]) <= 1e-5


# ----------------------------------------------------------------------------- augment

G_META, G = refdata.load("nvlabs_augment")


def test_augment_pipe_matches_nvlabs_with_the_same_draws():
  # The fixture handed NVlabs' torch.rand/randn/randint calls the values edmjax
  # derives from these per-sample uniforms, in edmjax's slot layout (checked here).
  layout = {k: tuple(v) for k, v in G_META["draw_layout"].items()}
  assert layout == augmentation._DRAWS
  config = augmentation.AugmentConfig(p=G_META["p"], **G_META["probabilities"])
  out, labels = jax.jit(augmentation._apply, static_argnames="config")(
      jnp.asarray(G["uniforms"]), jnp.asarray(G["images"]), config)
  assert refdata.rel_error(out, G["out"]) <= 1e-5
  assert refdata.rel_error(labels, G["labels"]) <= 1e-5
