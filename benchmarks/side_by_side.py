"""Workers that time one piece of work in edmjax or in NVlabs/edm, each in its own process.

Used by `compare_nvlabs.py` (CPU) and `gpu_compare.py` (GPU). A worker is this file run
as a script with one JSON spec; it prints one JSON line of results:

  python benchmarks/side_by_side.py '{"framework": "jax", "work": "sample", ...}'

The torch workers run under another interpreter (one with torch), so this file imports
only the standard library at the top; each worker imports what it needs.

Spec fields (all but framework and work have defaults, see `DEFAULTS`):
  framework      "jax" (edmjax) or "torch" (NVlabs/edm, imported from `nvlabs`)
  work           "train" (one optimizer step, as NVlabs' training_loop.py) or "sample"
                 (NVlabs' `edm_sampler`; edmjax `sampling.sample` with
                 `SamplerSpec("edm")`; `num_steps` Heun steps, 2 num_steps - 1 NFE)
  precision      "fp32"; "bf16" (edmjax compute dtype) or "fp16" (NVlabs `--fp16`)
  net            DDPM++ settings (`model_channels`, `channel_mult`, `num_blocks`,
                 `attn_resolutions`, `dropout`), CIFAR-10 recipe by default
  batch, resolution, channels, augment_p, steps (timed), warmup, num_steps,
  repeats (timed sampler calls), jax_devices (CPU devices for edmjax; 0 = JAX's
  default), nvlabs (path of an NVlabs/edm checkout), flops (XLA cost analysis),
  xla_options (compiler options for edmjax's compiled step / sampler, e.g.
  {"xla_cpu_experimental_ynn_fusion_type": ""})

Both sides use the same settings: EDM loss (P_mean -1.2, P_std 1.2, sigma_data 0.5),
Adam (lr 10e-4 with NVlabs' ramp-up, betas 0.9/0.999, eps 1e-8), EMA, NVlabs'
AugmentPipe at `augment_p` (edmjax: `edmjax.data.augmentation`, the same pipeline),
dropout in training; random images in [-1, 1] already in memory (no data loading).
Timing excludes start-up and compilation / warm-up; on CPU `busy_cores` is process CPU
time over wall time during the timed part.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time

DEFAULTS = dict(
    precision="fp32", batch=32, resolution=32, channels=3, model_channels=128,
    channel_mult=(2, 2, 2), num_blocks=4, attn_resolutions=(16,), dropout=0.13,
    augment_p=0.12, steps=5, warmup=1, num_steps=18, repeats=1, jax_devices=0,
    nvlabs="/work/refs/NVlabs+edm", flops=False, seed=0, xla_options=None)

HERE = os.path.dirname(os.path.abspath(__file__))


def _clock():
  return time.perf_counter(), time.process_time()


def _elapsed(start):
  wall = time.perf_counter() - start[0]
  return wall, (time.process_time() - start[1]) / max(wall, 1e-9)


# ----------------------------------------------------------------------------- torch


def _torch_worker(s):
  import copy  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  sys.path.insert(0, s["nvlabs"])
  from training import augment, loss, networks  # pylint: disable=g-import-not-at-top
  cuda = torch.cuda.is_available() and s.get("device", "auto") != "cpu"
  device = torch.device("cuda" if cuda else "cpu")
  if not cuda:
    torch.set_num_threads(len(os.sched_getaffinity(0)))
  # As NVlabs' training_loop.py: no TF32, cuDNN autotuning.
  torch.backends.cudnn.benchmark = True
  torch.backends.cudnn.allow_tf32 = False
  torch.backends.cuda.matmul.allow_tf32 = False
  torch.backends.cuda.matmul.allow_fp16_reduced_precision_reduction = False
  torch.manual_seed(s["seed"])
  net = networks.EDMPrecond(
      img_resolution=s["resolution"], img_channels=s["channels"], label_dim=0,
      use_fp16=s["precision"] == "fp16", model_type="SongUNet",
      embedding_type="positional", encoder_type="standard", decoder_type="standard",
      channel_mult_noise=1, resample_filter=[1, 1], model_channels=s["model_channels"],
      channel_mult=list(s["channel_mult"]), num_blocks=s["num_blocks"],
      attn_resolutions=list(s["attn_resolutions"]), dropout=s["dropout"],
      augment_dim=9 if s["augment_p"] > 0 else 0).to(device)
  shape = (s["batch"], s["channels"], s["resolution"], s["resolution"])
  rng = np.random.default_rng(s["seed"])
  sync = torch.cuda.synchronize if cuda else (lambda: None)
  out = dict(params=sum(p.numel() for p in net.parameters()), torch=torch.__version__,
             threads=torch.get_num_threads(), device=str(device))
  if cuda:
    out["device_name"] = torch.cuda.get_device_name()
    torch.cuda.reset_peak_memory_stats()

  if s["work"] == "train":
    net.train().requires_grad_(True)
    ema = copy.deepcopy(net).eval().requires_grad_(False)
    opt = torch.optim.Adam(net.parameters(), lr=10e-4, betas=[0.9, 0.999], eps=1e-8)
    loss_fn = loss.EDMLoss(P_mean=-1.2, P_std=1.2, sigma_data=0.5)
    pipe = None
    if s["augment_p"] > 0:
      pipe = augment.AugmentPipe(p=s["augment_p"], xflip=1e8, yflip=1, scale=1,
                                 rotate_frac=1, aniso=1, translate_frac=1)
    images = torch.as_tensor(rng.uniform(-1, 1, shape).astype(np.float32), device=device)
    nimg = [0]

    def step():  # the body of NVlabs' training_loop.py, one round, no DDP
      opt.zero_grad(set_to_none=True)
      l = loss_fn(net=net, images=images, labels=None, augment_pipe=pipe)
      l.sum().mul(1 / s["batch"]).backward()
      for g in opt.param_groups:
        g["lr"] = 10e-4 * min(nimg[0] / max(10000 * 1000, 1e-8), 1)
      for p in net.parameters():
        if p.grad is not None:
          torch.nan_to_num(p.grad, nan=0, posinf=1e5, neginf=-1e5, out=p.grad)
      opt.step()
      beta = 0.5 ** (s["batch"] / max(min(500e3, nimg[0] * 0.05), 1e-8))
      for p_ema, p_net in zip(ema.parameters(), net.parameters()):
        p_ema.copy_(p_net.detach().lerp(p_ema, beta))
      nimg[0] += s["batch"]

    for _ in range(s["warmup"]):
      step()
    sync()
    t = _clock()
    for _ in range(s["steps"]):
      step()
    sync()
    wall, busy = _elapsed(t)
    out.update(step_s=wall / s["steps"], images_per_s=s["steps"] * s["batch"] / wall,
               busy_cores=busy)
  else:
    import generate  # pylint: disable=g-import-not-at-top  (NVlabs' edm_sampler)
    net.eval()
    latents = torch.as_tensor(rng.standard_normal(shape).astype(np.float32), device=device)

    def run():
      with torch.no_grad():
        return generate.edm_sampler(net, latents, num_steps=s["num_steps"])

    for _ in range(s["warmup"]):
      run()
    sync()
    t = _clock()
    for _ in range(s["repeats"]):
      run()
    sync()
    wall, busy = _elapsed(t)
    out.update(sample_s=wall / s["repeats"], nfe=2 * s["num_steps"] - 1,
               images_per_s=s["repeats"] * s["batch"] / wall, busy_cores=busy)
  if cuda:
    out["peak_gpu_bytes"] = int(torch.cuda.max_memory_allocated())
  return out


# ----------------------------------------------------------------------------- jax


def _jax_config(s):
  sys.path.insert(0, os.path.join(HERE, "..", "experiments"))
  import configs  # pylint: disable=g-import-not-at-top
  from edmjax.train import config as C  # pylint: disable=g-import-not-at-top
  base = configs.cifar10_ddpmpp()
  net = dataclasses.replace(
      base.net, model_channels=s["model_channels"], channel_mult=tuple(s["channel_mult"]),
      num_blocks=s["num_blocks"], attn_resolutions=tuple(s["attn_resolutions"]),
      dropout=s["dropout"], dtype="bfloat16" if s["precision"] == "bf16" else "float32")
  data = C.DataConfig(name="synthetic", resolution=s["resolution"], channels=s["channels"],
                      augment_p=s["augment_p"], num_classes=0,
                      image_shape=(s["resolution"], s["resolution"], s["channels"]))
  return dataclasses.replace(base, net=net, data=data, batch_size=s["batch"])


def _jax_peak(jax):
  stats = jax.devices()[0].memory_stats() or {}
  return {"peak_gpu_bytes": int(stats["peak_bytes_in_use"])} if "peak_bytes_in_use" in stats else {}


def _flops(compiled):
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost.get("flops", 0.0)) if cost else 0.0


def _jax_worker(s):
  import jax  # pylint: disable=g-import-not-at-top
  if s["jax_devices"]:
    jax.config.update("jax_num_cpu_devices", int(s["jax_devices"]))
  if s["precision"] == "fp32" and jax.default_backend() == "gpu":
    jax.config.update("jax_default_matmul_precision", "highest")  # NVlabs' fp32: no TF32
  import numpy as np  # pylint: disable=g-import-not-at-top
  from jax.sharding import NamedSharding, PartitionSpec  # pylint: disable=g-import-not-at-top
  from edmjax import sampling  # pylint: disable=g-import-not-at-top
  from edmjax.train import loop, models, parallel  # pylint: disable=g-import-not-at-top
  cfg = _jax_config(s)
  shape = (s["resolution"], s["resolution"], s["channels"])
  rng = np.random.default_rng(s["seed"])
  dev = jax.devices()
  out = dict(jax=jax.__version__, devices=f"{len(dev)} x {dev[0].device_kind}",
             platform=dev[0].platform)

  if s["work"] == "train":
    mesh = parallel.make_mesh()
    built = loop.build(cfg, mesh, shape, 10)
    state = built.init(jax.random.key_data(jax.random.key(s["seed"])))
    images = rng.uniform(-1, 1, (s["batch"],) + shape).astype(np.float32)
    x, y = parallel.global_batch((images, np.zeros(s["batch"], np.int32)), mesh)
    t0 = time.perf_counter()
    compiled = built.step.lower(state, x, y).compile(compiler_options=s["xla_options"])
    out["compile_s"] = time.perf_counter() - t0
    for _ in range(s["warmup"]):
      state, _ = compiled(state, x, y)
    jax.block_until_ready(state)
    t = _clock()
    for _ in range(s["steps"]):
      state, m = compiled(state, x, y)
    jax.block_until_ready((state, m))
    wall, busy = _elapsed(t)
    out.update(step_s=wall / s["steps"], images_per_s=s["steps"] * s["batch"] / wall,
               busy_cores=busy,
               params=int(sum(v.size for v in jax.tree.leaves(state.params))))
    if s["flops"]:
      out["flops_per_step"] = _flops(compiled)
  else:
    model = models.build_run_net(cfg)  # with its augmentation-label input, as NVlabs'
    variables = jax.jit(model.init)(jax.random.key(s["seed"]),
                                    np.zeros((1,) + shape, np.float32), np.zeros((1,), np.float32))
    spec = sampling.SamplerSpec("edm", num_steps=s["num_steps"])  # NVlabs' edm_sampler

    def sample(variables, latents):  # the plain library API, as a user jits it
      return sampling.sample(models.run_model(cfg, variables), latents, spec=spec)

    latents = rng.standard_normal((s["batch"],) + shape).astype(np.float32)
    if len(dev) > 1:  # the batch split over the devices (the scripts' device split)
      mesh = parallel.make_mesh()
      latents = jax.device_put(latents, NamedSharding(mesh, PartitionSpec(*mesh.axis_names)))
    t0 = time.perf_counter()
    compiled = jax.jit(sample).lower(variables, latents).compile(
        compiler_options=s["xla_options"])
    out["compile_s"] = time.perf_counter() - t0
    for _ in range(s["warmup"]):
      jax.block_until_ready(compiled(variables, latents))
    t = _clock()
    for _ in range(s["repeats"]):
      r = compiled(variables, latents)
    jax.block_until_ready(r)
    wall, busy = _elapsed(t)
    nfe = 2 * s["num_steps"] - 1
    out.update(sample_s=wall / s["repeats"], nfe=nfe,
               images_per_s=s["repeats"] * s["batch"] / wall, busy_cores=busy,
               params=int(sum(v.size for v in jax.tree.leaves(variables["params"]))))
    if s["flops"]:  # cost analysis counts a loop body once: one forward times the NFE
      def forward(variables, x):
        return models.run_model(cfg, variables)(x, np.full((x.shape[0],), 1.0, np.float32))
      fwd = jax.jit(forward).lower(variables, latents).compile()
      out["flops_per_sample_call"] = _flops(fwd) * nfe
  out.update(_jax_peak(jax))
  return out


def run_worker(spec: dict) -> dict:
  """Runs one worker spec in this process (see the module docstring)."""
  s = {**DEFAULTS, **spec}
  s.setdefault("device", "auto")
  if s["framework"] not in ("jax", "torch") or s["work"] not in ("train", "sample"):
    raise ValueError(f"spec needs framework jax|torch and work train|sample, got {spec}")
  result = _torch_worker(s) if s["framework"] == "torch" else _jax_worker(s)
  return {"framework": s["framework"], "work": s["work"], "precision": s["precision"],
          "batch": s["batch"], **result}


def spawn(python: str, spec: dict, *, cpus=None, env=None, timeout=None, script=None,
          flag=None) -> dict:
  """Runs a worker in a new process of `python` (pinned to `cpus`); returns its JSON.

  The worker is this file (or `script`, given `flag` before the spec) with the spec as
  its one argument; its last stdout line that starts with `{` is the result.
  """
  import subprocess  # pylint: disable=g-import-not-at-top
  cmd = [python, script or os.path.abspath(__file__)] + ([flag] if flag else []) + [
      json.dumps(spec)]
  preexec = (lambda: os.sched_setaffinity(0, cpus)) if cpus else None
  proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout,
                        preexec_fn=preexec, env={**os.environ, **(env or {})}, check=False)
  lines = [l for l in proc.stdout.splitlines() if l.startswith("{")]
  if proc.returncode or not lines:
    raise RuntimeError(f"worker {spec} failed "
                       f"(exit {proc.returncode}):\n{proc.stderr[-3000:]}")
  return json.loads(lines[-1])


def load_average() -> float:
  return os.getloadavg()[0]


if __name__ == "__main__":
  print(json.dumps(run_worker(json.loads(sys.argv[1]))), flush=True)
