#!/usr/bin/env python3
"""Seconds per image of `likelihood.log_likelihood` (exact, Hutchinson) and of the
adaptive `samplers.ode_sampler` (rtol 1e-3, 1e-5), with the NFE each used.

Model: a trained digits run (`--workdir`, e.g. `python experiments/train.py
--workdir out/digits_edm`, about 8 CPU minutes), evaluated on its 97 held-out
digits (8-bit: round((x + 1)·127.5)); or, with `--workdir oracle`, the exact
denoiser of a 10-component Gaussian mixture on the digits' class means (s = 0.2).
Each row is jitted once (compile time reported), then timed `--repeats` times (wall
and process CPU seconds); the median is printed as one JSON line per row as soon as
it is measured. The exact divergence costs d = 64 Jacobian products per step, so it
runs on `--exact-batch` images.

Examples:
  python benchmarks/likelihood.py --workdir out/digits_edm
  python benchmarks/likelihood.py --workdir oracle --batch 16
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                              epilog="\n\n".join(__doc__.split("\n\n")[1:]),
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--workdir", default="out/digits_edm", metavar="DIR",
                 help="trained run, or 'oracle' (default: %(default)s)")
  p.add_argument("--batch", type=int, default=8, metavar="N",
                 help="images per call (default: %(default)s)")
  p.add_argument("--exact-batch", type=int, default=2, metavar="N",
                 help="images for the exact divergence, d products per step "
                      "(default: %(default)s)")
  p.add_argument("--repeats", type=int, default=1, metavar="N",
                 help="timed runs per row after the compile (default: %(default)s)")
  return p.parse_args(argv)


def _model(workdir):
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from edmjax import data, oracle  # pylint: disable=g-import-not-at-top
  digits = data.load_digits()
  if workdir == "oracle":
    images, labels = digits.images, digits.labels
    means = np.stack([images[labels == k].mean(0) for k in range(10)])
    w = np.bincount(labels, minlength=10) / len(labels)
    den = oracle.gmm_denoiser(jnp.asarray(means), jnp.full((10,), 0.2),
                              jnp.asarray(w, jnp.float32))
    return (lambda variables: den), None, digits.images[-97:], "GMM oracle (10 comps)"
  from edmjax.train import loop  # pylint: disable=g-import-not-at-top
  cfg, _, info = loop.load_run(workdir)
  heldout = digits.images[-cfg.data.holdout:]
  return info.model_fn, info.variables, heldout, f"trained run {workdir}"


def main(argv=None):
  args = parse_args(argv)
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from edmjax import likelihood  # pylint: disable=g-import-not-at-top
  from edmjax.samplers import ode  # pylint: disable=g-import-not-at-top

  make, variables, heldout, what = _model(args.workdir)
  n = args.batch
  images = np.rint((heldout[:n] + 1) * 127.5).astype(np.uint8)
  if images.shape[0] < n:
    images = np.concatenate([images] * (n // images.shape[0] + 1))[:n]
  key = jax.random.key(0)
  latents = jax.random.normal(jax.random.key(1), (n,) + images.shape[1:])

  def bpd(divergence, batch):
    def run(variables, images, key):
      out, parts = likelihood.bits_per_dim(make(variables), images, key,
                                           divergence=divergence, return_parts=True)
      return out, parts.stats.nfe
    return jax.jit(run), (variables, images[:batch], key)

  def sampler(tol):
    def run(variables, z):
      x, stats = ode.ode_sampler(make(variables), z, rtol=tol, atol=tol)
      return x, stats.nfe
    return jax.jit(run), (variables, latents)

  rows = {"log_likelihood hutchinson (1 probe)": bpd("hutchinson", n),
          "log_likelihood exact": bpd("exact", args.exact_batch),
          "ode_sampler rtol=atol=1e-3": sampler(1e-3),
          "ode_sampler rtol=atol=1e-5": sampler(1e-5)}
  for name, (fn, fargs) in rows.items():        # one row at a time, printed when done
    t = time.perf_counter()
    compiled = fn.lower(*fargs).compile()
    compile_s = time.perf_counter() - t
    times, cpu = [], []
    for _ in range(args.repeats):
      t, c = time.perf_counter(), time.process_time()
      out, nfe = jax.block_until_ready(compiled(*fargs))
      times.append(time.perf_counter() - t)
      cpu.append(time.process_time() - c)
    med, med_cpu = float(np.median(times)), float(np.median(cpu))
    b = fargs[1].shape[0]
    row = {"row": name, "model": what, "batch": b, "s_per_image": round(med / b, 4),
           "cpu_s_per_image": round(med_cpu / b, 4), "compile_s": round(compile_s, 1),
           "nfe_mean": float(np.mean(nfe)), "nfe_min": int(np.min(nfe)),
           "nfe_max": int(np.max(nfe)), "load_1min": round(os.getloadavg()[0], 1)}
    if name.startswith("log_likelihood"):
      row["bits_per_dim_mean"] = round(float(np.mean(out)), 4)
    print(json.dumps(row), flush=True)


if __name__ == "__main__":
  main()
