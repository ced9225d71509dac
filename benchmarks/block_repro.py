"""One DDPM++ residual block, edmjax against NVlabs/edm's PyTorch, forward and backward.

The smallest piece of the training step that shows the CPU gap: NVlabs' `UNetBlock`
as SongUNet builds it for the 32-channel DDPM++ of `compare_nvlabs.py` (64 output
channels, GroupNorm eps 1e-6, SiLU, the noise embedding's affine (128 features),
dropout 0.13, skip scale sqrt(1/2); `--kind` plain 64 -> 64, decoder 128 -> 64 with its
1x1 skip, down, up, or attention), `--resolution` 32, 16 or 8, batch 16 (one device's
half of the batch-32 step), fp32, NHWC in edmjax and NCHW in PyTorch. Timed:

  forward    the block in training mode (dropout on)
  backward   forward + gradients of sum(y * g) with respect to the parameters and x

Each side runs in its own process on the same cores (`--cpus`, default: all this
process may use; PyTorch gets that many threads, edmjax one JAX CPU device). Times are
medians of `--repeats` calls after warm-up; `per_cpu_s` figures divide by process CPU
time instead of wall time, so they say how efficient each side is per core even on a
loaded machine. Runs under `--torch-python` (NVlabs/edm imported from `--nvlabs`).

Usage:
  python benchmarks/block_repro.py [--cpus 0] [--repeats 20] [--nvlabs DIR]
      [--torch-python PY] [--xla-options '{"xla_cpu_experimental_ynn_fusion_type": ""}']
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SHAPE = dict(batch=16, channels=64, resolution=32, emb=128, dropout=0.13)
KINDS = {  # block variants of DDPM++ (in_channels, up, down, attention)
    "plain": (64, False, False, False), "decoder": (128, False, False, False),
    "down": (64, False, True, False), "up": (64, True, False, False),
    "attention": (64, False, False, True)}


def _timed(fn, repeats):
  walls, cpus = [], []
  for _ in range(repeats):
    t, c = time.perf_counter(), time.process_time()
    fn()
    walls.append(time.perf_counter() - t)
    cpus.append(time.process_time() - c)
  return dict(wall_ms=1e3 * statistics.median(walls), cpu_ms=1e3 * statistics.median(cpus))


def _torch(spec):
  import numpy as np  # pylint: disable=g-import-not-at-top
  import torch  # pylint: disable=g-import-not-at-top
  sys.path.insert(0, spec["nvlabs"])
  from training import networks  # pylint: disable=g-import-not-at-top
  torch.set_num_threads(len(os.sched_getaffinity(0)))
  torch.manual_seed(0)
  s = dict(SHAPE, resolution=spec["resolution"])
  c_in, up, down, attention = KINDS[spec["kind"]]
  init = dict(init_mode="xavier_uniform")
  block = networks.UNetBlock(
      in_channels=c_in, out_channels=s["channels"], emb_channels=s["emb"],
      up=up, down=down, attention=attention, num_heads=1, dropout=s["dropout"], skip_scale=math.sqrt(0.5), eps=1e-6,
      resample_filter=[1, 1], resample_proj=True, adaptive_scale=False, init=init,
      init_zero=dict(init_mode="xavier_uniform", init_weight=1e-5),
      init_attn=dict(init_mode="xavier_uniform", init_weight=math.sqrt(0.2))).train()
  rng = np.random.default_rng(0)
  x = torch.as_tensor(rng.standard_normal(
      (s["batch"], c_in, s["resolution"], s["resolution"])).astype(np.float32))
  emb = torch.as_tensor(rng.standard_normal((s["batch"], s["emb"])).astype(np.float32))
  with torch.no_grad():
    g = torch.as_tensor(rng.standard_normal(tuple(block(x, emb).shape)).astype(np.float32))
  xr = x.clone().requires_grad_(True)
  params = list(block.parameters())

  def fwd():
    with torch.no_grad():
      block(x, emb)

  def bwd():
    y = block(xr, emb)
    torch.autograd.grad((y * g).sum(), params + [xr])

  for f in (fwd, bwd):
    for _ in range(3):
      f()
  return dict(forward=_timed(fwd, spec["repeats"]), backward=_timed(bwd, spec["repeats"]),
              threads=torch.get_num_threads(), torch=torch.__version__)


def _jax(spec):
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from edmjax import nn  # pylint: disable=g-import-not-at-top
  s = dict(SHAPE, resolution=spec["resolution"])
  c_in, up, down, attention = KINDS[spec["kind"]]
  block = nn.UNetBlock(
      out_channels=s["channels"], up=up, down=down, attention=attention, num_heads=1, dropout=s["dropout"],
      skip_scale=math.sqrt(0.5), eps=1e-6, resample_filter=(1, 1), resample_proj=True,
      adaptive_scale=False, init_conv=nn.Init("xavier_uniform"),
      init_zero=nn.Init("xavier_uniform", init_weight=1e-5),
      init_attn=nn.Init("xavier_uniform", init_weight=math.sqrt(0.2)))
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal(
      (s["batch"], s["resolution"], s["resolution"], c_in)).astype(np.float32))
  emb = jnp.asarray(rng.standard_normal((s["batch"], s["emb"])).astype(np.float32))
  variables = block.init(jax.random.key(0), x, emb)
  g = jnp.asarray(rng.standard_normal(block.apply(variables, x, emb).shape).astype(np.float32))
  key = jax.random.key(1)

  def fwd(v, x, emb, key):
    return block.apply(v, x, emb, train=True, rngs={"dropout": key})

  def bwd(v, x, emb, key):
    return jax.grad(lambda v, x: jnp.sum(fwd(v, x, emb, key) * g), argnums=(0, 1))(v, x)

  opts = spec.get("xla_options") or {}
  args = (variables, x, emb, key)
  cf = jax.jit(fwd).lower(*args).compile(compiler_options=opts)
  cb = jax.jit(bwd).lower(*args).compile(compiler_options=opts)
  for c in (cf, cb):
    for _ in range(3):
      jax.block_until_ready(c(*args))
  return dict(forward=_timed(lambda: jax.block_until_ready(cf(*args)), spec["repeats"]),
              backward=_timed(lambda: jax.block_until_ready(cb(*args)), spec["repeats"]),
              jax=jax.__version__, xla_options=opts)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--nvlabs", default="/work/refs/NVlabs+edm", metavar="DIR")
  p.add_argument("--torch-python", default="/work/refvenv/bin/python", metavar="PY")
  p.add_argument("--cpus", default=None, metavar="LIST", help="cores, e.g. 0 or 0,1")
  p.add_argument("--repeats", type=int, default=20)
  p.add_argument("--kind", default="plain", choices=sorted(KINDS),
                 help="plain 64->64, decoder 128->64 (1x1 skip), down, up, attention")
  p.add_argument("--resolution", type=int, default=32, help="input H = W (8, 16 or 32)")
  p.add_argument("--rounds", type=int, default=1, help="interleaved rounds of both sides")
  p.add_argument("--xla-options", default="{}", metavar="JSON",
                 help="compiler options for the edmjax side")
  p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
  args = p.parse_args(argv)
  if args.worker:
    spec = json.loads(args.worker)
    out = _torch(spec) if spec["side"] == "torch" else _jax(spec)
    print(json.dumps(out), flush=True)
    return 0
  if not os.path.isfile(os.path.join(args.nvlabs, "training", "networks.py")):
    p.error(f"--nvlabs {args.nvlabs!r} is not an NVlabs/edm checkout")
  try:
    cpus = sorted({int(c) for c in args.cpus.split(",")}) if args.cpus else None
    xla_options = json.loads(args.xla_options)
  except ValueError as e:
    p.error(f"--cpus / --xla-options: {e}")
  sys.path.insert(0, HERE)
  import side_by_side  # pylint: disable=g-import-not-at-top
  spec = dict(nvlabs=os.path.abspath(args.nvlabs), repeats=args.repeats,
              xla_options=xla_options, kind=args.kind, resolution=args.resolution)
  rounds = []
  for _ in range(args.rounds):
    pair = {}
    for side, py in (("torch", args.torch_python), ("jax", sys.executable)):
      pair[side] = side_by_side.spawn(py, dict(spec, side=side), cpus=cpus,
                                      script=os.path.abspath(__file__), flag="--worker")
    rounds.append(pair)
  summary = {}
  for part in ("forward", "backward"):
    for unit in ("wall_ms", "cpu_ms"):
      t = statistics.median(r["torch"][part][unit] for r in rounds)
      j = statistics.median(r["jax"][part][unit] for r in rounds)
      summary[f"{part}_{unit}"] = dict(nvlabs=t, edmjax=j, edmjax_over_nvlabs=j / t)
  doc = dict(benchmark="block_repro", block=dict(SHAPE, kind=args.kind,
                                                 resolution=args.resolution), cpus=cpus or sorted(os.sched_getaffinity(0)),
             load_average=os.getloadavg()[0], summary=summary, rounds=rounds)
  print(json.dumps(doc, indent=1))
  return 0


if __name__ == "__main__":
  sys.exit(main())
