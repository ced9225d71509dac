#!/usr/bin/env python3
"""Writes the golden reference fixtures: NVlabs/edm, k-diffusion and diffusers on fixed inputs.

The parity tests (`tests/reference/test_*.py`) compare edmjax with these numbers and
need neither torch nor the references. This script needs both, and edmjax's own
virtualenv to draw the noise edmjax's samplers draw (the references are handed the
same noise). Run from the repository root:

  /work/refvenv/bin/python tests/reference/make_fixtures.py \\
      --nvlabs /work/refs/NVlabs+edm --kdiffusion /work/refs/crowsonkb+k-diffusion

  # the reproducibility check: regenerate in memory, compare with the committed
  # fixtures array by array (exact), write nothing; exit 1 on any difference
  /work/refvenv/bin/python tests/reference/make_fixtures.py --check \\
      --nvlabs /work/refs/NVlabs+edm --kdiffusion /work/refs/crowsonkb+k-diffusion

Options: `--only GROUP[,GROUP]` (the groups below), `--edmjax-python PATH` (default
`.venv/bin/python` of this checkout). About two minutes on two CPU cores.

Pinned references (each fixture's `meta` records them, with the sha256 of every
reference file used):

* NVlabs/edm at commit 008a4e5 (its newest; `generate.py` has β_d = 19.9 for the VP
  range since 62072d2), a git snapshot (not pip-installable); `generate.py` needs
  click, `training/` needs `torch_utils` from the same snapshot.
* k-diffusion at git commit 4601bf0. Its `sampling.py` is byte-identical to the
  one in the pip release `k-diffusion==0.1.1.post1` (sha256 4c5c2d92…). The
  package's `__init__` imports torchvision and more through `utils`; this script
  loads `k_diffusion/sampling.py` alone under a stand-in `k_diffusion.utils` that
  provides the one function it uses, `append_dims` (written here).
* diffusers 0.42.1 (pip), torch 2.13.0 CPU, torchsde 0.2.6, scipy 1.17.

Precision. Every reference runs in float64: torch's default dtype is set to float64
(k-diffusion builds σ schedules and λ from `torch.linspace` / `torch.tensor` in the
default dtype), and where a reference hard-codes `torch.float32` (NVlabs' `*Precond.
forward` casts x and σ; diffusers builds β and ᾱ with `dtype=torch.float32`) its
module is run with a `torch` whose `float32` is float64, so that its *formulas* are
compared at 1e-12. The as-is float32 values are recorded beside them where they
differ from the float64 formulas (NVlabs' iDDPM ᾱ_j: `j` is an int64 tensor, so
`0.5 π j / M / (C_2 + 1)` promotes to the default float32; diffusers' β and ᾱ
tables), and the tests state those differences. The networks run in float32, as
they do in NVlabs (attention included).

Groups and what they hold:

* nvlabs_samplers: `edm_sampler` (deterministic, churn, iDDPM rounding with churn)
  and every `ablation_sampler` combination (2 solvers × 4 discretizations × 3
  schedules × 2 scalings, default ranges), α ≠ 1, churn; the iDDPM u table in
  float64 and as-is (float32 ᾱ).
* nvlabs_precond: c_skip, c_out, c_in, c_noise of VPPrecond, VEPrecond,
  iDDPMPrecond, EDMPrecond (probed with a stub network F = 0 and F = 1).
* nvlabs_losses: EDMLoss, VPLoss, VELoss with handed σ draws and noise.
* kdiffusion: σ schedules; every sampler edmjax has, noise handed through
  `noise_sampler` (and `torch.randn_like` for the churn of Euler/Heun/DPM-2);
  `sample_dpm_adaptive` run on each sample alone (edmjax controls the step size per
  sample); correlations of torchsde Brownian-tree increments over nested and
  disjoint intervals (the law `dpmpp_sde_sampler` draws).
* diffusers_ddpm: `DDPMScheduler` over all T = 20 steps, β and β̃ variances,
  clip_sample on/off, linear and squaredcos_cap_v2 β (four cases covering every
  level of each), noise handed through `randn_tensor`.
* diffusers_ddim: `DDIMScheduler` (T = 50) for leading / trailing / linspace, N = 10
  and 7, η = 0 and η = 0.5 with `variance_noise`, with the (t, prev_t) of every
  step.
* nvlabs_networks: SongUNet (DDPM++ with encoder standard / skip / residual and
  decoder standard / skip, NCSN++) and DhariwalUNet forwards with `refdata.
  deterministic_weights` (so only inputs and outputs are stored).
* nvlabs_augment: AugmentPipe with every transformation on, its random draws
  replaced by given values (edmjax's per-sample uniforms mapped to NVlabs' calls).

A fixture is numbers the reference produced on the recorded inputs, plus a JSON
`meta` entry; no reference code is stored.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib.util
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import types

import numpy as np

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import refdata  # noqa: E402  (tests/reference/refdata.py: numpy only)

ROOT = HERE.parents[1]
GROUPS = ("nvlabs_samplers", "nvlabs_precond", "nvlabs_losses", "kdiffusion",
          "diffusers_ddpm", "diffusers_ddim", "nvlabs_networks", "nvlabs_augment")

# The Gaussian mixture every sampler fixture denoises (K = 3 components, 4×4×1).
GMM_MEANS = (np.array([-1.2, 0.4, 1.5])[:, None, None, None]
             * np.linspace(0.7, 1.3, 16).reshape(1, 4, 4, 1))
GMM_STDS = np.array([0.3, 0.15, 0.4])
GMM_WEIGHTS = np.array([0.5, 0.2, 0.3])
IMAGE = (4, 4, 1)
BATCH = 3


# ----------------------------------------------------------------------------- noise


def draw_noise_main(request_path, out_path):
  """Runs under edmjax's python: edmjax's per-sample draws for each request (float64)."""
  import jax
  jax.config.update("jax_enable_x64", True)
  import jax.numpy as jnp
  from edmjax import keys

  with open(request_path) as f:
    requests = json.load(f)
  out = {}
  for name, r in requests.items():
    k = keys.per_sample_keys(jax.random.key(r["seed"]), r["batch"])
    x = jnp.zeros((r["batch"],) + tuple(r["shape"]), jnp.float64)
    out[name] = np.stack([np.stack([np.asarray(keys.step_noise(k, i, x, draw=j))
                                    for j in range(r["draws"])])
                          for i in range(r["steps"])])      # (steps, draws, B, ...)
  np.savez(out_path, **out)


def edmjax_noise(python, requests):
  """{name: (steps, draws, B, ...)} of edmjax's draws, via a subprocess of edmjax's venv."""
  if not requests:
    return {}
  with tempfile.TemporaryDirectory() as tmp:
    req, out = os.path.join(tmp, "req.json"), os.path.join(tmp, "noise.npz")
    with open(req, "w") as f:
      json.dump(requests, f)
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(ROOT))
    subprocess.run([python, __file__, "--draw-noise", req, out], check=True, env=env)
    with np.load(out) as f:
      return {k: f[k] for k in f.files}


# Every stochastic case stores the first two steps of the noise it was handed
# ('<case>/noise_head', (2, [draws,] B, ...)): the tests check them against edmjax's
# own draws, so a changed key rule shows as that, not as a sampler mismatch.


def noise_request(seed, steps, draws=1, batch=BATCH, shape=IMAGE):
  return {"seed": seed, "steps": steps, "draws": draws, "batch": batch,
          "shape": list(shape)}


# ----------------------------------------------------------------------------- helpers


def sha256_of(path):
  with open(path, "rb") as f:
    return hashlib.sha256(f.read()).hexdigest()


def git_commit(path):
  return subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], check=True,
                        capture_output=True, text=True).stdout.strip()


class TorchProxy(types.ModuleType):
  """`torch` with some attributes replaced (float32 → float64, injected noise)."""

  def __init__(self, torch, **overrides):
    super().__init__("torch_proxy")
    self._torch = torch
    self._overrides = overrides

  def __getattr__(self, name):
    if name in self._overrides:
      return self._overrides[name]
    return getattr(self._torch, name)


@contextlib.contextmanager
def patched(module, name, value):
  old = getattr(module, name)
  setattr(module, name, value)
  try:
    yield
  finally:
    setattr(module, name, old)


class Queue:
  """Returns the given arrays one per call, as torch tensors (a handed noise source)."""

  def __init__(self, torch, arrays):
    self.torch, self.arrays, self.calls = torch, list(arrays), 0

  def __call__(self, *args, **kwargs):
    if self.calls >= len(self.arrays):
      raise RuntimeError(f"noise queue exhausted after {self.calls} draws")
    a = self.arrays[self.calls]
    self.calls += 1
    return self.torch.from_numpy(np.ascontiguousarray(a))


class GMMNet:
  """The Gaussian-mixture denoiser as a reference 'network' (NHWC, float64)."""

  def __init__(self, torch, sigma_min=0.0, sigma_max=float("inf"), round_sigma=None):
    self.torch = torch
    self.sigma_min, self.sigma_max = sigma_min, sigma_max
    self._round = round_sigma
    self.calls = 0

  def round_sigma(self, sigma):
    sigma = self.torch.as_tensor(sigma)
    return sigma if self._round is None else self._round(sigma)

  def __call__(self, x, sigma, class_labels=None, **kwargs):
    self.calls += 1
    sigma = self.torch.as_tensor(sigma, dtype=self.torch.float64).reshape(-1)
    sigma = np.broadcast_to(sigma.numpy(), (x.shape[0],))
    out = refdata.gmm_denoise(x.detach().numpy(), sigma, GMM_MEANS, GMM_STDS, GMM_WEIGHTS)
    return self.torch.from_numpy(out)


def t64(torch, a):
  return torch.from_numpy(np.ascontiguousarray(np.asarray(a, np.float64)))


def latents(seed, batch=BATCH, shape=IMAGE):
  return np.random.default_rng(seed).standard_normal((batch,) + tuple(shape))


# ----------------------------------------------------------------------------- loaders


def load_nvlabs(path):
  path = pathlib.Path(path).resolve()
  sys.path.insert(0, str(path))
  import generate  # noqa: F401  (NVlabs' generate.py: needs click)
  from training import augment, loss, networks
  files = ("generate.py", "training/networks.py", "training/loss.py",
           "training/augment.py")
  info = {"reference": "NVlabs/edm", "commit": git_commit(path),
          "file_sha256": {f: sha256_of(path / f) for f in files}}
  return types.SimpleNamespace(generate=generate, networks=networks, loss=loss,
                               augment=augment, info=info)


def load_kdiffusion(path):
  """k_diffusion/sampling.py under a stand-in package whose `utils` has append_dims."""
  path = pathlib.Path(path).resolve()
  package = types.ModuleType("k_diffusion")
  package.__path__ = [str(path / "k_diffusion")]
  utils = types.ModuleType("k_diffusion.utils")

  def append_dims(x, target_dims):
    """Appends trailing singleton dimensions to `x` until it has `target_dims`."""
    missing = target_dims - x.ndim
    if missing < 0:
      raise ValueError(f"x has {x.ndim} dims, more than target_dims={target_dims}")
    return x.reshape(x.shape + (1,) * missing)

  utils.append_dims = append_dims
  package.utils = utils
  sys.modules["k_diffusion"] = package
  sys.modules["k_diffusion.utils"] = utils
  spec = importlib.util.spec_from_file_location("k_diffusion.sampling",
                                                path / "k_diffusion" / "sampling.py")
  sampling = importlib.util.module_from_spec(spec)
  sys.modules["k_diffusion.sampling"] = sampling
  spec.loader.exec_module(sampling)
  info = {"reference": "crowsonkb/k-diffusion", "commit": git_commit(path),
          "file_sha256": {"k_diffusion/sampling.py":
                          sha256_of(path / "k_diffusion" / "sampling.py")},
          "pip_release_with_identical_sampling_py": "k-diffusion==0.1.1.post1"}
  return sampling, info


def versions(torch):
  import scipy
  out = {"torch": torch.__version__, "numpy": np.__version__, "scipy": scipy.__version__}
  try:
    import torchsde
    out["torchsde"] = torchsde.__version__
  except ImportError:
    pass
  return out


# ----------------------------------------------------------------------------- groups


def group_nvlabs_samplers(ctx):
  torch, nv = ctx.torch, ctx.nvlabs
  gen = nv.generate
  z = latents(1)
  cases = []

  def edm(name, noise_seed=None, net=None, **kw):
    cases.append(dict(name=name, function="edm_sampler", kwargs=kw, noise_seed=noise_seed,
                      net=net or "continuous"))

  def ablation(name, noise_seed=None, **kw):
    cases.append(dict(name=name, function="ablation_sampler", kwargs=kw,
                      noise_seed=noise_seed, net="continuous"))

  edm("edm_18")
  edm("edm_6_rho3", num_steps=6, sigma_min=0.02, sigma_max=10.0, rho=3.0)
  edm("edm_churn", noise_seed=11, num_steps=10, S_churn=20.0, S_min=0.05, S_max=50.0,
      S_noise=1.003)
  edm("edm_iddpm_churn", noise_seed=12, net="iddpm", num_steps=8, S_churn=10.0)
  for solver in ("euler", "heun"):
    for disc in ("vp", "ve", "iddpm", "edm"):
      for sched in ("vp", "ve", "linear"):
        for scal in ("vp", "none"):
          ablation(f"ablation_{solver}_{disc}_{sched}_{scal}", num_steps=8, solver=solver,
                   discretization=disc, schedule=sched, scaling=scal)
  ablation("ablation_alpha0.5_edm", num_steps=8, alpha=0.5)
  ablation("ablation_alpha0.7_vp_vp_vp", num_steps=8, alpha=0.7, discretization="vp",
           schedule="vp", scaling="vp")
  ablation("ablation_churn_vp_vp_vp", noise_seed=13, num_steps=8, discretization="vp",
           schedule="vp", scaling="vp", S_churn=15.0)
  ablation("ablation_churn_euler_ve", noise_seed=14, num_steps=8, solver="euler",
           discretization="ve", schedule="ve", S_churn=30.0, S_min=0.05, S_max=20.0,
           S_noise=1.007)
  ablation("ablation_churn_alpha0.6_edm", noise_seed=15, num_steps=8, alpha=0.6,
           S_churn=8.0)

  requests = {c["name"]: noise_request(c["noise_seed"], c["kwargs"]["num_steps"])
              for c in cases if c["noise_seed"] is not None}
  noise = edmjax_noise(ctx.edmjax_python, requests)

  # iDDPM: NVlabs' iDDPMPrecond (its u table and round_sigma), formulas in float64.
  with patched(nv.networks, "torch", TorchProxy(torch, float32=torch.float64)):
    iddpm = nv.networks.iDDPMPrecond(img_resolution=4, img_channels=1,
                                     model_type="DhariwalUNet", model_channels=8,
                                     channel_mult=[1], num_blocks=1, attn_resolutions=[])
  u64 = iddpm.u.numpy().copy()
  arrays = {"latents": z, "gmm_means": GMM_MEANS, "gmm_stds": GMM_STDS,
            "gmm_weights": GMM_WEIGHTS, "iddpm_u_float64": u64}
  for c in cases:
    kw = dict(c["kwargs"])
    if c["net"] == "iddpm":
      def round_sigma(s):
        with patched(nv.networks, "torch", TorchProxy(torch, float32=torch.float64)):
          return iddpm.round_sigma(s)
      net = GMMNet(torch, float(iddpm.sigma_min), float(iddpm.sigma_max), round_sigma)
      c["sigma_range"] = [max(kw.get("sigma_min", 0.002), net.sigma_min),
                          min(kw.get("sigma_max", 80.0), net.sigma_max)]
    else:
      net = GMMNet(torch)
    if c["noise_seed"] is not None:
      n = noise[c["name"]][:, 0]
      arrays[f"{c['name']}/noise_head"] = n[:2]
      randn_like = Queue(torch, n)
    else:
      randn_like = torch.randn_like
    fn = gen.edm_sampler if c["function"] == "edm_sampler" else gen.ablation_sampler
    out = fn(net, t64(torch, z), randn_like=randn_like, **kw)
    arrays[f"{c['name']}/out"] = out.numpy()

  # The iDDPM table as NVlabs computes it as-is: ᾱ_j in the default float32.
  torch.set_default_dtype(torch.float32)
  try:
    M, C_1, C_2 = 1000, 0.001, 0.008
    u = torch.zeros(M + 1, dtype=torch.float64)
    alpha_bar = lambda j: (0.5 * np.pi * j / M / (C_2 + 1)).sin() ** 2  # noqa: E731
    for j in torch.arange(M, 0, -1):
      u[j - 1] = ((u[j] ** 2 + 1) / (alpha_bar(j - 1) / alpha_bar(j)).clip(min=C_1) - 1).sqrt()
    arrays["iddpm_u_ablation_as_is"] = u.numpy()  # the loop of ablation_sampler
    as_is = nv.networks.iDDPMPrecond(img_resolution=4, img_channels=1,
                                     model_type="DhariwalUNet", model_channels=8,
                                     channel_mult=[1], num_blocks=1, attn_resolutions=[])
    arrays["iddpm_u_precond_as_is"] = as_is.u.numpy().astype(np.float64)
  finally:
    torch.set_default_dtype(torch.float64)
  meta = dict(nv.info, cases=cases, notes=(
      "GMMNet: the closed-form Gaussian-mixture denoiser (tests/reference/refdata.py) "
      "with sigma_min=0, sigma_max=inf unless net='iddpm' (iDDPMPrecond's u table and "
      "round_sigma in float64). randn_like hands edmjax's step noise (noise[i] at step "
      "i, from edmjax.keys with jax.random.key(noise_seed))."))
  return meta, arrays


def group_nvlabs_precond(ctx):
  torch, nv = ctx.torch, ctx.nvlabs
  sigma = np.array([0.002, 0.0064, 0.01, 0.05, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 40.0, 80.0])
  arrays = {"sigma": sigma}

  class Stub(torch.nn.Module):
    def __init__(self, channels, value):
      super().__init__()
      self.channels, self.value, self.seen = channels, value, None

    def forward(self, x, noise_labels, class_labels=None, **kwargs):
      self.seen = (x.detach().clone(), noise_labels.detach().clone())
      shape = (x.shape[0], self.channels) + tuple(x.shape[2:])
      return torch.full(shape, float(self.value), dtype=x.dtype)

  small = dict(model_channels=8, channel_mult=[1], num_blocks=1, attn_resolutions=[])
  precs = {
      "vp": (nv.networks.VPPrecond, dict(model_type="SongUNet", **small), 1),
      "ve": (nv.networks.VEPrecond, dict(model_type="SongUNet", **small), 1),
      "iddpm": (nv.networks.iDDPMPrecond, dict(model_type="DhariwalUNet", **small), 2),
      "edm": (nv.networks.EDMPrecond, dict(model_type="SongUNet", sigma_data=0.5, **small),
              1),
  }
  x = torch.ones((len(sigma), 1, 1, 1), dtype=torch.float64)
  with patched(nv.networks, "torch", TorchProxy(torch, float32=torch.float64)):
    for name, (cls, kw, out_mult) in precs.items():
      net = cls(img_resolution=4, img_channels=1, **kw)
      results = []
      for value in (0.0, 1.0):
        net.model = Stub(out_mult, value)
        d = net(x, t64(torch, sigma)).reshape(-1).numpy()
        results.append((d, net.model.seen))
      (d0, (x_in, c_noise)), (d1, _) = results
      arrays[f"{name}/c_skip"] = d0            # D = c_skip · 1 + c_out · F
      arrays[f"{name}/c_out"] = d1 - d0
      arrays[f"{name}/c_in"] = x_in.reshape(-1).numpy()
      arrays[f"{name}/c_noise"] = c_noise.reshape(-1).numpy()
  meta = dict(nv.info, cases=list(precs), notes=(
      "Each *Precond.forward run with a stub network (F = 0, then F = 1) on x = 1 and "
      "the formulas in float64 (the module's torch.float32 mapped to float64): "
      "c_skip = D(F=0), c_out = D(F=1) − D(F=0), c_in and c_noise as the stub saw them. "
      "Default constructor arguments (VP β_d 19.9, β_min 0.1, M 1000; EDM σ_data 0.5; "
      "iDDPM C_1 0.001, C_2 0.008, M 1000)."))
  return meta, arrays


def group_nvlabs_losses(ctx):
  torch, nv = ctx.torch, ctx.nvlabs
  rng = np.random.default_rng(5)
  images = rng.uniform(-1, 1, (BATCH,) + IMAGE)
  arrays = {"images": images, "gmm_means": GMM_MEANS, "gmm_stds": GMM_STDS,
            "gmm_weights": GMM_WEIGHTS}
  losses = {"edm": nv.loss.EDMLoss(), "vp": nv.loss.VPLoss(), "ve": nv.loss.VELoss()}
  for i, (name, loss_fn) in enumerate(losses.items()):
    draw = rng.standard_normal((BATCH, 1, 1, 1)) if name == "edm" else \
        rng.uniform(0, 1, (BATCH, 1, 1, 1))
    noise = rng.standard_normal((BATCH,) + IMAGE)
    net = GMMNet(torch)
    seen = {}

    def recording(x, sigma, labels=None, augment_labels=None, net=net, seen=seen):
      seen["sigma"] = sigma.reshape(-1).numpy().copy()
      return net(x, sigma)

    proxy = TorchProxy(torch, randn=Queue(torch, [draw]), rand=Queue(torch, [draw]),
                       randn_like=Queue(torch, [noise]))
    with patched(nv.loss, "torch", proxy):
      loss = loss_fn(recording, t64(torch, images), None)
    arrays[f"{name}/draw"] = draw.reshape(-1)
    arrays[f"{name}/noise"] = noise
    arrays[f"{name}/sigma"] = seen["sigma"]
    arrays[f"{name}/loss"] = loss.numpy()
  meta = dict(nv.info, cases=list(losses), notes=(
      "Default constructor arguments. The loss's one torch.randn / torch.rand call "
      "(the σ draw, (B,1,1,1)) and its torch.randn_like (unit noise n) return "
      "'draw' and 'noise'; 'sigma' is the σ the loss handed the network."))
  return meta, arrays


def _kd_cases():
  """(name, k-diffusion function, edmjax function, kwargs, noise kind, steps)."""
  c = []

  def add(name, kd, ej, kw, noise=None, table=("karras", 10, 0.002, 80.0, 7.0)):
    c.append(dict(name=name, kd=kd, edmjax=ej, kwargs=kw, noise=noise, table=table))

  add("heun_18", "sample_heun", "solve_from:heun", {}, table=("karras", 18, 0.002, 80.0, 7.0))
  add("heun_churn", "sample_heun", "solve_from:heun",
      dict(s_churn=20.0, s_tmin=0.05, s_tmax=50.0, s_noise=1.003), noise="randn_like")
  add("euler", "sample_euler", "solve_from:euler", {})
  add("euler_churn", "sample_euler", "solve_from:euler", dict(s_churn=15.0),
      noise="randn_like")
  add("euler_ancestral_eta1", "sample_euler_ancestral", "euler_ancestral_sampler",
      dict(eta=1.0), noise="sampler")
  add("euler_ancestral_eta0.5", "sample_euler_ancestral", "euler_ancestral_sampler",
      dict(eta=0.5, s_noise=1.01), noise="sampler")
  add("dpm_2", "sample_dpm_2", "dpm_2_sampler", {})
  add("dpm_2_churn", "sample_dpm_2", "dpm_2_sampler",
      dict(s_churn=12.0, s_tmin=0.1, s_tmax=30.0, s_noise=1.005), noise="randn_like")
  add("dpm_2_ancestral_eta1", "sample_dpm_2_ancestral", "dpm_2_ancestral_sampler",
      dict(eta=1.0), noise="sampler")
  add("dpm_2_ancestral_eta0.5", "sample_dpm_2_ancestral", "dpm_2_ancestral_sampler",
      dict(eta=0.5, s_noise=0.99), noise="sampler")
  add("lms_4", "sample_lms", "lms_sampler", dict(order=4))
  add("lms_2", "sample_lms", "lms_sampler", dict(order=2),
      table=("exponential", 12, 0.01, 20.0))
  add("dpmpp_2s_ancestral_eta1", "sample_dpmpp_2s_ancestral", "dpmpp_2s_ancestral_sampler",
      dict(eta=1.0), noise="sampler")
  add("dpmpp_2s_ancestral_eta0", "sample_dpmpp_2s_ancestral", "dpmpp_2s_ancestral_sampler",
      dict(eta=0.0))
  add("dpmpp_sde_eta1", "sample_dpmpp_sde", "dpmpp_sde_sampler", dict(eta=1.0),
      noise="sampler_pair")
  add("dpmpp_sde_eta0.7_r0.4", "sample_dpmpp_sde", "dpmpp_sde_sampler",
      dict(eta=0.7, r=0.4, s_noise=1.01), noise="sampler_pair")
  add("dpmpp_sde_eta0", "sample_dpmpp_sde", "dpmpp_sde_sampler", dict(eta=0.0),
      noise="sampler_pair")
  add("dpmpp_2m_18", "sample_dpmpp_2m", "dpmpp_2m_sampler", {},
      table=("karras", 18, 0.002, 80.0, 7.0))
  add("dpmpp_2m_6_rho3", "sample_dpmpp_2m", "dpmpp_2m_sampler", {},
      table=("karras", 6, 0.02, 10.0, 3.0))
  for solver in ("midpoint", "heun"):
    add(f"dpmpp_2m_sde_{solver}_eta1", "sample_dpmpp_2m_sde", "dpmpp_2m_sde_sampler",
        dict(eta=1.0, solver_type=solver), noise="sampler")
    add(f"dpmpp_2m_sde_{solver}_eta0", "sample_dpmpp_2m_sde", "dpmpp_2m_sde_sampler",
        dict(eta=0.0, solver_type=solver))
  add("dpmpp_2m_sde_heun_eta0.5_poly", "sample_dpmpp_2m_sde", "dpmpp_2m_sde_sampler",
      dict(eta=0.5, solver_type="heun", s_noise=1.02), noise="sampler",
      table=("polyexponential", 9, 0.005, 40.0, 2.0))
  add("dpmpp_3m_sde_eta1", "sample_dpmpp_3m_sde", "dpmpp_3m_sde_sampler", dict(eta=1.0),
      noise="sampler")
  add("dpmpp_3m_sde_eta0", "sample_dpmpp_3m_sde", "dpmpp_3m_sde_sampler", dict(eta=0.0))
  add("dpmpp_3m_sde_eta0.5_vp", "sample_dpmpp_3m_sde", "dpmpp_3m_sde_sampler",
      dict(eta=0.5), noise="sampler", table=("vp", 9))
  for n in (10, 12, 7):
    add(f"dpm_fast_{n}", "sample_dpm_fast", "dpm_fast_sampler",
        dict(n=n, sigma_min=0.002, sigma_max=80.0), table=None)
  add("dpm_fast_12_eta0.5", "sample_dpm_fast", "dpm_fast_sampler",
      dict(n=12, sigma_min=0.01, sigma_max=40.0, eta=0.5, s_noise=1.01), noise="sampler",
      table=None)
  add("dpm_adaptive_3", "sample_dpm_adaptive", "dpm_adaptive_sampler",
      dict(sigma_min=0.002, sigma_max=80.0), table=None)
  add("dpm_adaptive_2_tight", "sample_dpm_adaptive", "dpm_adaptive_sampler",
      dict(sigma_min=0.002, sigma_max=80.0, order=2, rtol=0.01, atol=0.002,
           pcoeff=0.1, icoeff=0.8, dcoeff=0.05), table=None)
  add("dpm_adaptive_3_eta0.5", "sample_dpm_adaptive", "dpm_adaptive_sampler",
      dict(sigma_min=0.01, sigma_max=40.0, eta=0.5, s_noise=1.01), noise="sampler",
      table=None)
  return c


def _kd_table(kd, torch, table):
  kind, n = table[0], table[1]
  if kind == "karras":
    return kd.get_sigmas_karras(n, table[2], table[3], table[4])
  if kind == "exponential":
    return kd.get_sigmas_exponential(n, table[2], table[3])
  if kind == "polyexponential":
    return kd.get_sigmas_polyexponential(n, table[2], table[3], table[4])
  return kd.get_sigmas_vp(n)


def group_kdiffusion(ctx):
  torch, kd = ctx.torch, ctx.kdiffusion
  z = latents(2)
  arrays = {"latents": z, "gmm_means": GMM_MEANS, "gmm_stds": GMM_STDS,
            "gmm_weights": GMM_WEIGHTS}
  # σ schedules.
  schedules = {
      "karras_10": ("get_sigmas_karras", (10, 0.002, 80.0, 7.0)),
      "karras_5_rho3": ("get_sigmas_karras", (5, 0.02, 10.0, 3.0)),
      "exponential_10": ("get_sigmas_exponential", (10, 0.002, 80.0)),
      "polyexponential_10_rho1": ("get_sigmas_polyexponential", (10, 0.002, 80.0, 1.0)),
      "polyexponential_10_rho2.5": ("get_sigmas_polyexponential", (10, 0.002, 80.0, 2.5)),
      "vp_10": ("get_sigmas_vp", (10,)),
      "vp_7_custom": ("get_sigmas_vp", (7, 15.0, 0.5, 1e-2)),
  }
  for name, (fn, args) in schedules.items():
    arrays[f"schedule/{name}"] = getattr(kd, fn)(*args).numpy()

  cases = _kd_cases()
  requests = {}
  for i, c in enumerate(cases):
    if c["noise"] is None:
      continue
    steps = 60 if c["kd"] == "sample_dpm_adaptive" else (
        c["kwargs"]["n"] if c["kd"] == "sample_dpm_fast" else c["table"][1])
    requests[c["name"]] = noise_request(100 + i, steps, 2 if c["noise"] == "sampler_pair" else 1)
  noise = edmjax_noise(ctx.edmjax_python, requests)

  for i, c in enumerate(cases):
    kw = dict(c["kwargs"])
    c["noise_seed"] = requests[c["name"]]["seed"] if c["name"] in requests else None
    model = GMMNet(torch)
    fn = getattr(kd, c["kd"])
    if c["table"] is not None:
      sigmas = _kd_table(kd, torch, c["table"])
      arrays[f"{c['name']}/sigmas"] = sigmas.numpy()
      x = t64(torch, z) * sigmas[0]
    else:
      x = t64(torch, z) * kw["sigma_max"]
    eps = noise.get(c["name"])
    if c["name"] in noise:
      arrays[f"{c['name']}/noise_head"] = eps[:2]
    if c["kd"] == "sample_dpm_adaptive":
      outs, infos = [], []
      for b in range(BATCH):
        model_b = GMMNet(torch)
        extra = {}
        if eps is not None:
          extra["noise_sampler"] = _sampler_from(torch, eps[:, 0, b:b + 1])
        xb, info = fn(model_b, x[b:b + 1], disable=True, return_info=True, **kw, **extra)
        outs.append(xb.numpy()[0])
        infos.append([info["steps"], info["nfe"], info["n_accept"], info["n_reject"]])
      arrays[f"{c['name']}/out"] = np.stack(outs)
      arrays[f"{c['name']}/info"] = np.asarray(infos, np.int64)
      continue
    if c["noise"] == "randn_like":
      proxy = TorchProxy(torch, randn_like=Queue(torch, eps[:, 0]))
      with patched(kd, "torch", proxy):
        out = fn(model, x, sigmas, disable=True, **kw)
    elif c["noise"] == "sampler_pair":
      sigma_np = sigmas.numpy()
      pairs = []
      for k in range(len(sigma_np) - 2):
        s_i, s_next = sigma_np[k], sigma_np[k + 1]
        t, t_next = -np.log(s_i), -np.log(s_next)
        s_mid = np.exp(-(t + (t_next - t) * kw.get("r", 0.5)))
        corr = np.sqrt((s_i - s_mid) / (s_i - s_next))
        e0, e1 = eps[k, 0], eps[k, 1]
        pairs += [e0, corr * e0 + np.sqrt(1 - corr**2) * e1]
      out = fn(model, x, sigmas, disable=True, noise_sampler=_sampler_from(torch, pairs),
               **kw)
    elif c["noise"] == "sampler":
      sampler = _sampler_from(torch, eps[:, 0])
      if c["kd"] == "sample_dpm_fast":
        out = fn(model, x, disable=True, noise_sampler=sampler, **kw)
      else:
        out = fn(model, x, sigmas, disable=True, noise_sampler=sampler, **kw)
    elif c["kd"] == "sample_dpm_fast":
      out = fn(model, x, disable=True, **kw)
    else:
      out = fn(model, x, sigmas, disable=True, **kw)
    arrays[f"{c['name']}/out"] = out.numpy()
    arrays[f"{c['name']}/nfe"] = np.asarray(model.calls)

  # Brownian-tree increments (k-diffusion's default noise of the SDE samplers).
  n = 40000
  triples = np.array([[80.0, 20.0, 5.0], [2.0, 1.2, 0.5], [0.3, 0.1, 0.02]])
  stats = []
  for k, (s_i, s_mid, s_next) in enumerate(triples):
    ns = kd.BrownianTreeNoiseSampler(torch.zeros(n, dtype=torch.float64), 0.002, 80.0,
                                     seed=1000 + k)
    z1 = ns(t64(torch, s_i), t64(torch, s_mid)).numpy()
    z2 = ns(t64(torch, s_i), t64(torch, s_next)).numpy()
    z3 = ns(t64(torch, s_next), t64(torch, s_next / 2)).numpy()   # a disjoint interval
    stats.append([np.mean(z1 * z2), np.mean(z2 * z3), np.var(z1), np.var(z2)])
  arrays["brownian/triples"] = triples
  arrays["brownian/stats"] = np.asarray(stats)
  arrays["brownian/samples"] = np.asarray(n)
  meta = dict(ctx.kd_info, cases=cases, schedules={k: v for k, v in schedules.items()},
              notes=(
                  "model: the Gaussian-mixture denoiser (refdata.gmm_denoise), NHWC. x = "
                  "latents · sigmas[0] (or · sigma_max). Noise from edmjax.keys with "
                  "jax.random.key(noise_seed): 'sampler' hands noise[i] at the i-th "
                  "noise_sampler call (step i; the k-th accepted step of dpm_adaptive), "
                  "'randn_like' the same through torch.randn_like (churn), "
                  "'sampler_pair' (dpmpp_sde) z_1 = e_0 and z_2 = c e_0 + sqrt(1 − c²) "
                  "e_1 with c = sqrt((σ_i − σ_s)/(σ_i − σ_{i+1})). dpm_adaptive runs on "
                  "each sample alone (batch 1); info = [steps, nfe, n_accept, n_reject]. "
                  "brownian/stats rows: [E z1 z2 (nested), E z2 z3 (disjoint), Var z1, "
                  "Var z2] over 'samples' elements for each (σ_i, σ_s, σ_{i+1}) triple."))
  return meta, arrays


def _sampler_from(torch, arrays):
  queue = Queue(torch, arrays)
  return lambda sigma, sigma_next: queue()


def _eps_model(torch, alphas_cumprod):
  """ε(x_t, t) = (x − D(x; σ_t))/σ_t, x = x_t/sqrt(ᾱ_t), σ_t = sqrt(1/ᾱ_t − 1)."""
  ab = np.asarray(alphas_cumprod, np.float64)

  def eps(x_t, t):
    a = ab[int(t)]
    sigma = np.sqrt(1 / a - 1)
    x = x_t.numpy() / np.sqrt(a)
    d = refdata.gmm_denoise(x, np.full(x.shape[0], sigma), DDPM_MEANS, GMM_STDS, GMM_WEIGHTS)
    return torch.from_numpy((x - d) / sigma)

  return eps


# Means reaching beyond [-1, 1], so that clip_sample acts on x̂_0.
DDPM_MEANS = GMM_MEANS * 1.1


def _diffusers_scheduler(ctx, cls_name, **config):
  """A diffusers scheduler whose tables are built in float64 (its float32 → float64)."""
  import diffusers
  module = importlib.import_module(f"diffusers.schedulers.scheduling_{cls_name}")
  with patched(module, "torch", TorchProxy(ctx.torch, float32=ctx.torch.float64)):
    sched = getattr(diffusers, f"{cls_name.upper()}Scheduler")(**config)
  as_is = getattr(diffusers, f"{cls_name.upper()}Scheduler")(**config)
  return module, sched, as_is


def _diffusers_info():
  import diffusers
  root = pathlib.Path(diffusers.__file__).parent / "schedulers"
  return {"reference": "huggingface/diffusers", "version": diffusers.__version__,
          "file_sha256": {f"schedulers/{f}": sha256_of(root / f)
                          for f in ("scheduling_ddpm.py", "scheduling_ddim.py")}}


def group_diffusers_ddpm(ctx):
  torch = ctx.torch
  T = 20
  z = latents(3)
  cases = []
  # Each level of each factor, each pair of variance and clipping levels once.
  for beta, variance, clip in (("linear", "fixed_large", False),
                               ("linear", "fixed_small", True),
                               ("squaredcos_cap_v2", "fixed_large", True),
                               ("squaredcos_cap_v2", "fixed_small", False)):
    cases.append(dict(name=f"{beta}_{variance}_clip{int(clip)}", beta_schedule=beta,
                      variance_type=variance, clip_sample=clip))
  requests = {c["name"]: noise_request(200 + i, T) for i, c in enumerate(cases)}
  noise = edmjax_noise(ctx.edmjax_python, requests)
  arrays = {"latents": z, "gmm_means": DDPM_MEANS, "gmm_stds": GMM_STDS,
            "gmm_weights": GMM_WEIGHTS}
  for c in cases:
    c["noise_seed"] = requests[c["name"]]["seed"]
    module, sched, as_is = _diffusers_scheduler(
        ctx, "ddpm", num_train_timesteps=T, beta_schedule=c["beta_schedule"],
        variance_type=c["variance_type"], clip_sample=c["clip_sample"])
    eps_fn = _eps_model(torch, sched.alphas_cumprod.numpy())
    eps = noise[c["name"]][:, 0]
    arrays[f"{c['name']}/noise_head"] = eps[:2]
    # diffusers draws only for t > 0; edmjax's scan step i (t = T − 1 − i) uses noise[i].
    draws = Queue(torch, [eps[T - 1 - t] for t in range(T - 1, 0, -1)])
    x = t64(torch, z)
    with patched(module, "randn_tensor", draws):
      for t in range(T - 1, -1, -1):
        x = sched.step(eps_fn(x, t), t, x).prev_sample
    arrays[f"{c['name']}/out"] = x.numpy()
    arrays[f"{c['name']}/betas"] = sched.betas.numpy()
    arrays[f"{c['name']}/alphas_cumprod_as_is"] = as_is.alphas_cumprod.numpy().astype(
        np.float64)
  meta = dict(_diffusers_info(), torch=torch.__version__, T=T, cases=cases, notes=(
      "DDPMScheduler(num_train_timesteps=T, beta_schedule, variance_type, clip_sample) "
      "with its tables built in float64, stepped t = T−1..0 (no set_timesteps). "
      "ε-model: ε(x_t, t) = (x − D(x; σ_t))/σ_t of the Gaussian mixture (means "
      "gmm_means), x = x_t/sqrt(ᾱ_t). randn_tensor at step t returns noise[T − 1 − t]. "
      "alphas_cumprod_as_is: the scheduler's own float32 table."))
  return meta, arrays


def group_diffusers_ddim(ctx):
  torch = ctx.torch
  T = 50
  z = latents(4)
  cases = []
  for spacing in ("leading", "trailing", "linspace"):
    for n, eta in ((10, 0.0 if spacing == "linspace" else 0.5),
                   (7, 0.5 if spacing == "linspace" else 0.0)):
      cases.append(dict(name=f"{spacing}_{n}_eta{eta}", spacing=spacing, num_steps=n,
                        eta=eta))
  requests = {c["name"]: noise_request(300 + i, c["num_steps"])
              for i, c in enumerate(cases) if c["eta"] > 0}
  noise = edmjax_noise(ctx.edmjax_python, requests)
  arrays = {"latents": z, "gmm_means": DDPM_MEANS, "gmm_stds": GMM_STDS,
            "gmm_weights": GMM_WEIGHTS}
  for c in cases:
    c["noise_seed"] = requests[c["name"]]["seed"] if c["name"] in requests else None
    _, sched, _ = _diffusers_scheduler(ctx, "ddim", num_train_timesteps=T,
                                       timestep_spacing=c["spacing"], clip_sample=False,
                                       set_alpha_to_one=True, steps_offset=0)
    sched.set_timesteps(c["num_steps"])
    eps_fn = _eps_model(torch, sched.alphas_cumprod.numpy())
    x = t64(torch, z)
    prev = []
    for i, t in enumerate(sched.timesteps.tolist()):
      extra = {}
      if c["eta"] > 0:
        extra["variance_noise"] = t64(torch, noise[c["name"]][i, 0])
      x = sched.step(eps_fn(x, t), t, x, eta=c["eta"], **extra).prev_sample
      prev.append([t, t - T // c["num_steps"]])
    arrays[f"{c['name']}/out"] = x.numpy()
    arrays[f"{c['name']}/steps"] = np.asarray(prev, np.int64)   # (t, prev_t) per step
    if c["name"] in noise:
      arrays[f"{c['name']}/noise_head"] = noise[c["name"]][:2, 0]
  arrays["alphas_cumprod"] = sched.alphas_cumprod.numpy()
  meta = dict(_diffusers_info(), torch=torch.__version__, T=T, cases=cases, notes=(
      "DDIMScheduler(num_train_timesteps=T, linear β, timestep_spacing, clip_sample=False, "
      "set_alpha_to_one=True, steps_offset=0), tables in float64; set_timesteps(N); step "
      "with eta and variance_noise = noise[i] at step i. steps: (t, prev_t) diffusers "
      "used, prev_t = t − T // N."))
  return meta, arrays


NETWORK_CASES = {
    "ddpmpp_standard": dict(cls="SongUNet", embedding_type="positional",
                            encoder_type="standard", decoder_type="standard",
                            channel_mult_noise=1, resample_filter=[1, 1]),
    "ddpmpp_skip_skip": dict(cls="SongUNet", embedding_type="positional",
                             encoder_type="skip", decoder_type="skip",
                             channel_mult_noise=1, resample_filter=[1, 1]),
    "ddpmpp_residual": dict(cls="SongUNet", embedding_type="positional",
                            encoder_type="residual", decoder_type="standard",
                            channel_mult_noise=1, resample_filter=[1, 1]),
    "ncsnpp": dict(cls="SongUNet", embedding_type="fourier", encoder_type="residual",
                   decoder_type="standard", channel_mult_noise=2,
                   resample_filter=[1, 3, 3, 1]),
    "dhariwal": dict(cls="DhariwalUNet"),
}
NETWORK_COMMON = dict(img_resolution=8, in_channels=2, out_channels=2, label_dim=3,
                      augment_dim=4, channel_mult_emb=2, num_blocks=1, dropout=0.0)
SONG_SIZE = dict(model_channels=16, channel_mult=[1, 2], attn_resolutions=[4])
DHARIWAL_SIZE = dict(model_channels=32, channel_mult=[1, 2], attn_resolutions=[4])


def group_nvlabs_networks(ctx):
  torch, nv = ctx.torch, ctx.nvlabs
  rng = np.random.default_rng(6)
  batch = 2
  x = rng.standard_normal((batch, 8, 8, 2)).astype(np.float32)
  noise_labels = np.array([-0.7, 0.9], np.float32)
  class_labels = np.eye(3, dtype=np.float32)[[2, 0]]
  augment_labels = rng.standard_normal((batch, 4)).astype(np.float32)
  arrays = {"x": x, "noise_labels": noise_labels, "class_labels": class_labels,
            "augment_labels": augment_labels}
  torch.set_default_dtype(torch.float32)
  try:
    for name, case in NETWORK_CASES.items():
      kw = {k: v for k, v in case.items() if k != "cls"}
      size = DHARIWAL_SIZE if case["cls"] == "DhariwalUNet" else SONG_SIZE
      net = getattr(nv.networks, case["cls"])(**NETWORK_COMMON, **size, **kw).eval()
      state = net.state_dict()
      keys = [k for k in state if not k.endswith("resample_filter")]
      with torch.no_grad():
        for k in keys:
          state[k].copy_(torch.from_numpy(refdata.deterministic_weights(k, state[k].shape)))
        out = net(torch.from_numpy(x).permute(0, 3, 1, 2), torch.from_numpy(noise_labels),
                  torch.from_numpy(class_labels), torch.from_numpy(augment_labels))
      arrays[f"{name}/out"] = out.permute(0, 2, 3, 1).numpy()
      arrays[f"{name}/keys"] = np.asarray(keys)
      arrays[f"{name}/shapes"] = np.asarray(
          [",".join(str(s) for s in state[k].shape) for k in keys])
  finally:
    torch.set_default_dtype(torch.float64)
  meta = dict(nv.info, common=NETWORK_COMMON, song_size=SONG_SIZE,
              dhariwal_size=DHARIWAL_SIZE, cases=NETWORK_CASES, notes=(
                  "float32, eval mode. Every state_dict entry except the derived "
                  "resample_filter buffers is set to refdata.deterministic_weights(name, "
                  "shape); keys/shapes list them. Inputs and outputs NHWC (the network "
                  "ran on NCHW permutations)."))
  return meta, arrays


# AugmentPipe: NVlabs' random calls, in the order __call__ makes them, and the edmjax
# draw each one is given: ("uniform" | "normal", transformation, slot) in edmjax's
# layout (`edmjax.data.augmentation._DRAWS`: the uniforms of a transformation first,
# its gate always slot 0), or ("int", transformation, slot, n) for torch.randint(n),
# given floor(u n) of that uniform (edmjax's `integer`).
AUGMENT_CALLS = (
    ("int", "xflip", 1, 2), ("uniform", "xflip", 0),
    ("int", "yflip", 1, 2), ("uniform", "yflip", 0),
    ("int", "rotate_int", 1, 4), ("uniform", "rotate_int", 0),
    ("uniform2", "translate_int", (1, 2)), ("uniform", "translate_int", 0),
    ("normal", "scale", 0), ("uniform", "scale", 0),
    ("uniform", "rotate_frac", 1), ("uniform", "rotate_frac", 0),
    ("normal", "aniso", 0), ("uniform", "aniso", 1), ("uniform", "aniso", 0),
    ("uniform", "aniso", 2),
    ("normal2", "translate_frac", (0, 1)), ("uniform", "translate_frac", 0),
    ("normal", "brightness", 0), ("uniform", "brightness", 0),
    ("normal", "contrast", 0), ("uniform", "contrast", 0),
    ("int", "lumaflip", 1, 2), ("uniform", "lumaflip", 0),
    ("uniform", "hue", 1), ("uniform", "hue", 0),
    ("normal", "saturation", 0), ("uniform", "saturation", 0),
)
AUGMENT_DRAWS = dict(xflip=(2, 0), yflip=(2, 0), rotate_int=(2, 0), translate_int=(3, 0),
                     scale=(1, 1), rotate_frac=(2, 0), aniso=(3, 1), translate_frac=(1, 2),
                     brightness=(1, 1), contrast=(1, 1), lumaflip=(2, 0), hue=(2, 0),
                     saturation=(1, 1))


def _augment_slots():
  slots, nu, nn = {}, 0, 0
  for name, (a, b) in AUGMENT_DRAWS.items():
    slots[name] = (nu, nn)
    nu, nn = nu + a, nn + b
  return slots, nu, nn


def group_nvlabs_augment(ctx):
  torch, nv = ctx.torch, ctx.nvlabs
  from scipy import special
  slots, nu, nn = _augment_slots()
  rng = np.random.default_rng(7)
  batch = 6
  images = rng.uniform(-1, 1, (batch, 8, 8, 3)).astype(np.float32)
  u = rng.uniform(0, 1, (batch, nu + nn)).astype(np.float32)
  # Normals as edmjax derives them: sqrt(2) erfinv(2u − 1) of the normal slots.
  normal = (np.sqrt(2) * special.erfinv(2 * u[:, nu:].astype(np.float64) - 1)).astype(
      np.float32)
  values = []
  for call in AUGMENT_CALLS:
    kind, name = call[0], call[1]
    iu, in_ = slots[name]
    if kind == "int":
      v = np.minimum(np.floor(u[:, iu + call[2]] * call[3]), call[3] - 1).astype(np.int64)
    elif kind == "uniform":
      v = u[:, iu + call[2]]
    elif kind == "uniform2":
      v = np.stack([u[:, iu + s] for s in call[2]])
    elif kind == "normal":
      v = normal[:, in_ + call[2]]
    else:
      v = np.stack([normal[:, in_ + s] for s in call[2]])
    values.append(v)
  queue = iter(values)

  def given(*args, size=None, **kwargs):
    shape = args[-1] if size is None else size   # rand(shape), randint(n, shape)
    v = next(queue)
    return torch.from_numpy(np.ascontiguousarray(v)).reshape(shape)

  probabilities = dict(xflip=1, yflip=1, rotate_int=1, translate_int=1, scale=1,
                       rotate_frac=1, aniso=1, translate_frac=1, brightness=1, contrast=1,
                       lumaflip=1, hue=1, saturation=1)
  torch.set_default_dtype(torch.float32)
  try:
    pipe = nv.augment.AugmentPipe(p=0.6, **probabilities)
    proxy = TorchProxy(torch, rand=given, randn=given, randint=given)
    with patched(nv.augment, "torch", proxy):
      out, labels = pipe(torch.from_numpy(images).permute(0, 3, 1, 2))
  finally:
    torch.set_default_dtype(torch.float64)
  arrays = {"images": images, "uniforms": u, "out": out.permute(0, 2, 3, 1).numpy(),
            "labels": labels.numpy()}
  meta = dict(nv.info, p=0.6, probabilities=probabilities, calls=AUGMENT_CALLS,
              draw_layout=AUGMENT_DRAWS, notes=(
      "AugmentPipe(p=0.6, every multiplier 1), float32, on NHWC images permuted to NCHW. "
      "Its torch.rand / randn / randint calls return the values edmjax derives from "
      "'uniforms' (one row per sample, edmjax.data.augmentation's slot layout): "
      "uniforms as they are, randint(n) = floor(u n), normals sqrt(2) erfinv(2u − 1) "
      "(scipy, float64, rounded to float32). calls: NVlabs' call order and the slot "
      "each call reads."))
  return meta, arrays


# ----------------------------------------------------------------------------- main


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                              formatter_class=argparse.RawDescriptionHelpFormatter,
                              epilog="\n\n".join(__doc__.split("\n\n")[1:3]))
  p.add_argument("--nvlabs", metavar="DIR", help="NVlabs/edm snapshot (git clone)")
  p.add_argument("--kdiffusion", metavar="DIR", help="crowsonkb/k-diffusion snapshot")
  p.add_argument("--edmjax-python", metavar="PATH", default=str(ROOT / ".venv/bin/python"),
                 help="python with edmjax and jax, to draw edmjax's noise "
                      "(default: %(default)s)")
  p.add_argument("--only", metavar="GROUPS", default=",".join(GROUPS),
                 help="comma-separated subset of: " + ", ".join(GROUPS))
  p.add_argument("--check", action="store_true",
                 help="regenerate and compare with the committed fixtures; write nothing")
  p.add_argument("--draw-noise", nargs=2, metavar=("REQUEST", "OUT"),
                 help=argparse.SUPPRESS)
  return p.parse_args(argv)


def jsonable(x):
  if isinstance(x, dict):
    return {str(k): jsonable(v) for k, v in x.items()}
  if isinstance(x, (list, tuple)):
    return [jsonable(v) for v in x]
  if isinstance(x, (np.integer,)):
    return int(x)
  if isinstance(x, (np.floating,)):
    return float(x)
  return x


def main(argv=None):
  args = parse_args(argv)
  if args.draw_noise:
    draw_noise_main(*args.draw_noise)
    return 0
  groups = [g.strip() for g in args.only.split(",") if g.strip()]
  for g in groups:
    if g not in GROUPS:
      print(f"--only: unknown group {g!r}; allowed: {', '.join(GROUPS)}", file=sys.stderr)
      return 2
  needs_nvlabs = any(g.startswith("nvlabs") for g in groups)
  if needs_nvlabs and not args.nvlabs:
    print("--nvlabs DIR is required for the nvlabs_* groups", file=sys.stderr)
    return 2
  if "kdiffusion" in groups and not args.kdiffusion:
    print("--kdiffusion DIR is required for the kdiffusion group", file=sys.stderr)
    return 2
  import torch
  torch.set_default_dtype(torch.float64)
  torch.manual_seed(0)  # nothing should draw from it; a guard for reproducibility
  ctx = types.SimpleNamespace(torch=torch, edmjax_python=args.edmjax_python)
  if needs_nvlabs:
    ctx.nvlabs = load_nvlabs(args.nvlabs)
  if "kdiffusion" in groups:
    ctx.kdiffusion, ctx.kd_info = load_kdiffusion(args.kdiffusion)
  manifest = json.loads(refdata.MANIFEST.read_text()) if refdata.MANIFEST.exists() else {}
  failures = []
  for g in groups:
    meta, arrays = globals()[f"group_{g}"](ctx)
    meta = jsonable(dict(meta, group=g, versions=versions(torch),
                         generated_by="tests/reference/make_fixtures.py"))
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    digest = refdata.content_digest(arrays)
    if args.check:
      old_meta, old = refdata.load(g)
      same = (sorted(old) == sorted(arrays)
              and all(old[k].dtype == arrays[k].dtype and np.array_equal(old[k], arrays[k])
                      for k in arrays))
      worst = max((float(np.max(np.abs(old[k].astype(np.float64)
                                       - arrays[k].astype(np.float64))))
                   for k in arrays if k in old and old[k].shape == arrays[k].shape
                   and np.issubdtype(arrays[k].dtype, np.number)), default=0.0)
      status = "reproduced exactly" if same else f"DIFFERS (max abs diff {worst:.3g})"
      print(f"{g}: {status}")
      if not same:
        failures.append(g)
      continue
    refdata.FIXTURES.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(refdata.fixture_path(g), meta=np.asarray(json.dumps(meta)),
                        **arrays)
    manifest[g] = digest
    size = refdata.fixture_path(g).stat().st_size
    print(f"{g}: wrote {refdata.fixture_path(g).relative_to(ROOT)} ({size / 1024:.1f} KiB, "
          f"{len(arrays)} arrays)")
  if not args.check:
    refdata.MANIFEST.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
  return 1 if failures else 0


if __name__ == "__main__":
  sys.exit(main())
