"""pretrained.load_network on NVlabs/edm2 `Precond` pickles (written without torch).

The weights are those of tests/fixtures/edm2_reference.npz, whose outputs NVlabs/edm2's
own `Precond` computed from them (commit 4bf8162); the pickle is NVlabs' format as
`nvlabs_format` writes it, with a source text that must never run.
"""

import json
import os

import jax
import numpy as np
import pytest

import nvlabs_format
from edmjax import pretrained

FIXTURE = np.load(os.path.join(os.path.dirname(__file__), "..", "fixtures",
                               "edm2_reference.npz"))
POISON = "open({flag!r}, 'w').write('ran'); raise RuntimeError('executed')"


def _write(tmp_path, name, *, unet_class="UNet"):
  cfg = json.loads(str(FIXTURE["meta/configs"]))[name]
  prefix = f"{name}/sd/"
  sd = {k[len(prefix):]: FIXTURE[k] for k in FIXTURE.files if k.startswith(prefix)}
  src = POISON.format(flag=str(tmp_path / "executed.flag"))
  params, buffers, modules = nvlabs_format.module_tree(sd, src, containers=())
  unet_sd = {k[len("unet."):]: v for k, v in sd.items() if k.startswith("unet.")}
  up, ub, um = nvlabs_format.module_tree(unet_sd, src)
  precond_args = ("img_resolution", "img_channels", "label_dim")
  modules["unet"] = nvlabs_format.persistent(unet_class, nvlabs_format.module_state(
      up, ub, um, init_kwargs={k: v for k, v in cfg.items() if k != "logvar_channels"}),
      src)
  attrs = dict({k: cfg[k] for k in precond_args}, use_fp16=False, sigma_data=0.5)
  ema = nvlabs_format.persistent("Precond", nvlabs_format.module_state(
      params, buffers, modules, attrs, init_kwargs=dict(cfg, use_fp16=False)), src)
  path = tmp_path / f"edm2-{name}.pkl"
  path.write_bytes(nvlabs_format.dumps(dict(ema=ema, encoder=None)))
  return path, sd


@pytest.mark.parametrize("name", ["cond", "uncond"])
def test_edm2_precond_pickle_denoises_as_nvlabs(tmp_path, name):
  path, sd = _write(tmp_path, name)
  net = pretrained.load_network(path)
  assert (net.class_name, net.arch, net.precond) == ("Precond", "EDM2UNet", "edm2")
  assert (net.sigma_min, net.sigma_max) == (0.0, float("inf"))
  x = FIXTURE[f"{name}/x"].transpose(0, 2, 3, 1)
  sigma = FIXTURE[f"{name}/sigma"]
  labels = FIXTURE[f"{name}/labels"] if net.label_dim else None
  D = jax.jit(lambda v, x, s, y: net.make_model(v)(x, s, y))(net.variables, x, sigma, labels)
  # As tests/nn/test_edm2_unet.py: float32 rounding, measured at most 7e-7.
  np.testing.assert_allclose(D, FIXTURE[f"{name}/D"].transpose(0, 2, 3, 1), rtol=0,
                             atol=5e-6)
  back = net.state_dict()                      # NVlabs' Precond.state_dict() again
  assert set(back) == set(sd)
  for k, v in sd.items():
    np.testing.assert_array_equal(back[k], v, err_msg=k)
  kw = net.nvlabs_kwargs
  assert kw["sigma_data"] == 0.5 and kw["img_channels"] == x.shape[-1]
  assert not (tmp_path / "executed.flag").exists()


def test_edm2_pickle_errors_name_what_was_found(tmp_path):
  path, _ = _write(tmp_path, "cond", unet_class="SongUNet")
  with pytest.raises(ValueError, match="Precond.unet is .*SongUNet.*holds a UNet"):
    pretrained.load_network(path)
