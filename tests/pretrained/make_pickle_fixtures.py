"""NVlabs/edm's own denoiser outputs for tiny random-weight networks (needs torch).

Run with a Python that has torch, numpy and click, from any directory:

  python tests/pretrained/make_pickle_fixtures.py --edm /path/to/NVlabs/edm \
      --fixture tests/pretrained/nvlabs_denoisers.npz

For each configuration in `CONFIGS` (the four preconditionings over DDPM++, NCSN++
and ADM, conditional and not) it builds NVlabs' network with `training.networks`,
replaces every parameter by `nvlabs_format.random_weights(state_dict order, seed)`
(NCSN++'s Fourier `freqs` too; `resample_filter` and iDDPM's `u` stay NVlabs'), and
records NVlabs' `net(x, sigma, class_labels)` on fixed inputs, in float32 on the CPU.
The fixture holds numbers only: the configurations, the state-dict keys and shapes
(the weights are regenerated from the seed), NVlabs' buffers, the preconditioning's
attributes (`sigma_min`, ... as NVlabs computed them), inputs, outputs and
`round_sigma` values. It records the NVlabs/edm commit and the torch version.

`--pickles DIR` instead writes, per configuration, a pickle made by NVlabs' own code
(`pickle.dump(dict(ema=net, loss_fn=..., augment_pipe=None, dataset_kwargs=...))`,
as its `training_loop.py` does) and `<name>.npz` with the same inputs and outputs;
the optional test `test_pickles_written_by_nvlabs_code` uses it. Such pickles embed
NVlabs' source code: never commit them.
"""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import nvlabs_format  # noqa: E402  pylint: disable=wrong-import-position

_SONG = dict(model_channels=16, channel_mult=[1, 2], num_blocks=1, attn_resolutions=[4],
             dropout=0.0)
_DDPMPP = dict(_SONG, embedding_type="positional", encoder_type="standard",
               decoder_type="standard", channel_mult_noise=1, resample_filter=[1, 1])
_NCSNPP = dict(_SONG, embedding_type="fourier", encoder_type="residual",
               decoder_type="standard", channel_mult_noise=2, resample_filter=[1, 3, 3, 1])
_ADM = dict(model_channels=32, channel_mult=[1, 4], num_blocks=1, attn_resolutions=[4],
            dropout=0.0)  # 128 channels at 4x4: two attention heads

CONFIGS = [
    dict(name="edm_ddpmpp_cond", class_name="EDMPrecond", label_dim=10,
         kwargs=dict(model_type="SongUNet", augment_dim=9, **_DDPMPP),
         sigma=[0.01, 0.7, 35.0]),
    dict(name="vp_ddpmpp", class_name="VPPrecond", label_dim=0,
         kwargs=dict(model_type="SongUNet", augment_dim=9, **_DDPMPP),
         sigma=[0.002, 0.5, 80.0]),
    dict(name="ve_ncsnpp", class_name="VEPrecond", label_dim=0,
         kwargs=dict(model_type="SongUNet", **_NCSNPP), sigma=[0.03, 2.0, 90.0]),
    dict(name="iddpm_adm_cond", class_name="iDDPMPrecond", label_dim=10,
         kwargs=dict(model_type="DhariwalUNet", **_ADM), sigma=[0.0065, 1.0, 79.0]),
    dict(name="edm_adm", class_name="EDMPrecond", label_dim=0,
         kwargs=dict(model_type="DhariwalUNet", sigma_data=0.6, **_ADM),
         sigma=[0.02, 3.0, 60.0]),
]
IMG_RESOLUTION, IMG_CHANNELS, BATCH = 8, 3, 3


def _git_head(path):
  try:
    return subprocess.check_output(["git", "-C", path, "rev-parse", "HEAD"],
                                   text=True).strip()
  except Exception:  # pylint: disable=broad-except
    return "unknown"


def _build(networks, cfg):
  cls = getattr(networks, cfg["class_name"])
  return cls(img_resolution=IMG_RESOLUTION, img_channels=IMG_CHANNELS,
             label_dim=cfg["label_dim"], **cfg["kwargs"])


