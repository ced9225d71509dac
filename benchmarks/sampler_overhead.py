#!/usr/bin/env python3
"""Sampler overhead: a jitted `edm_sampler` against bare calls of its denoiser.

The sampler with 18 steps makes 35 denoiser evaluations (NFE = 2·18 − 1). This
times the whole jitted sampler (one `lax.scan`) against 35 calls of the same jitted
denoiser (a small conv net under EDM preconditioning), batch 64, and prints JSON
with seconds per NFE and the overhead ratio sampler / (35 × denoiser). A ratio of
1.0 means the solver arithmetic and the loop cost nothing beyond the network.

Examples:
  python benchmarks/sampler_overhead.py
  python benchmarks/sampler_overhead.py --batch 16 --repeats 5
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from edmjax import precond, samplers


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


def _median_time(fn, repeats):
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    times.append(time.perf_counter() - t0)
  return float(np.median(times)), times


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                              formatter_class=argparse.ArgumentDefaultsHelpFormatter)
  p.add_argument("--batch", type=int, default=64)
  p.add_argument("--resolution", type=int, default=32)
  p.add_argument("--channels", type=int, default=3)
  p.add_argument("--features", type=int, default=64)
  p.add_argument("--num-steps", type=int, default=18)
  p.add_argument("--repeats", type=int, default=7)
  args = p.parse_args(argv)

  net = SmallConvNet(args.features)
  shape = (args.batch, args.resolution, args.resolution, args.channels)
  latents = jax.random.normal(jax.random.key(0), shape)
  params = net.init(jax.random.key(1), latents, jnp.zeros(args.batch))
  denoise = precond.make_denoiser(lambda x, c: net.apply(params, x, c), "edm")
  nfe = 2 * args.num_steps - 1

  sampler = jax.jit(lambda lat: samplers.edm_sampler(denoise, lat, num_steps=args.num_steps))
  step = jax.jit(denoise)
  sigma = jnp.full((args.batch,), 2.0)

  t0 = time.perf_counter()
  jax.block_until_ready(sampler(latents))
  compile_sampler = time.perf_counter() - t0
  jax.block_until_ready(step(latents, sigma))

  def bare_calls():
    x = latents
    for _ in range(nfe):
      x = step(x, sigma)
    return x

  # Interleave the two measurements so drifts in machine load hit both alike.
  t_sampler, t_bare = [], []
  for _ in range(args.repeats):
    t_sampler.append(_median_time(lambda: sampler(latents), 1)[0])
    t_bare.append(_median_time(bare_calls, 1)[0])
  ts, tb = float(np.median(t_sampler)), float(np.median(t_bare))
  print(json.dumps({
      "benchmark": "sampler_overhead",
      "date": datetime.date.today().isoformat(),
      "device": str(jax.devices()[0]), "platform": platform.processor() or platform.machine(),
      "jax": jax.__version__, "batch": args.batch, "image_shape": list(shape[1:]),
      "num_steps": args.num_steps, "nfe": nfe,
      "sampler_seconds": round(ts, 4), "bare_denoiser_seconds": round(tb, 4),
      "sampler_seconds_per_nfe": round(ts / nfe, 5),
      "denoiser_seconds_per_nfe": round(tb / nfe, 5),
      "overhead_ratio": round(ts / tb, 4), "sampler_compile_seconds": round(compile_sampler, 2),
      "repeats": args.repeats,
  }))


if __name__ == "__main__":
  main()
