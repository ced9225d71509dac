#!/usr/bin/env python3
"""Sampler study: EDM Figure 2's ranking at small scale, with ideal denoisers.

For (Euler, Heun) × (VP, VE, EDM time-step discretizations) this measures the RMS
error of the final samples against a 1,024-step reference solve of the same
probability-flow ODE from the same latents, over NFE from 5 to about 200. No
network is trained: the denoiser is exact, so every error is the sampler's own.

Two ideal denoisers:
  * digits: the finite-data oracle over scikit-learn's 1,797 8×8 digits (real data,
    no download), D*(x; σ) = Σ_i softmax_i(−‖x − y_i‖²/2σ²) y_i;
  * gmm: a Gaussian mixture of 10 components centred on the class means of the digits.

Each discretization is run with its own σ(t) and s(t) (VP: VP schedule and scaling;
VE: σ(t) = √t; EDM: σ(t) = t, s(t) = 1), all over the same noise range
[σ_min, σ_max] = [0.002, 80] so that all solve the same ODE from the same start.

Three measures per (configuration, NFE), all against the reference from the same
latents:
  * rms_error: RMS over every pixel of every sample (what the target refers to);
  * median_sample_error: the median over samples of each sample's RMS error —
    the local accuracy of the solver, insensitive to the few samples whose
    trajectory passes close to a boundary between modes;
  * mode_switch_fraction: the share of samples that ended in another mode than the
    reference (per-sample RMS error above 0.1; with an exact multi-modal denoiser the
    flow map jumps at mode boundaries, so a solver error moves a few samples to a
    different training image or component, and these dominate rms_error).

Writes `sampler_study.png` (the three measures against NFE), `sampler_study.csv`
and `summary.json` to --out, and prints the configuration that reaches the target
error with the fewest NFE.

Examples:
  python experiments/sampler_study.py --out out/sampler_study
  python experiments/sampler_study.py --num-latents 64 --quick   # a fast look
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import pathlib
import time

import numpy as np

# Configuration: (label, solver, discretization, schedule, scaling).
CONFIGS = (
    ("Euler, VP", "euler", "vp", "vp", "vp"),
    ("Heun, VP", "heun", "vp", "vp", "vp"),
    ("Euler, VE", "euler", "ve", "ve", "none"),
    ("Heun, VE", "heun", "ve", "ve", "none"),
    ("Euler, EDM", "euler", "edm", "linear", "none"),
    ("Heun, EDM", "heun", "edm", "linear", "none"),
)
EULER_STEPS = (5, 7, 10, 14, 20, 28, 40, 57, 80, 113, 160, 200)
HEUN_STEPS = (3, 4, 6, 8, 11, 15, 21, 29, 41, 58, 82, 101)
QUICK_EULER_STEPS = (5, 10, 20, 40, 80, 160)
QUICK_HEUN_STEPS = (3, 6, 11, 21, 41, 81)
MODE_SWITCH = 0.1  # per-sample RMS error that counts as ending in another mode
MEASURES = (("rms_error", "RMS error (all pixels)"),
            ("median_sample_error", "median per-sample RMS error"),
            ("mode_switch_fraction", "share of samples in another mode"))


def parse_args(argv=None):
  p = argparse.ArgumentParser(
      description=__doc__.split("\n\n")[0],
      epilog="\n\n".join(__doc__.split("\n\n")[1:]),
      formatter_class=lambda prog: argparse.RawDescriptionHelpFormatter(prog, width=88))
  p.add_argument("--out", default="out/sampler_study", metavar="DIR",
                 help="output folder (default: %(default)s)")
  p.add_argument("--num-latents", type=int, default=256, metavar="N",
                 help="latents per measurement (default: %(default)s)")
  p.add_argument("--reference-steps", type=int, default=1024, metavar="N",
                 help="Heun steps of the reference solve (default: %(default)s)")
  p.add_argument("--sigma-min", type=float, default=0.002, metavar="S",
                 help="smallest noise level (default: %(default)s)")
  p.add_argument("--sigma-max", type=float, default=80.0, metavar="S",
                 help="largest noise level (default: %(default)s)")
  p.add_argument("--target", type=float, default=1e-3, metavar="E",
                 help="RMS error to reach (default: %(default)s)")
  p.add_argument("--datasets", default="digits,gmm", metavar="LIST",
                 help="comma-separated subset of digits,gmm (default: %(default)s)")
  p.add_argument("--seed", type=int, default=0, help="latent seed (default: %(default)s)")
  p.add_argument("--quick", action="store_true",
                 help="fewer step counts and a 256-step reference, for a fast look")
  p.add_argument("--dry-run", action="store_true",
                 help="print what would be measured and exit")
  return p.parse_args(argv)


def build_denoisers(names):
  """The ideal denoisers of the study, by name."""
  import jax.numpy as jnp
  from edmjax import oracle
  from sklearn.datasets import load_digits

  digits = load_digits()
  images = (digits.images.astype(np.float32) / 16.0 * 2.0 - 1.0)[..., None]  # NHWC [-1,1]
  out = {}
  if "digits" in names:
    out["digits"] = oracle.dataset_denoiser(jnp.asarray(images), chunk_size=600)
  if "gmm" in names:
    means = np.stack([images[digits.target == k].mean(0) for k in range(10)])
    counts = np.bincount(digits.target, minlength=10).astype(np.float64)
    out["gmm"] = oracle.gmm_denoiser(jnp.asarray(means), jnp.full((10,), 0.2),
                                     jnp.asarray(counts / counts.sum(), jnp.float32))
  return out, images.shape[1:]


def crossing_nfe(nfe, err, target):
  """Smallest NFE at which the log-log interpolated error curve reaches `target`."""
  nfe, err = np.asarray(nfe, float), np.asarray(err, float)
  below = np.nonzero(err <= target)[0]
  if below.size == 0:
    return None
  i = below[0]
  if i == 0:
    return float(nfe[0])
  x0, x1 = np.log(nfe[i - 1]), np.log(nfe[i])
  y0, y1 = np.log(err[i - 1]), np.log(err[i])
  return float(np.exp(x0 + (np.log(target) - y0) * (x1 - x0) / (y1 - y0)))


def main(argv=None):
  args = parse_args(argv)
  names = [n.strip() for n in args.datasets.split(",") if n.strip()]
  for n in names:
    if n not in ("digits", "gmm"):
      raise SystemExit(f"--datasets: unknown data set {n!r}; allowed: digits, gmm.")
  euler_steps = QUICK_EULER_STEPS if args.quick else EULER_STEPS
  heun_steps = QUICK_HEUN_STEPS if args.quick else HEUN_STEPS
  ref_steps = min(args.reference_steps, 256) if args.quick else args.reference_steps
  plan = [(d, c[0], n) for d in names for c in CONFIGS
          for n in (euler_steps if c[1] == "euler" else heun_steps)]
  if args.dry_run:
    print(json.dumps({"datasets": names, "configs": [c[0] for c in CONFIGS],
                      "euler_steps": euler_steps, "heun_steps": heun_steps,
                      "reference_steps": ref_steps, "num_latents": args.num_latents,
                      "measurements": len(plan)}, indent=2))
    return

  import jax
  import jax.numpy as jnp
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  from tqdm import tqdm

  from edmjax import samplers

  out = pathlib.Path(args.out)
  out.mkdir(parents=True, exist_ok=True)
  denoisers, image_shape = build_denoisers(names)
  latents = jax.random.normal(jax.random.key(args.seed),
                              (args.num_latents,) + tuple(image_shape), jnp.float32)
  smin, smax = jnp.float32(args.sigma_min), jnp.float32(args.sigma_max)

  def make_run(denoise, solver, disc, sched, scal, num_steps):
    # σ_min/σ_max are traced: one compile per (data set, configuration, step count).
    return jax.jit(lambda lat, lo, hi: samplers.ablation_sampler(
        denoise, lat, num_steps=num_steps, sigma_min=lo, sigma_max=hi, solver=solver,
        discretization=disc, schedule=sched, scaling=scal))

  rows = []
  t0 = time.time()
  bar = tqdm(total=len(plan) + len(names), desc="sampler study", unit="solve")
  for name in names:
    denoise = denoisers[name]
    reference = np.asarray(
        make_run(denoise, "heun", "edm", "linear", "none", ref_steps)(latents, smin, smax))
    bar.update(1)
    for label, solver, disc, sched, scal in CONFIGS:
      for n in (euler_steps if solver == "euler" else heun_steps):
        x = np.asarray(make_run(denoise, solver, disc, sched, scal, n)(latents, smin, smax))
        per_sample = np.sqrt(np.mean((x - reference)**2, axis=(1, 2, 3)))
        nfe = n if solver == "euler" else 2 * n - 1
        rows.append(dict(dataset=name, config=label, solver=solver, discretization=disc,
                         schedule=sched, scaling=scal, num_steps=n, nfe=nfe,
                         rms_error=float(np.sqrt(np.mean(per_sample**2))),
                         median_sample_error=float(np.median(per_sample)),
                         mode_switch_fraction=float(np.mean(per_sample > MODE_SWITCH))))
        bar.update(1)
  bar.close()

  with open(out / "sampler_study.csv", "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=list(rows[0]))
    w.writeheader()
    w.writerows(rows)

  summary = {"target_rms_error": args.target, "reference_steps": ref_steps,
             "num_latents": args.num_latents, "seconds": round(time.time() - t0, 1),
             "device": str(jax.devices()[0]), "datasets": {}}
  fig, axes = plt.subplots(len(MEASURES), len(names), figsize=(6.2 * len(names), 11.5),
                           squeeze=False)
  colors = {"VP": "tab:blue", "VE": "tab:orange", "EDM": "tab:green"}
  max_nfe = max(r["nfe"] for r in rows)
  for col, name in enumerate(names):
    best, best_median = {}, {}
    for label, solver, *_ in CONFIGS:
      sel = [r for r in rows if r["dataset"] == name and r["config"] == label]
      nfe = [r["nfe"] for r in sel]
      for row, (measure, ylabel) in enumerate(MEASURES):
        ax = axes[row, col]
        vals = np.array([r[measure] for r in sel])
        if measure == "mode_switch_fraction":
          ax.semilogx(nfe, vals, "-" if solver == "heun" else "--", marker="o", ms=3,
                      color=colors[label.split(", ")[1]], label=label)
        else:
          ax.loglog(nfe, np.maximum(vals, 1e-12), "-" if solver == "heun" else "--",
                    marker="o", ms=3, color=colors[label.split(", ")[1]], label=label)
          ax.axhline(args.target, color="gray", lw=0.8, ls=":")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
      best[label] = crossing_nfe(nfe, [r["rms_error"] for r in sel], args.target)
      best_median[label] = crossing_nfe(nfe, [r["median_sample_error"] for r in sel],
                                        args.target)
    axes[0, col].set_title({"digits": "finite-data oracle: 1,797 sklearn digits",
                            "gmm": "Gaussian mixture (10 components)"}[name])
    axes[0, col].legend(fontsize=8)
    axes[-1, col].set_xlabel("NFE")
    summary["datasets"][name] = {}
    for key, table in (("rms_error", best), ("median_sample_error", best_median)):
      reached = {k: v for k, v in table.items() if v is not None}
      winner = min(reached, key=reached.get) if reached else None
      summary["datasets"][name][key] = {
          "nfe_to_target": {k: (None if v is None else round(v, 1)) for k, v in table.items()},
          "fewest_nfe": winner}
      print(f"[{name}] NFE to reach {key} {args.target:g}: "
            + ", ".join(f"{k}: {'>' + str(max_nfe) if v is None else round(v)}"
                        for k, v in table.items())
            + f" -> fewest: {winner}")
  fig.suptitle("Deterministic samplers with ideal denoisers (EDM Fig. 2 at small scale), "
               f"{args.num_latents} latents, reference: {ref_steps} Heun steps")
  fig.tight_layout()
  fig.savefig(out / "sampler_study.png", dpi=120)
  with open(out / "summary.json", "w") as f:
    json.dump(summary, f, indent=2)
  print(f"wrote {out / 'sampler_study.png'}, {out / 'sampler_study.csv'}, "
        f"{out / 'summary.json'} in {summary['seconds']} s")


if __name__ == "__main__":
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  main()