def _inputs(cfg, seed):
  rng = np.random.default_rng(seed)
  x = rng.standard_normal((BATCH, IMG_RESOLUTION, IMG_RESOLUTION, IMG_CHANNELS))
  sigma = np.asarray(cfg["sigma"], np.float32)
  x = (x * np.sqrt(1 + sigma[:, None, None, None].astype(np.float64)**2)).astype(np.float32)
  labels = None
  if cfg["label_dim"]:
    labels = np.eye(cfg["label_dim"], dtype=np.float32)[rng.integers(0, cfg["label_dim"],
                                                                       BATCH)]
  return x, sigma, labels


def _attrs(net):
  out = {}
  for k, v in vars(net).items():
    if k.startswith("_") or k == "training":
      continue
    out[k] = float(v) if isinstance(v, float) else v
  return out


def run(edm, seed0=0):
  """(fixture arrays, metadata, nets) for every configuration."""
  sys.path.insert(0, edm)
  import torch  # pylint: disable=import-outside-toplevel
  from training import networks  # pylint: disable=import-outside-toplevel
  arrays, meta, nets = {}, dict(reference="NVlabs/edm", commit=_git_head(edm),
                                torch=torch.__version__, configs=[]), {}
  for i, cfg in enumerate(CONFIGS):
    torch.manual_seed(0)
    net = _build(networks, cfg).eval().requires_grad_(False)
    sd = net.state_dict()
    keys = [(k, list(v.shape)) for k, v in sd.items()]
    weights = nvlabs_format.random_weights(keys, seed=seed0 + i)
    full = {k: torch.from_numpy(weights[k]) if k in weights else v for k, v in sd.items()}
    net.load_state_dict(full, strict=True)
    x, sigma, labels = _inputs(cfg, seed=100 + i)
    with torch.no_grad():
      def call(lab):
        d = net(torch.from_numpy(x).permute(0, 3, 1, 2), torch.from_numpy(sigma),
                None if lab is None else torch.from_numpy(lab))
        return d.permute(0, 2, 3, 1).numpy()
      p = cfg["name"]
      arrays[f"{p}/x"], arrays[f"{p}/sigma"] = x, sigma
      arrays[f"{p}/D"] = call(labels)
      if labels is not None:
        arrays[f"{p}/labels"] = labels
        arrays[f"{p}/D_nolabels"] = call(None)
      grid = np.geomspace(1e-3, 3e4, 41)
      arrays[f"{p}/round_grid"] = grid
      arrays[f"{p}/round_sigma"] = net.round_sigma(torch.from_numpy(grid)).numpy()
    for k, v in sd.items():
      if k not in weights:
        arrays[f"{p}/buffer/{k}"] = v.numpy()
    meta["configs"].append(dict(cfg, seed=seed0 + i, keys=keys, attrs=_attrs(net),
                                init_kwargs=dict(net._init_kwargs),  # pylint: disable=protected-access
                                model_init_kwargs=dict(net.model._init_kwargs)))  # pylint: disable=protected-access
    nets[p] = net
  return arrays, meta, nets


# NVlabs' samplers on the NVlabs networks: (name, sampler, kwargs) per configuration.
SAMPLES = {
    "edm": ("edm_sampler", dict(num_steps=4)),
    "ablation_vp": ("ablation_sampler", dict(num_steps=4, solver="euler", discretization="vp",
                                             schedule="vp", scaling="vp")),
    "ablation_iddpm": ("ablation_sampler", dict(num_steps=4, solver="heun",
                                                discretization="iddpm")),
}


def nvlabs_samples(edm, net, cfg):
  """NVlabs' generate.py samplers (deterministic) from fixed latents, in float64 as there."""
  sys.path.insert(0, edm)
  import torch  # pylint: disable=import-outside-toplevel
  import generate  # pylint: disable=import-outside-toplevel
  rng = np.random.default_rng(7)
  z = rng.standard_normal((2, IMG_RESOLUTION, IMG_RESOLUTION, IMG_CHANNELS))
  labels = (np.eye(cfg["label_dim"])[[1, 3]] if cfg["label_dim"] else None)
  out = {"sample_latents": z.astype(np.float32)}
  if labels is not None:
    out["sample_labels"] = labels.astype(np.float32)
  for key, (fn, kwargs) in SAMPLES.items():
    with torch.no_grad():
      x = getattr(generate, fn)(
          net, torch.from_numpy(z.astype(np.float32)).permute(0, 3, 1, 2).to(torch.float64),
          None if labels is None else torch.from_numpy(labels.astype(np.float32)), **kwargs)
    out[f"sample_{key}"] = x.permute(0, 2, 3, 1).numpy()
  return out


