"""edmjax.pretrained: NVlabs/edm network pickles load safely and denoise as NVlabs does.

The pickles are written by `nvlabs_format` (NVlabs' format, no torch) with weights
from the fixture `nvlabs_denoisers.npz`, whose outputs NVlabs/edm's own networks
produced from the same weights (`make_pickle_fixtures.py`). Every persistence object carries
a source text that would create a flag file and raise if it were ever executed.
"""

import collections
import importlib
import json
import os
import pathlib
import pickle
import subprocess
import sys
import zipfile

import jax
import numpy as np
import pytest

import nvlabs_format
from edmjax import pretrained
from edmjax import sampling
from edmjax import torchio

HERE = pathlib.Path(__file__).parent
FIXTURE = np.load(HERE / "nvlabs_denoisers.npz")
META = json.loads(FIXTURE["meta"].tobytes().decode())
CONFIGS = {c["name"]: c for c in META["configs"]}


def _poison(flag):
  return (f"open({str(flag)!r}, 'w').write('NVlabs source executed')\n"
          "raise RuntimeError('the embedded source must never be executed')\n")


def _state_dict(cfg):
  p = cfg["name"]
  sd = nvlabs_format.random_weights(cfg["keys"], cfg["seed"])
  for k, _ in cfg["keys"]:
    if k not in sd:
      sd[k] = FIXTURE[f"{p}/buffer/{k}"]
  return collections.OrderedDict((k, sd[k]) for k, _ in cfg["keys"])


def _write(tmp, cfg, flag, **kw):
  attrs = dict(cfg["attrs"], _init_kwargs=cfg["init_kwargs"])
  data = nvlabs_format.network_pickle(
      cfg["class_name"], attrs, cfg["kwargs"]["model_type"], cfg["model_init_kwargs"],
      _state_dict(cfg), _poison(flag), **kw)
  path = tmp / f"{cfg['name']}.pkl"
  path.write_bytes(data)
  return path


def _rel(a, b):
  return float(np.max(np.abs(np.asarray(a, np.float64) - b)) / np.max(np.abs(b)))


@pytest.fixture(scope="module")
def loaded(tmp_path_factory):
  """name -> (PretrainedNetwork, jitted denoise(variables, x, sigma, labels), flag path)."""
  tmp = tmp_path_factory.mktemp("pickles")
  flag = tmp / "executed.flag"
  out = {}
  for name, cfg in CONFIGS.items():
    extra = dict(loss_fn=nvlabs_format.persistent("EDMLoss", dict(P_mean=-1.2), "x"),
                 augment_pipe=None,
                 dataset_kwargs=dict(class_name="training.dataset.ImageFolderDataset",
                                     resolution=8, use_labels=cfg["label_dim"] > 0))
    net = pretrained.load_network(_write(tmp, cfg, flag, extra=extra))
    fn = jax.jit(lambda v, x, s, y, net=net: net.make_model(v)(x, s, y))
    out[name] = (net, fn, flag)
  return out


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_denoiser_equals_nvlabs_and_source_never_runs(loaded, name):
  net, fn, flag = loaded[name]
  cfg, p = CONFIGS[name], name
  labels = FIXTURE[f"{p}/labels"] if cfg["label_dim"] else None
  got = fn(net.variables, FIXTURE[f"{p}/x"], FIXTURE[f"{p}/sigma"], labels)
  assert got.dtype == np.float32 and got.shape == FIXTURE[f"{p}/D"].shape
  assert _rel(got, FIXTURE[f"{p}/D"]) < 1e-5
  assert not flag.exists()
  assert "never be executed" in net.source  # kept as text
  assert net.class_name == cfg["class_name"] and net.arch == cfg["kwargs"]["model_type"]
  assert (net.img_resolution, net.img_channels, net.label_dim) == (8, 3, cfg["label_dim"])
  # NVlabs' own range, as its constructor computed it (float32 for VP and iDDPM).
  assert (net.model.sigma_min, net.model.sigma_max) == (
      cfg["attrs"]["sigma_min"], cfg["attrs"]["sigma_max"])


def test_conditional_model_without_labels_is_nvlabs_zeros(loaded):
  net, fn, _ = loaded["iddpm_adm_cond"]
  p = "iddpm_adm_cond"
  got = fn(net.variables, FIXTURE[f"{p}/x"], FIXTURE[f"{p}/sigma"], None)
  assert _rel(got, FIXTURE[f"{p}/D_nolabels"]) < 1e-5


