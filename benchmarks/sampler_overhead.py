#!/usr/bin/env python3
"""Sampler overhead: each jitted sampler against NFE bare calls of its denoiser.

For every sampler of `edmjax.sampling` (the registry; 'headstart' from a zero
image), this times the whole jitted sampler (one compiled loop) against NFE calls of
the same jitted denoiser (a small conv net under EDM preconditioning), the two
interleaved, and prints one JSON line per sampler with seconds per NFE and the
overhead ratio sampler / (NFE × denoiser), in wall-clock and in this process's CPU
time (the latter is less sensitive to other jobs on a shared machine). A ratio of
1.0 means the solver
arithmetic and the loop cost nothing beyond the network; below 1, the single program
saves the per-call dispatch of NFE separate executions. DPM-adaptive's NFE is the
mean it spent per sample (`return_info`), 'ddpm' runs T = 100 steps.

Examples:
  python benchmarks/sampler_overhead.py
  python benchmarks/sampler_overhead.py --samplers edm,dpmpp_2m,dpm_adaptive --repeats 5
  python benchmarks/sampler_overhead.py --batch 64 --resolution 32   # the first session's case
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from edmjax import precond, samplers, sampling

# Per-sampler options of the timed spec (18 steps where a sampler has steps).
OPTIONS = {
    "ddpm": {"T": 100},
    "ddim": {"num_steps": 18},
    "dpm_fast": {"nfe": 18},
    "headstart": {"num_steps": 18, "sigma_start": 80.0},
}


class SmallConvNet(nn.Module):
  """A small conv net F(x; c_noise): 4 conv layers, the noise level as a channel bias."""
  features: int = 64

  @nn.compact
  def __call__(self, x, c_noise):
    emb = nn.Dense(self.features)(c_noise[:, None])
    h = nn.Conv(self.features, (3, 3))(x)
    h = nn.silu(h + emb[:, None, None, :])
    h = nn.silu(nn.Conv(self.features, (3, 3))(h))
    h = nn.silu(nn.Conv(self.features, (3, 3))(h))
    return nn.Conv(x.shape[-1], (3, 3))(h)


def _seconds(fn):
  t0 = time.perf_counter()
  jax.block_until_ready(fn())
  return time.perf_counter() - t0


def _timed(fn):
  """(wall seconds, CPU seconds of this process) of one call."""
  w0, c0 = time.perf_counter(), time.process_time()
  jax.block_until_ready(fn())
  return time.perf_counter() - w0, time.process_time() - c0


def _spec(name, num_steps):
  opts = dict(OPTIONS.get(name, {}))
  if "num_steps" in sampling.SamplerSpec.options_of(name) and name not in OPTIONS:
    opts["num_steps"] = num_steps
  return sampling.SamplerSpec(name, **opts)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
  p.add_argument("--samplers", default="all",
                 help="comma-separated names of edmjax.sampling.SAMPLER_NAMES, or all")
  p.add_argument("--batch", type=int, default=16)
  p.add_argument("--resolution", type=int, default=16)
  p.add_argument("--channels", type=int, default=3)
  p.add_argument("--features", type=int, default=64)
  p.add_argument("--num-steps", type=int, default=18)
  p.add_argument("--repeats", type=int, default=5)
  args = p.parse_args(argv)
  names = sampling.SAMPLER_NAMES if args.samplers == "all" else tuple(
      n.strip() for n in args.samplers.split(","))
  for n in names:
    if n not in sampling.SAMPLER_NAMES:
      p.error(f"--samplers: unknown sampler {n!r}; allowed: "
              + ", ".join(sampling.SAMPLER_NAMES))

  net = SmallConvNet(args.features)
  shape = (args.batch, args.resolution, args.resolution, args.channels)
  latents = jax.random.normal(jax.random.key(0), shape)
  params = net.init(jax.random.key(1), latents, jnp.zeros(args.batch))
  denoise = precond.make_denoiser(lambda x, c: net.apply(params, x, c), "edm")
  step = jax.jit(denoise)
  sigma = jnp.full((args.batch,), 2.0)
  jax.block_until_ready(step(latents, sigma))
  key = jax.random.key(2)
  init = jnp.zeros(shape)
  load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None

  for name in names:
    spec = _spec(name, args.num_steps)
    if name == "dpm_adaptive":
      run = jax.jit(lambda z, k: samplers.dpm_adaptive_sampler(denoise, z, k,
                                                               return_info=True))
      t0 = time.perf_counter()
      _, info = jax.block_until_ready(run(latents, key))
      compile_s = time.perf_counter() - t0
      nfe = float(np.mean(np.asarray(info.nfe)))
    else:
      extra = {"init": init} if name == "headstart" else {}
      run = jax.jit(lambda z, k, spec=spec, extra=extra: sampling.sample(
          denoise, z, k, spec, **extra))
      compile_s = _seconds(lambda: run(latents, key))
      nfe = spec.nfe()
    calls = int(round(nfe))

    def bare(calls=calls):
      x = latents
      for _ in range(calls):
        x = step(x, sigma)
      return x

    t_sampler, t_bare = [], []
    for _ in range(args.repeats):   # interleaved, so drifts in load hit both alike
      t_sampler.append(_timed(lambda: run(latents, key)))
      t_bare.append(np.asarray(_timed(bare)) * nfe / calls)
    (ts, cs), (tb, cb) = np.median(t_sampler, axis=0), np.median(t_bare, axis=0)
    print(json.dumps({
        "benchmark": "sampler_overhead", "sampler": name, "spec": repr(spec),
        "date": datetime.date.today().isoformat(), "device": str(jax.devices()[0]),
        "platform": platform.processor() or platform.machine(), "jax": jax.__version__,
        "load_1min": load, "batch": args.batch, "image_shape": list(shape[1:]),
        "nfe": round(nfe, 2), "sampler_seconds": round(float(ts), 4),
        "bare_denoiser_seconds": round(float(tb), 4),
        "sampler_seconds_per_nfe": round(float(ts) / nfe, 5),
        "denoiser_seconds_per_nfe": round(float(tb) / nfe, 5),
        "overhead_ratio": round(float(ts / tb), 4),
        "sampler_cpu_seconds": round(float(cs), 4),
        "bare_denoiser_cpu_seconds": round(float(cb), 4),
        "overhead_ratio_cpu": round(float(cs / cb), 4), "compile_seconds": round(compile_s, 2),
        "repeats": args.repeats,
    }), flush=True)


if __name__ == "__main__":
  main()
