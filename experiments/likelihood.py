"""Bits/dim of a trained run on its held-out images, through the probability-flow ODE.

Thin driver: loads the run for evaluation (edmjax.train.loop.load_run: config and EMA
weights), takes the images the training loop held out (its `data.holdout` examples,
`data.split_holdout`'s stratified seeded sample; or `--images train`, the first ones
it trained on), as 8 bits (round((x + 1)·127.5): exact for 8-bit data sets; for the
17-level digits an 8-bit rendition of them), and evaluates
edmjax.likelihood.bits_per_dim on each: uniform dequantization, log p(z) at σ_min from
an adaptive ODE solve (exact divergence or Hutchinson's estimate), + log₂ 127.5 for
the 8-bit bin. Image i's dequantization noise and probes come from
fold_in(key(--seed), i), so its value does not depend on --batch or the device count.
Each batch is split over one JAX CPU device per core (or every accelerator), each
device solving its rows on its own (samplers.per_device).

Writes a JSON report (default WORKDIR/likelihood.json): the mean bits/dim, its
standard error over images, the NFE per image (mean, min, max), every option and the
per-image values.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from edmjax import cli  # noqa: E402  pylint: disable=wrong-import-position
import sample  # noqa: E402  pylint: disable=wrong-import-position  (check_writable)

EXAMPLES = """
Examples:
  python experiments/likelihood.py --workdir out/digits_edm
  python experiments/likelihood.py --workdir out/digits_edm --divergence exact --num-images 16
  python experiments/likelihood.py --workdir out/digits_edm --rtol 1e-4 --atol 1e-4 \\
      --out out/digits_edm/likelihood_1e-4.json
  python experiments/likelihood.py --workdir out/digits_edm --dry-run