@pytest.mark.parametrize("name", ["iddpm_adm_cond", "vp_ddpmpp"])
def test_round_sigma_equals_nvlabs(loaded, name):
  net, _, _ = loaded[name]
  grid, want = FIXTURE[f"{name}/round_grid"], FIXTURE[f"{name}/round_sigma"]
  got = net.model.round(grid)
  np.testing.assert_array_equal(got, want)  # iDDPM: the stored float32 levels, exactly
  if name == "iddpm_adm_cond":
    np.testing.assert_array_equal(np.asarray(net.round_sigma(jax.numpy.asarray(grid))),
                                  want.astype(np.float32))
    # The sampler's noise levels are levels of the table.
    table = sampling.sigma_table(net.model, 6, 0.002, 80.0)
    assert set(table[:-1]) <= set(net.sigma_levels.astype(np.float64))


def test_state_dict_round_trip_is_exact(loaded, tmp_path):
  for name in ("ve_ncsnpp", "iddpm_adm_cond"):
    net, fn, _ = loaded[name]
    kwargs = pretrained.save_state_dict(tmp_path / f"{name}.pt", net)
    sd = torchio.load_torch_state_dict(tmp_path / f"{name}.pt")
    # The file holds exactly NVlabs' state dict (same keys, shapes and values).
    want = _state_dict(CONFIGS[name])
    assert sorted(sd) == sorted(want)
    for k, v in want.items():
      np.testing.assert_array_equal(sd[k], v, err_msg=k)
    back = pretrained.from_state_dict(sd, net.class_name, **kwargs)
    assert back.nvlabs_kwargs == kwargs
    assert (back.sigma_min, back.sigma_max) == (net.sigma_min, net.sigma_max)
    jax.tree_util.tree_map(np.testing.assert_array_equal, back.variables, net.variables)


def test_nvlabs_kwargs_are_the_pickled_constructor_arguments(loaded):
  for name, cfg in CONFIGS.items():
    got = loaded[name][0].nvlabs_kwargs
    want = dict(cfg["init_kwargs"])
    for k, v in want.items():
      assert got[k] == v, (name, k)


# ----------------------------------------------------------------------------- refusals


def _flagged(tmp_path):
  flag = tmp_path / "pwned"
  return flag, f"touch {flag}"


class _Shell:
  def __init__(self, cmd):
    self.cmd = cmd

  def __reduce__(self):
    return (os.system, (self.cmd,))


class _Import:
  def __reduce__(self):
    return (importlib.import_module, ("edmjax_test_evil_module",))


class _Exec:
  def __init__(self, code):
    self.code = code

  def __reduce__(self):
    return (exec, (self.code,))