def check(edm, folder):
  """NVlabs loads each `<name>.pt` strictly and reproduces `<name>.npz`'s outputs."""
  sys.path.insert(0, edm)
  import torch  # pylint: disable=import-outside-toplevel
  from training import networks  # pylint: disable=import-outside-toplevel
  bad = 0
  for cfg in CONFIGS:
    p = cfg["name"]
    net = _build(networks, cfg).eval().requires_grad_(False)
    net.load_state_dict(torch.load(os.path.join(folder, f"{p}.pt")), strict=True)
    ref = np.load(os.path.join(folder, f"{p}.npz"))
    with torch.no_grad():
      d = net(torch.from_numpy(ref["x"]).permute(0, 3, 1, 2), torch.from_numpy(ref["sigma"]),
              torch.from_numpy(ref["labels"]) if "labels" in ref else None)
    err = float((d.permute(0, 2, 3, 1).numpy() - ref["D"]).__abs__().max()
                / np.abs(ref["D"]).max())
    ok = err < 1e-5
    bad += not ok
    print(f"{p}: strict load ok, max relative difference {err:.2e}"
          f"{'' if ok else ' (TOO LARGE)'}")
  sys.exit(1 if bad else 0)


def main(argv=None):
  import click  # pylint: disable=import-outside-toplevel

  @click.command()
  @click.option("--edm", required=True, type=click.Path(exists=True, file_okay=False),
                help="NVlabs/edm checkout.")
  @click.option("--fixture", type=click.Path(dir_okay=False), help="Write the .npz fixture.")
  @click.option("--pickles", type=click.Path(file_okay=False),
                help="Write NVlabs-made pickles and their outputs here (never commit).")
  @click.option("--check-state-dicts", type=click.Path(exists=True, file_okay=False),
                help="Load <name>.pt (written by edmjax) into NVlabs' networks, strict, "
                "and check their outputs against <name>.npz.")
  def cli(edm, fixture, pickles, check_state_dicts):
    if check_state_dicts:
      check(os.path.abspath(edm), check_state_dicts)
      return
    arrays, meta, nets = run(os.path.abspath(edm))
    if fixture:
      np.savez_compressed(
          fixture, meta=np.frombuffer(json.dumps(meta, sort_keys=True).encode(), np.uint8),
          **arrays)
      print(f"wrote {fixture}")
    if pickles:
      os.makedirs(pickles, exist_ok=True)
      from training import loss  # pylint: disable=import-outside-toplevel
      for cfg in meta["configs"]:
        p = cfg["name"]
        loss_fn = getattr(loss, cfg["class_name"].replace("Precond", "Loss").replace(
            "iDDPM", "EDM"))()
        data = dict(ema=nets[p], loss_fn=loss_fn, augment_pipe=None,
                    dataset_kwargs=dict(class_name="training.dataset.ImageFolderDataset",
                                        path="cifar10-32x32.zip", use_labels=True,
                                        xflip=False, cache=True, resolution=8,
                                        max_size=50000))
        with open(os.path.join(pickles, f"{p}.pkl"), "wb") as f:
          pickle.dump(data, f)
        np.savez(os.path.join(pickles, f"{p}.npz"),
                 **{k[len(p) + 1:]: v for k, v in arrays.items() if k.startswith(p + "/")},
                 **nvlabs_samples(edm, nets[p], cfg))
      with open(os.path.join(pickles, "meta.json"), "w") as f:
        json.dump(meta, f)
      print(f"wrote {len(meta['configs'])} pickles to {pickles}")

  cli(argv)


if __name__ == "__main__":
  main()