"""


_Formatter = cli.HelpFormatter


def parse_args(argv=None):
  from edmjax import likelihood  # pylint: disable=g-import-not-at-top
  from edmjax.samplers import ode  # pylint: disable=g-import-not-at-top
  p = argparse.ArgumentParser(description=__doc__ + EXAMPLES, formatter_class=_Formatter)
  cli.add_debug_option(p)
  p.add_argument("--workdir", required=True, metavar="DIR", help="training work directory")
  p.add_argument("--step", type=int, default=None, help="checkpoint step (default: newest)")
  p.add_argument("--images", default="heldout", choices=("heldout", "train"),
                 help="which images: the run's held-out ones, or its first training ones")
  p.add_argument("--num-images", type=int, default=None, metavar="N",
                 help="evaluate the first N of them (default: all held-out; 256 train)")
  p.add_argument("--batch", type=int, default=16, metavar="N", help="images per batch")
  p.add_argument("--divergence", default="hutchinson", choices=likelihood.DIVERGENCES,
                 help="exact: d Jacobian products per step; hutchinson: --num-probes")
  p.add_argument("--num-probes", type=int, default=1, metavar="K",
                 help="Hutchinson probes per image")
  p.add_argument("--probe", default="rademacher", choices=likelihood.PROBES)
  p.add_argument("--rtol", type=float, default=1e-5, help="solver relative tolerance")
  p.add_argument("--atol", type=float, default=1e-5, help="solver absolute tolerance")
  p.add_argument("--solver", default="tsit5", choices=ode.ADAPTIVE_SOLVERS)
  p.add_argument("--max-steps", type=int, default=4096, metavar="N",
                 help="most solver steps per image (more is an error)")
  p.add_argument("--sigma-min", type=float, default=0.002, metavar="S",
                 help="the density is that of the data at this noise level (clipped to "
                      "the run's range)")
  p.add_argument("--sigma-max", type=float, default=80.0, metavar="S",
                 help="where the N(0, S² I) prior takes over (clipped to the run's range)")
  p.add_argument("--seed", type=int, default=0, help="dequantization / probe seed")
  p.add_argument("--cpu-devices", type=int, default=None, metavar="N",
                 help="on CPU, split the host into N JAX devices (default: one per core, "
                      "as many as divide --batch; 0 = leave one device)")
  p.add_argument("--out", default=None, metavar="PATH",
                 help="JSON report (default: WORKDIR/likelihood.json)")
  p.add_argument("--no-progress", action="store_true", help="no progress bar")
  p.add_argument("--dry-run", action="store_true",
                 help="print what would be evaluated (from config.json) and exit")
  args = p.parse_args(argv)
  for name in ("batch", "num_probes", "max_steps"):
    if getattr(args, name) < 1:
      p.error(f"--{name.replace('_', '-')} {getattr(args, name)} must be >= 1")
  if args.num_images is not None and args.num_images < 1:
    p.error(f"--num-images {args.num_images} must be >= 1")
  for name in ("rtol", "atol", "sigma_min", "sigma_max"):
    v = getattr(args, name)
    if not (math.isfinite(v) and v > 0):
      p.error(f"--{name.replace('_', '-')} {v} must be a positive number")
  if not args.sigma_min < args.sigma_max:
    p.error(f"--sigma-min {args.sigma_min} must be below --sigma-max {args.sigma_max}")
  if not os.path.exists(os.path.join(args.workdir, "config.json")):
    p.error(f"--workdir {args.workdir!r} has no config.json; pass a work directory of "
            "experiments/train.py")
  return p, args


def _plan(args, cfg):
  """How many images will be evaluated, from the config alone (0: none available)."""
  if args.images == "heldout":
    available = cfg.data.holdout
    n = available if args.num_images is None else min(args.num_images, available)
  else:
    n = args.num_images or 256
  return n


@cli.entry_point
def main(argv=None):
  p, args = parse_args(argv)
  from edmjax.train import loop, parallel  # pylint: disable=g-import-not-at-top
  cfg = loop.read_config(args.workdir)
  n = _plan(args, cfg)
  if n == 0:
    p.error(f"the run holds no images out (data.holdout={cfg.data.holdout}); pass "
            "--images train, or train with data.holdout > 0")
  options = {k: getattr(args, k) for k in ("divergence", "num_probes", "probe", "rtol",
                                           "atol", "solver", "max_steps", "sigma_min",
                                           "sigma_max", "seed")}
  plan = {"workdir": args.workdir, "data": cfg.data.name, "images": args.images,
          "num_images": n, "batch": args.batch, **options,
          "out": args.out or os.path.join(args.workdir, "likelihood.json")}
  sample.check_writable(os.path.dirname(os.path.abspath(plan["out"])), "--out")
  if args.dry_run:
    print(json.dumps(plan, indent=2))
    return 0

  if args.cpu_devices != 0:
    parallel.split_cpu_into_devices(args.batch, max_devices=args.cpu_devices)
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from tqdm.auto import tqdm  # pylint: disable=g-import-not-at-top
  from edmjax import editing, likelihood  # pylint: disable=g-import-not-at-top
  from edmjax.samplers import ode  # pylint: disable=g-import-not-at-top
  from edmjax.train import generate  # pylint: disable=g-import-not-at-top

  try:
    cfg, model, info = loop.load_run(args.workdir, step=args.step)
  except FileNotFoundError as e:
    p.error(str(e))
  if model.round_sigma is not None:
    p.error(f"the run's model is defined on a discrete σ table (objective "
            f"{cfg.loss.objective!r}); the ODE likelihood needs a continuous one")
  data = loop.load_data(cfg)
  if args.images == "heldout":
    pool = data.heldout[:n]
  else:
    pool = data.source.get(np.arange(min(n, len(data.source))))[0]
  images = editing.to_uint8(pool)
  n = len(images)
  mesh = (generate.generation_mesh(args.batch, jax.devices()[:args.cpu_devices])
          if args.cpu_devices else generate.generation_mesh(args.batch))
  lik_opts = {k: options[k] for k in ("divergence", "num_probes", "probe", "rtol", "atol",
                                      "solver", "max_steps", "sigma_min", "sigma_max")}

  def evaluate(variables, images, keys):
    bpd, parts = likelihood.bits_per_dim(info.model_fn(variables), images, keys,
                                         return_parts=True, **lik_opts)
    return bpd, parts.stats.nfe

  run = jax.jit(ode.per_device(evaluate, mesh, replicated=1))
  base = jax.random.key(args.seed)
  variables = jax.device_put(info.variables, parallel.replicated_sharding(mesh))
  bpd, nfe = [], []
  start = time.perf_counter()
  bar = tqdm(total=n, unit="image", file=sys.stderr, dynamic_ncols=True,
             disable=args.no_progress)
  try:
    for s in range(0, n, args.batch):
      index = np.arange(s, min(s + args.batch, n))
      count = len(index)
      index = np.concatenate([index, np.repeat(index[-1:], args.batch - count)])
      keys = jax.vmap(lambda i: jax.random.fold_in(base, i))(index)
      out, used = run(variables, images[index], keys)
      bpd.append(np.asarray(out)[:count])
      nfe.append(np.asarray(used)[:count])
      bar.update(count)
  finally:
    bar.close()
  bpd, nfe = np.concatenate(bpd).astype(np.float64), np.concatenate(nfe)
  stderr = float(bpd.std(ddof=1) / math.sqrt(n)) if n > 1 else None
  report = {**plan, "step": info.step, "num_images": n,
            "image_shape": list(info.image_shape),
            "bits_per_dim": {"mean": float(bpd.mean()), "stderr": stderr},
            "nfe": {"mean": float(nfe.mean()), "min": int(nfe.min()), "max": int(nfe.max())},
            "seconds": round(time.perf_counter() - start, 1),
            "devices": int(mesh.devices.size),
            "per_image": {"bits_per_dim": bpd.tolist(), "nfe": nfe.tolist()}}
  os.makedirs(os.path.dirname(os.path.abspath(plan["out"])), exist_ok=True)
  with open(plan["out"], "w", encoding="utf-8") as f:
    json.dump(report, f, indent=2)
  err = f" ± {stderr:.4f}" if stderr is not None else ""
  print(f"{n} {args.images} images of {args.workdir} (step {info.step}): "
        f"{bpd.mean():.4f}{err} bits/dim, {nfe.mean():.0f} NFE per image "
        f"({args.divergence}) -> {plan['out']}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