def test_hostile_pickles_are_refused_and_have_no_effect(tmp_path, monkeypatch):
  flag, cmd = _flagged(tmp_path)
  (tmp_path / "edmjax_test_evil_module.py").write_text(
      f"open({str(flag)!r}, 'w').write('imported')\n")
  monkeypatch.syspath_prepend(str(tmp_path))
  cfg = CONFIGS["vp_ddpmpp"]
  cases = {
      "shell": (pickle.dumps(dict(ema=_Shell(cmd))), r"(posix|os|nt)\.system"),
      "import": (pickle.dumps(dict(ema=_Import())), r"importlib\.import_module"),
      "exec": (pickle.dumps([_Exec(f"open({str(flag)!r}, 'w')")]), r"builtins\.exec"),
      # NEWOBJ + BUILD of a refused class: the placeholder's __new__/__setstate__ are inert.
      "newobj": (nvlabs_format.dumps(dict(ema=nvlabs_format.NewObj(
          nvlabs_format.Global("subprocess", "Popen"), {"args": ["touch", str(flag)]}))),
                 r"subprocess\.Popen"),
      # A payload inside a pickled tensor's storage bytes (a legacy torch.save stream).
      "storage": (nvlabs_format.dumps(dict(ema=nvlabs_format.Call(
          nvlabs_format.Global("torch.storage", "_load_from_bytes"),
          pickle.dumps(_Shell(cmd))))), r"(posix|os|nt)\.system"),
      # A valid network with the payload hidden in the snapshot's other entries.
      "hidden": (nvlabs_format.network_pickle(
          cfg["class_name"], dict(cfg["attrs"], _init_kwargs=cfg["init_kwargs"]),
          "SongUNet", cfg["model_init_kwargs"], _state_dict(cfg), _poison(flag),
          extra=dict(dataset_kwargs=dict(path=_Shell(cmd)))), r"(posix|os|nt)\.system"),
  }
  # A torch.save zip whose data.pkl calls os.system.
  zipped = tmp_path / "zipped.pt"
  torchio.save_torch_state_dict(zipped, {"w": np.zeros(1, np.float32)})
  with zipfile.ZipFile(zipped) as zf:
    files = {n: zf.read(n) for n in zf.namelist()}
  files["zipped/data.pkl"] = pickle.dumps(_Shell(cmd), protocol=2)
  with zipfile.ZipFile(zipped, "w") as zf:
    for n, b in files.items():
      zf.writestr(n, b)
  cases["zip"] = (zipped.read_bytes(), r"(posix|os|nt)\.system")
  for name, (data, pattern) in cases.items():
    path = tmp_path / f"{name}.pkl"
    path.write_bytes(data)
    with pytest.raises(pretrained.RefusedPickleError, match=pattern) as e:
      pretrained.load_network(path)
    assert "Nothing from the file was executed" in str(e.value), name
    assert not flag.exists(), name
  assert "edmjax_test_evil_module" not in sys.modules


def test_other_kinds_of_files_are_named(tmp_path):
  P = nvlabs_format.persistent
  t = nvlabs_format.tensor
  cases = {
      "stylegan": (dict(G=P("Generator", {}, ""), D=P("Discriminator", {}, ""),
                        G_ema=P("Generator", {}, ""), training_set_kwargs={}),
                   r"StyleGAN.*'Generator'"),
      "state_dict": (collections.OrderedDict(
          [("model.map_layer0.weight", t(np.zeros((2, 2), np.float32)))]),
                     r"bare state dict of 1 tensors.*from_state_dict"),
      # NVlabs/edm2 snapshots: an EasyDict with ema = Precond over its UNet.
      "edm2": (nvlabs_format.EasyDict(ema=P("Precond", {}, ""), encoder=None),
               r"Precond.unet is missing; NVlabs/edm2.s Precond holds a UNet"),
      "future": (dict(ema=nvlabs_format.Call(
          nvlabs_format.Global("torch_utils.persistence", "_reconstruct_persistent_obj"),
          dict(type="class", version=7, module_src="", class_name="EDMPrecond",
               state={}))), r"version=7.*newer format is not supported"),
      "other_class": (dict(ema=P("SomethingElse", {}, "")), r"'SomethingElse'.*EDMPrecond"),
      "list": ([1, 2, 3], r"'ema' is a list, not an NVlabs/edm network"),
  }
  for name, (obj, pattern) in cases.items():
    path = tmp_path / f"{name}.pkl"
    data = nvlabs_format.dumps(obj)
    path.write_bytes(data)
    with pytest.raises(ValueError, match=pattern):
      pretrained.load_network(path)
  # A torch.save file with a bare state dict.
  torchio.save_torch_state_dict(tmp_path / "sd.pt", {"w": np.zeros(3, np.float32)})
  with pytest.raises(ValueError, match="bare state dict of 1 tensors"):
    pretrained.load_network(tmp_path / "sd.pt")
  with pytest.raises(FileNotFoundError, match="nope.pkl"):
    pretrained.load_network(tmp_path / "nope.pkl")


