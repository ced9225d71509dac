#!/usr/bin/env python3
"""Layer timings behind the training step: convolution gradients and GroupNorm (JSON).

For the convolution shapes of the 32x32 DDPM++ step at 16 images per device, times
the forward pass, XLA's input gradient, and the weight gradient both ways of
`edmjax.nn.conv` ("xla": XLA's transposed convolution; "chunked": the batch-chunked
sum, or one matrix product for 1x1), plus GroupNorm + SiLU forward and backward
(`edmjax.nn.GroupNorm`) against the direct grouped-view formulation it replaced.
Each figure is the median of `--repeats` timed calls of a jitted function.

Pin it to one core to see per-core efficiency, as `benchmarks/RESULTS.md` does:
  taskset -c 0 python benchmarks/conv_grad.py
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import jax.numpy as jnp
import numpy as np

from edmjax.nn import GroupNorm
from edmjax.nn import conv

SHAPES = [  # (batch, size, c_in, c_out, kernel)
    (16, 32, 64, 64, 3), (16, 32, 128, 64, 3), (16, 32, 128, 64, 1),
    (16, 16, 64, 64, 3), (16, 8, 128, 64, 3)]


def _time(f, *args, repeats):
  jax.block_until_ready(f(*args))
  times = []
  for _ in range(repeats):
    t = time.perf_counter()
    jax.block_until_ready(f(*args))
    times.append(time.perf_counter() - t)
  return float(np.median(times))


def conv_row(batch, size, c_in, c_out, kernel, repeats):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal((batch, size, size, c_in)), jnp.float32)
  w = jnp.asarray(rng.standard_normal((kernel, kernel, c_in, c_out)) * 0.05, jnp.float32)
  g = jnp.asarray(rng.standard_normal((batch, size, size, c_out)), jnp.float32)
  pad = kernel // 2

  def grads(mode):
    return jax.jit(lambda x, w, g: jax.vjp(
        lambda x_, w_: conv.conv2d(x_, w_, pad, weight_grad=mode), x, w)[1](g))

  fwd = jax.jit(lambda x, w: conv.conv2d(x, w, pad, weight_grad="xla"))
  dx = jax.jit(lambda x, w, g: jax.vjp(lambda x_: conv.conv2d(x_, w, pad), x)[1](g)[0])
  dw = {m: jax.jit(lambda x, w, g, m=m: grads(m)(x, w, g)[1]) for m in ("xla", "chunked")}
  flops = 2 * batch * size * size * c_in * c_out * kernel * kernel
  row = dict(shape=[batch, size, size, c_in], kernel=kernel, c_out=c_out,
             fwd_ms=1e3 * _time(fwd, x, w, repeats=repeats),
             dx_ms=1e3 * _time(dx, x, w, g, repeats=repeats),
             dw_xla_ms=1e3 * _time(dw["xla"], x, w, g, repeats=repeats),
             dw_chunked_ms=1e3 * _time(dw["chunked"], x, w, g, repeats=repeats))
  for k in ("fwd", "dw_xla", "dw_chunked"):
    row[k.replace("_ms", "") + "_gflops"] = flops / row[k + "_ms"] / 1e6
  return row


def _grouped_view_norm(x, weight, bias, groups, eps=1e-5):
  """The direct formulation: statistics over a (..., groups, C // groups) view."""
  c = x.shape[-1]
  xg = x.reshape(x.shape[:-1] + (groups, c // groups))
  mean = jnp.mean(xg, axis=(1, 2, 4), keepdims=True)
  var = jnp.mean(jnp.square(xg - mean), axis=(1, 2, 4), keepdims=True)
  return ((xg - mean) * jax.lax.rsqrt(var + eps)).reshape(x.shape) * weight + bias


def norm_row(repeats):
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.standard_normal((16, 32, 32, 64)), jnp.float32)
  ct = jnp.asarray(rng.standard_normal(x.shape), jnp.float32)
  params = {"params": {"weight": jnp.ones(64), "bias": jnp.zeros(64)}}
  ours = lambda x: jax.nn.silu(GroupNorm().apply(params, x))  # noqa: E731
  direct = lambda x: jax.nn.silu(_grouped_view_norm(x, jnp.ones(64), jnp.zeros(64), 16))  # noqa: E731
  out = dict(shape=[16, 32, 32, 64], layer="GroupNorm(16 groups) + SiLU")
  for name, f in (("edmjax", ours), ("grouped_view", direct)):
    fb = jax.jit(lambda x, ct, f=f: jax.vjp(f, x)[1](ct)[0])
    out[f"{name}_fwd_ms"] = 1e3 * _time(jax.jit(f), x, repeats=repeats)
    out[f"{name}_fwd_bwd_ms"] = 1e3 * _time(fb, x, ct, repeats=repeats)
  return out


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--repeats", type=int, default=15)
  args = p.parse_args(argv)
  for shape in SHAPES:
    print(json.dumps(dict(conv_row(*shape, repeats=args.repeats),
                          device=jax.devices()[0].device_kind)), flush=True)
  print(json.dumps(dict(norm_row(args.repeats), device=jax.devices()[0].device_kind)),
        flush=True)
  return 0


if __name__ == "__main__":
  raise SystemExit(main())