def test_weights_that_do_not_fit_the_configuration_are_named(tmp_path):
  cfg = CONFIGS["ve_ncsnpp"]
  sd = _state_dict(cfg)
  sd.pop("model.dec.8x8_aux_conv.bias")
  sd["model.extra.weight"] = np.zeros((2, 2), np.float32)
  sd["model.enc.8x8_conv.weight"] = np.zeros((16, 3, 1, 1), np.float32)
  path = tmp_path / "bad.pkl"
  path.write_bytes(nvlabs_format.network_pickle(
      cfg["class_name"], dict(cfg["attrs"]), "SongUNet", cfg["model_init_kwargs"], sd, ""))
  with pytest.raises(ValueError, match=r"missing 1 tensors \(model.dec.8x8_aux_conv.bias\)"
                     r", unexpected 1 \(model.extra.weight\)"):
    pretrained.load_network(path)
  del sd["model.extra.weight"]
  sd["model.dec.8x8_aux_conv.bias"] = np.zeros(3, np.float32)
  with pytest.raises(ValueError, match=r"wrong shape.*model.enc.8x8_conv.weight "
                     r"\(16, 3, 1, 1\) \(expected \(16, 3, 3, 3\)\)"):
    pretrained.from_state_dict(sd, "VEPrecond", img_resolution=8, img_channels=3,
                               **CONFIGS["ve_ncsnpp"]["kwargs"])


# ----------------------------------------------------------------------------- NVlabs' code

SAMPLE_SPECS = {  # make_pickle_fixtures.SAMPLES in edmjax's terms
    "edm": sampling.SamplerSpec("edm", num_steps=4),
    "ablation_vp": sampling.SamplerSpec("ablation", num_steps=4, solver="euler",
                                        discretization="vp", schedule="vp", scaling="vp"),
    "ablation_iddpm": sampling.SamplerSpec("ablation", num_steps=4, solver="heun",
                                           discretization="iddpm"),
}
_TORCH_PYTHON = os.environ.get("EDMJAX_TORCH_PYTHON")
_NVLABS_EDM = os.environ.get("EDMJAX_NVLABS_EDM")


@pytest.mark.skipif(not (_TORCH_PYTHON and _NVLABS_EDM),
                    reason="needs EDMJAX_TORCH_PYTHON (a Python with torch and click) and "
                    "EDMJAX_NVLABS_EDM (an NVlabs/edm checkout) to run NVlabs' own code")
def test_pickles_written_by_nvlabs_code(tmp_path):
  """NVlabs' own pickles load and sample as NVlabs' generate.py samplers do; NVlabs
  loads edmjax's state dicts back (strict); and rerunning the fixture script
  reproduces the committed fixture bit for bit."""
  script = str(HERE / "make_pickle_fixtures.py")
  subprocess.run([_TORCH_PYTHON, script, "--edm", _NVLABS_EDM, "--fixture",
                  str(tmp_path / "again.npz")], check=True, capture_output=True)
  again = np.load(tmp_path / "again.npz")
  assert sorted(again.files) == sorted(FIXTURE.files)
  for k in FIXTURE.files:
    np.testing.assert_array_equal(again[k], FIXTURE[k], err_msg=k)
  subprocess.run([_TORCH_PYTHON, script, "--edm", _NVLABS_EDM, "--pickles", str(tmp_path)],
                 check=True, capture_output=True)
  for name in CONFIGS:
    ref = np.load(tmp_path / f"{name}.npz")
    net = pretrained.load_network(tmp_path / f"{name}.pkl")
    labels = ref["labels"] if "labels" in ref else None
    got = jax.jit(lambda v, x, s, y, net=net: net.make_model(v)(x, s, y))(
        net.variables, ref["x"], ref["sigma"], labels)
    assert _rel(got, ref["D"]) < 1e-5, name
    assert "class EDMPrecond" in net.source  # NVlabs' real source, kept as text only
    # NVlabs' generate.py samplers from the same latents (float64 state, as NVlabs).
    # Up to 7 float32 network evaluations (each within ~4e-6) compound: 3e-5.
    z = ref["sample_latents"].astype(np.float64)
    y = ref["sample_labels"] if "sample_labels" in ref else None
    for key, spec in SAMPLE_SPECS.items():
      with jax.enable_x64(True):
        got = jax.jit(lambda v, z, y, spec=spec, net=net: sampling.sample(
            net.make_model(v), z, spec=spec, class_labels=y))(net.variables, z, y)
      assert _rel(got, ref[f"sample_{key}"]) < 3e-5, (name, key)
    pretrained.save_state_dict(tmp_path / f"{name}.pt", net)
  out = subprocess.run([_TORCH_PYTHON, script, "--edm", _NVLABS_EDM, "--check-state-dicts",
                        str(tmp_path)], check=True, capture_output=True, text=True)
  assert out.stdout.count("strict load ok") == len(CONFIGS), out.stdout
