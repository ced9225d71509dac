#!/usr/bin/env python3
"""Sampler study: every sampler of edmjax with ideal denoisers (EDM Figure 2 and beyond).

No network is trained: the denoiser is exact, so every error is the sampler's own.
Two ideal denoisers:
  * digits: the finite-data oracle over scikit-learn's 1,797 8×8 digits (real data,
    no download), D*(x; σ) = Σ_i softmax_i(−‖x − y_i‖²/2σ²) y_i;
  * gmm: a Gaussian mixture of 10 components centred on the class means of the digits.

Part 1, EDM Figure 2 at small scale: for (Euler, Heun) × (VP, VE, EDM time-step
discretizations), each with its own σ(t) and s(t) (VP: VP schedule and scaling; VE:
σ(t) = √t; EDM: σ(t) = t, s(t) = 1), all over [σ_min, σ_max] = [0.002, 80].

Part 2, every deterministic sampler of `edmjax.sampling` (Karras steps, ρ = 7, the
same range): Euler, Heun, DPM-2, LMS (order 4), DPM++(2S), DPM++(2M), DPM++(2M)
SDE and DPM++(3M) SDE with η = 0, DPM-fast, DPM-adaptive (order 3, its NFE set by
rtol; atol = rtol/10). DPM-fast and DPM-adaptive stop at σ_min; the study adds one
denoiser evaluation there (x ← D(x; σ_min), counted in their NFE) so that every
sampler is compared at σ = 0.

Deterministic measures per (configuration, NFE), against a reference solve (Heun,
--reference-steps) from the same latents:
  * rms_error: RMS over every pixel of every sample (what the target refers to);
  * median_sample_error: the median over samples of each sample's RMS error;
  * mode_switch_fraction: the share of samples that ended in another mode than the
    reference (per-sample RMS error above 0.1).

Part 3, the stochastic samplers (EDM churn S_churn = 40, Euler-ancestral,
DPM-2-ancestral, DPM++(2S)-ancestral, DPM++ SDE, DPM++(2M) SDE, DPM++(3M) SDE with
η = 1, DPM-fast and DPM-adaptive with η = 1). Their per-step draws define no common
Brownian path across step counts (as k-diffusion's default randn noise), so there is
no pathwise reference: they are measured by the distance of their output
distribution to the exact one, the Fréchet distance in pixel space (FD_pixels)
between the samples and the exact distribution's mean and covariance (the data set's
for digits, the mixture's closed form for gmm), beside the floor of exact draws of the
same size.

Writes to --out: `sampler_study.png` (part 1), `sampler_study_all.png` (parts 2 and 3),
`sampler_study.csv` (part 1), `sampler_study_samplers.csv` (part 2),
`sampler_study_stochastic.csv` (part 3) and
`summary.json`: NFE needed to reach --target RMS (log-log interpolation), the RMS and
the median per-sample error at 10/20/35 NFE, the FD at 10/20/35 NFE beside the data
set's own floor, and the best sampler at each budget.

Examples:
  python experiments/sampler_study.py --out out/sampler_study
  python experiments/sampler_study.py --num-latents 64 --quick   # a fast look
  python experiments/sampler_study.py --parts 2 --datasets gmm   # one part, one data set
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import pathlib
import time

import numpy as np

from edmjax import cli

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
BUDGETS = (10, 20, 35)  # NFE at which every sampler's error is reported

# Part 2: (label, sampler name, options, "one" | "two" evaluations per step | "fast" |
# "adaptive"). Karras steps over the study's range.
SAMPLERS = (
    ("Euler", "euler", {}, "one"),
    ("Heun", "heun", {}, "two"),
    ("DPM-2", "dpm_2", {}, "two"),
    ("LMS (order 4)", "lms", {"order": 4}, "one"),
    ("DPM++(2S)", "dpmpp_2s_ancestral", {"eta": 0.0}, "two"),
    ("DPM++(2M)", "dpmpp_2m", {}, "one"),
    ("DPM++(2M) SDE, η = 0", "dpmpp_2m_sde", {"eta": 0.0}, "one"),
    ("DPM++(3M) SDE, η = 0", "dpmpp_3m_sde", {"eta": 0.0}, "one"),
    ("DPM-fast", "dpm_fast", {}, "fast"),
    ("DPM-adaptive", "dpm_adaptive", {}, "adaptive"),
)
# Part 3: the stochastic samplers.
STOCHASTIC = (
    ("EDM, S_churn = 40", "edm", {"S_churn": 40.0}, "two"),
    ("Euler-ancestral", "euler_ancestral", {}, "one"),
    ("DPM-2-ancestral", "dpm_2_ancestral", {}, "two"),
    ("DPM++(2S)-ancestral", "dpmpp_2s_ancestral", {}, "two"),
    ("DPM++ SDE", "dpmpp_sde", {}, "two"),
    ("DPM++(2M) SDE", "dpmpp_2m_sde", {}, "one"),
    ("DPM++(3M) SDE", "dpmpp_3m_sde", {}, "one"),
    ("DPM-fast, η = 1", "dpm_fast", {"eta": 1.0}, "fast"),
    ("DPM-adaptive, η = 1", "dpm_adaptive", {"eta": 1.0}, "adaptive"),
)
NFE_GRID = (5, 7, 10, 14, 20, 28, 35, 50, 70, 100, 140)
QUICK_NFE_GRID = (5, 10, 20, 35, 70, 140)
STOCHASTIC_NFE = (10, 20, 35, 70)
ADAPTIVE_RTOL = (0.2, 0.1, 0.05, 0.02, 0.01, 0.005, 0.002, 0.001, 5e-4, 2e-4)
QUICK_ADAPTIVE_RTOL = (0.1, 0.02, 0.005, 0.001)


def parse_args(argv=None):
  p = argparse.ArgumentParser(
      description=__doc__.split("\n\n")[0],
      epilog="\n\n".join(__doc__.split("\n\n")[1:]),
      formatter_class=lambda prog: argparse.RawDescriptionHelpFormatter(prog, width=88))
  cli.add_debug_option(p)
  p.add_argument("--out", default="out/sampler_study", metavar="DIR",
                 help="output folder (default: %(default)s)")
  p.add_argument("--num-latents", type=int, default=128, metavar="N",
                 help="latents per measurement (default: %(default)s)")
  p.add_argument("--reference-steps", type=int, default=512, metavar="N",
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
  p.add_argument("--parts", default="1,2,3", metavar="LIST",
                 help="comma-separated subset of 1 (Figure 2), 2 (deterministic samplers), "
                      "3 (stochastic samplers) (default: %(default)s)")
  p.add_argument("--stochastic-latents", type=int, default=512, metavar="N",
                 help="samples per stochastic measurement (default: %(default)s)")
  p.add_argument("--quick", action="store_true",
                 help="fewer step counts and a 256-step reference, for a fast look")
  p.add_argument("--dry-run", action="store_true",
                 help="print what would be measured and exit")
  return p.parse_args(argv)


def build_denoisers(names):
  """The ideal denoisers of the study, by name, and the exact (mean, cov) of each
  data distribution (pixel space, float64)."""
  import jax.numpy as jnp
  from edmjax import oracle
  from sklearn.datasets import load_digits

  digits = load_digits()
  images = (digits.images.astype(np.float32) / 16.0 * 2.0 - 1.0)[..., None]  # NHWC [-1,1]
  out, exact = {}, {}
  flat = images.reshape(len(images), -1).astype(np.float64)
  if "digits" in names:
    out["digits"] = oracle.dataset_denoiser(jnp.asarray(images), chunk_size=600)
    exact["digits"] = (flat.mean(0), np.cov(flat, rowvar=False, bias=True))
  if "gmm" in names:
    means = np.stack([images[digits.target == k].mean(0) for k in range(10)])
    counts = np.bincount(digits.target, minlength=10).astype(np.float64)
    weights, std = counts / counts.sum(), 0.2
    out["gmm"] = oracle.gmm_denoiser(jnp.asarray(means), jnp.full((10,), std),
                                     jnp.asarray(weights, jnp.float32))
    m = means.reshape(10, -1).astype(np.float64)
    mu = weights @ m
    cov = std**2 * np.eye(m.shape[1]) + (m * weights[:, None]).T @ m - np.outer(mu, mu)
    exact["gmm"] = (mu, cov)
    out["gmm_sample"] = lambda key, n: oracle.gmm_sample(
        key, n, jnp.asarray(means), jnp.full((10,), std), jnp.asarray(weights)).x
  out["data"] = images
  return out, exact, images.shape[1:]


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


def value_at(nfe, err, at):
  """The error at `at` NFE, interpolated on the log-log curve (None outside it)."""
  nfe, err = np.asarray(nfe, float), np.asarray(err, float)
  order = np.argsort(nfe)
  nfe, err = nfe[order], np.maximum(err[order], 1e-30)
  if not nfe[0] <= at <= nfe[-1]:
    return None
  return float(np.exp(np.interp(np.log(at), np.log(nfe), np.log(err))))


def sampler_points(kind, options, quick):
  """[(spec options, nominal NFE)] of one sampler over the study's NFE grid."""
  grid = QUICK_NFE_GRID if quick else NFE_GRID
  if kind == "adaptive":
    return [({**options, "rtol": r, "atol": r / 10}, None)
            for r in (QUICK_ADAPTIVE_RTOL if quick else ADAPTIVE_RTOL)]
  if kind == "fast":   # n − 1 evaluations of DPM-fast + the final denoising
    return [({**options, "nfe": n - 1}, n) for n in grid if n >= 2]
  if kind == "two":    # NFE = 2N − 1, N >= 2
    steps = sorted({max(2, (n + 1) // 2) for n in grid})
    return [({**options, "num_steps": k}, 2 * k - 1) for k in steps]
  return [({**options, "num_steps": n}, n) for n in grid]


def make_sampler(denoise, name, options, sigma_min, sigma_max):
  """A jitted `run(latents, key) -> (samples, nfe per sample)` of one spec."""
  import jax
  import jax.numpy as jnp
  from edmjax import sampling, samplers

  if name == "dpm_adaptive":
    def run(latents, key):
      x, info = samplers.dpm_adaptive_sampler(
          denoise, latents, key, sigma_min=sigma_min, sigma_max=sigma_max,
          return_info=True, **options)
      sigma = jnp.full((x.shape[0],), sigma_min, x.dtype)
      return denoise(x, sigma), info.nfe + 1
    return jax.jit(run)
  spec = sampling.SamplerSpec(name, sigma_min=sigma_min, sigma_max=sigma_max, **options)

  def run(latents, key):
    x = sampling.sample(denoise, latents, key, spec)
    nfe = spec.nfe()
    if name == "dpm_fast":   # finish at σ = 0 like the others: x ← D(x; σ_min)
      x = denoise(x, jnp.full((x.shape[0],), sigma_min, x.dtype))
      nfe += 1
    return x, jnp.full((x.shape[0],), nfe)
  return jax.jit(run)


def frechet_to_exact(samples, mean, cov):
  """FD between the samples' Gaussian fit and the exact (mean, cov), pixel space."""
  from edmjax.eval import frechet
  x = np.asarray(samples, np.float64).reshape(len(samples), -1)
  return float(frechet.frechet_distance(x.mean(0), np.cov(x, rowvar=False, bias=True),
                                        mean, cov))


@cli.entry_point
def main(argv=None):
  args = parse_args(argv)
  names = [n.strip() for n in args.datasets.split(",") if n.strip()]
  for n in names:
    if n not in ("digits", "gmm"):
      raise SystemExit(f"--datasets: unknown data set {n!r}; allowed: digits, gmm.")
  parts = {p.strip() for p in args.parts.split(",") if p.strip()}
  if not parts or not parts <= {"1", "2", "3"}:
    raise SystemExit(f"--parts: {args.parts!r}; allowed: a subset of 1,2,3.")
  euler_steps = QUICK_EULER_STEPS if args.quick else EULER_STEPS
  heun_steps = QUICK_HEUN_STEPS if args.quick else HEUN_STEPS
  ref_steps = min(args.reference_steps, 256) if args.quick else args.reference_steps
  plan1 = [(d, c[0], n) for d in names for c in CONFIGS
           for n in (euler_steps if c[1] == "euler" else heun_steps)] if "1" in parts else []
  plan2 = [(d, label, o) for d in names for label, _, opts, kind in SAMPLERS
           for o, _ in sampler_points(kind, opts, args.quick)] if "2" in parts else []
  plan3 = [(d, label, o) for d in names for label, _, opts, kind in STOCHASTIC
           for o, _ in _stochastic_points(kind, opts)] if "3" in parts else []
  if args.dry_run:
    print(json.dumps({"datasets": names, "parts": sorted(parts),
                      "configs": [c[0] for c in CONFIGS],
                      "samplers": [s[0] for s in SAMPLERS],
                      "stochastic": [s[0] for s in STOCHASTIC],
                      "reference_steps": ref_steps, "num_latents": args.num_latents,
                      "stochastic_latents": args.stochastic_latents,
                      "measurements": len(plan1) + len(plan2) + len(plan3)}, indent=2))
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
  denoisers, exact, image_shape = build_denoisers(names)
  latents = jax.random.normal(jax.random.key(args.seed),
                              (args.num_latents,) + tuple(image_shape), jnp.float32)
  smin, smax = jnp.float32(args.sigma_min), jnp.float32(args.sigma_max)

  def make_run(denoise, solver, disc, sched, scal, num_steps):
    # σ_min/σ_max are traced: one compile per (data set, configuration, step count).
    return jax.jit(lambda lat, lo, hi: samplers.ablation_sampler(
        denoise, lat, num_steps=num_steps, sigma_min=lo, sigma_max=hi, solver=solver,
        discretization=disc, schedule=sched, scaling=scal))

  def errors_of(x, reference):
    per_sample = np.sqrt(np.mean((np.asarray(x) - reference)**2, axis=(1, 2, 3)))
    return dict(rms_error=float(np.sqrt(np.mean(per_sample**2))),
                median_sample_error=float(np.median(per_sample)),
                mode_switch_fraction=float(np.mean(per_sample > MODE_SWITCH)))

  rows, rows_all, rows_sto = [], [], []
  t0 = time.time()
  bar = tqdm(total=len(plan1) + len(plan2) + len(plan3) + len(names), desc="sampler study",
             unit="solve")
  references = {}
  for name in names:
    denoise = denoisers[name]
    if "1" in parts or "2" in parts:
      references[name] = np.asarray(make_run(denoise, "heun", "edm", "linear", "none",
                                             ref_steps)(latents, smin, smax))
    bar.update(1)
    if "1" in parts:
      for label, solver, disc, sched, scal in CONFIGS:
        for n in (euler_steps if solver == "euler" else heun_steps):
          x = make_run(denoise, solver, disc, sched, scal, n)(latents, smin, smax)
          rows.append(dict(dataset=name, config=label, solver=solver, discretization=disc,
                           schedule=sched, scaling=scal, num_steps=n,
                           nfe=n if solver == "euler" else 2 * n - 1,
                           **errors_of(x, references[name])))
          bar.update(1)
    if "2" in parts:
      for label, sampler, opts, kind in SAMPLERS:
        for o, _ in sampler_points(kind, opts, args.quick):
          run = make_sampler(denoise, sampler, o, args.sigma_min, args.sigma_max)
          x, nfe = run(latents, jax.random.key(args.seed + 1))
          rows_all.append(dict(dataset=name, sampler=label, name=sampler,
                               options=json.dumps(o), nfe=float(np.mean(np.asarray(nfe))),
                               **errors_of(x, references[name])))
          bar.update(1)
    if "3" in parts:
      z = jax.random.normal(jax.random.key(args.seed + 2),
                            (args.stochastic_latents,) + tuple(image_shape), jnp.float32)
      mean, cov = exact[name]
      floor = _exact_floor(name, denoisers, args.stochastic_latents, mean, cov, args.seed)
      for label, sampler, opts, kind in STOCHASTIC:
        for o, _ in _stochastic_points(kind, opts):
          run = make_sampler(denoise, sampler, o, args.sigma_min, args.sigma_max)
          x, nfe = run(z, jax.random.key(args.seed + 3))
          rows_sto.append(dict(dataset=name, sampler=label, name=sampler,
                               options=json.dumps(o), nfe=float(np.mean(np.asarray(nfe))),
                               fd_pixels=frechet_to_exact(x, mean, cov),
                               fd_floor=floor))
          bar.update(1)
  bar.close()

  def write_csv(path, table):
    if table:
      with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(table[0]))
        w.writeheader()
        w.writerows(table)

  write_csv(out / "sampler_study.csv", rows)
  write_csv(out / "sampler_study_samplers.csv", rows_all)
  write_csv(out / "sampler_study_stochastic.csv", rows_sto)
  summary = {"target_rms_error": args.target, "reference_steps": ref_steps,
             "num_latents": args.num_latents,
             "stochastic_latents": args.stochastic_latents,
             "seconds": round(time.time() - t0, 1), "device": str(jax.devices()[0]),
             "datasets": {}}
  for name in names:
    summary["datasets"][name] = _summarise(name, rows, rows_all, rows_sto, args.target)
    for key in ("figure2", "samplers", "stochastic"):
      part = summary["datasets"][name].get(key)
      if part:
        print(f"[{name}] {key}: " + json.dumps(part.get("best_at_budget", part)))
  if rows:
    _plot_figure2(plt, rows, names, args, ref_steps, out / "sampler_study.png")
  if rows_all or rows_sto:
    _plot_all(plt, rows_all, rows_sto, names, args, out / "sampler_study_all.png")
  with open(out / "summary.json", "w") as f:
    json.dump(summary, f, indent=2)
  print(f"wrote {out} in {summary['seconds']} s")


def _stochastic_points(kind, options):
  """[(spec options, nominal NFE)] of a stochastic sampler at STOCHASTIC_NFE."""
  if kind == "adaptive":
    return [({**options, "rtol": r, "atol": r / 10}, None) for r in (0.1, 0.03, 0.01)]
  if kind == "fast":
    return [({**options, "nfe": n - 1}, n) for n in STOCHASTIC_NFE]
  if kind == "two":
    return [({**options, "num_steps": (n + 1) // 2}, 2 * ((n + 1) // 2) - 1)
            for n in STOCHASTIC_NFE]
  return [({**options, "num_steps": n}, n) for n in STOCHASTIC_NFE]


def _exact_floor(name, denoisers, n, mean, cov, seed):
  """FD of n exact draws (training images with replacement, or mixture samples)."""
  import jax
  if name == "digits":
    idx = np.random.default_rng(seed).integers(0, len(denoisers["data"]), n)
    draws = denoisers["data"][idx]
  else:
    draws = np.asarray(denoisers["gmm_sample"](jax.random.key(seed + 4), n))
  return frechet_to_exact(draws, mean, cov)


def _summarise(name, rows, rows_all, rows_sto, target):
  out = {}
  if rows:
    table = {}
    for label, *_ in CONFIGS:
      sel = [r for r in rows if r["dataset"] == name and r["config"] == label]
      table[label] = crossing_nfe([r["nfe"] for r in sel], [r["rms_error"] for r in sel],
                                  target)
    reached = {k: v for k, v in table.items() if v is not None}
    out["figure2"] = {"nfe_to_target": {k: None if v is None else round(v, 1)
                                        for k, v in table.items()},
                      "fewest_nfe": min(reached, key=reached.get) if reached else None}
  if rows_all:
    samplers_out, at = {}, {b: {} for b in BUDGETS}
    for label, *_ in SAMPLERS:
      sel = sorted([r for r in rows_all if r["dataset"] == name and r["sampler"] == label],
                   key=lambda r: r["nfe"])
      nfe, err = [r["nfe"] for r in sel], [r["rms_error"] for r in sel]
      median = [r["median_sample_error"] for r in sel]
      entry = {"nfe_to_target": crossing_nfe(nfe, err, target)}
      for b in BUDGETS:
        entry[f"rms_at_{b}"] = value_at(nfe, err, b)
        entry[f"median_at_{b}"] = value_at(nfe, median, b)
        if entry[f"rms_at_{b}"] is not None:
          at[b][label] = entry[f"rms_at_{b}"]
      samplers_out[label] = entry
    reached = {k: v["nfe_to_target"] for k, v in samplers_out.items()
               if v["nfe_to_target"] is not None}
    out["samplers"] = {"table": samplers_out,
                       "fewest_nfe_to_target": min(reached, key=reached.get) if reached
                       else None,
                       "best_at_budget": {b: min(v, key=v.get) if v else None
                                          for b, v in at.items()}}
  if rows_sto:
    sto, at = {}, {b: {} for b in BUDGETS}
    for label, *_ in STOCHASTIC:
      sel = sorted([r for r in rows_sto if r["dataset"] == name and r["sampler"] == label],
                   key=lambda r: r["nfe"])
      nfe, fd = [r["nfe"] for r in sel], [r["fd_pixels"] for r in sel]
      entry = {f"fd_at_{b}": value_at(nfe, fd, b) for b in BUDGETS}
      for b in BUDGETS:
        if entry[f"fd_at_{b}"] is not None:
          at[b][label] = entry[f"fd_at_{b}"]
      sto[label] = entry
    floor = [r["fd_floor"] for r in rows_sto if r["dataset"] == name]
    out["stochastic"] = {"table": sto, "fd_floor": floor[0] if floor else None,
                         "best_at_budget": {b: min(v, key=v.get) if v else None
                                            for b, v in at.items()}}
  return out


def _plot_figure2(plt, rows, names, args, ref_steps, path):
  fig, axes = plt.subplots(len(MEASURES), len(names), figsize=(6.2 * len(names), 11.5),
                           squeeze=False)
  colors = {"VP": "tab:blue", "VE": "tab:orange", "EDM": "tab:green"}
  for col, name in enumerate(names):
    for label, solver, *_ in CONFIGS:
      sel = [r for r in rows if r["dataset"] == name and r["config"] == label]
      nfe = [r["nfe"] for r in sel]
      for row, (measure, ylabel) in enumerate(MEASURES):
        ax = axes[row, col]
        vals = np.array([r[measure] for r in sel])
        style = dict(marker="o", ms=3, color=colors[label.split(", ")[1]], label=label)
        if measure == "mode_switch_fraction":
          ax.semilogx(nfe, vals, "-" if solver == "heun" else "--", **style)
        else:
          ax.loglog(nfe, np.maximum(vals, 1e-12), "-" if solver == "heun" else "--", **style)
          ax.axhline(args.target, color="gray", lw=0.8, ls=":")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="both", alpha=0.3)
    axes[0, col].set_title({"digits": "finite-data oracle: 1,797 sklearn digits",
                            "gmm": "Gaussian mixture (10 components)"}[name])
    axes[0, col].legend(fontsize=8)
    axes[-1, col].set_xlabel("NFE")
  fig.suptitle("Deterministic samplers with ideal denoisers (EDM Fig. 2 at small scale), "
               f"{args.num_latents} latents, reference: {ref_steps} Heun steps")
  fig.tight_layout()
  fig.savefig(path, dpi=120)


def _plot_all(plt, rows_all, rows_sto, names, args, path):
  nrows = int(bool(rows_all)) + int(bool(rows_sto))
  fig, axes = plt.subplots(nrows, len(names), figsize=(6.2 * len(names), 5.2 * nrows),
                           squeeze=False)
  cmap = plt.get_cmap("tab10")
  for col, name in enumerate(names):
    row = 0
    if rows_all:
      ax = axes[row, col]
      for i, (label, *_) in enumerate(SAMPLERS):
        sel = sorted([r for r in rows_all if r["dataset"] == name and r["sampler"] == label],
                     key=lambda r: r["nfe"])
        ax.loglog([r["nfe"] for r in sel], [max(r["rms_error"], 1e-12) for r in sel],
                  marker="o", ms=3, color=cmap(i % 10), ls="-" if i < 10 else "--",
                  label=label)
      ax.axhline(args.target, color="gray", lw=0.8, ls=":")
      ax.set_ylabel("RMS error vs reference solve")
      ax.set_title({"digits": "digits oracle", "gmm": "Gaussian mixture"}[name]
                   + ": deterministic samplers")
      ax.legend(fontsize=7)
      ax.grid(True, which="both", alpha=0.3)
      row += 1
    if rows_sto:
      ax = axes[row, col]
      for i, (label, *_) in enumerate(STOCHASTIC):
        sel = sorted([r for r in rows_sto if r["dataset"] == name and r["sampler"] == label],
                     key=lambda r: r["nfe"])
        ax.loglog([r["nfe"] for r in sel], [r["fd_pixels"] for r in sel], marker="o", ms=3,
                  color=cmap(i % 10), label=label)
      floor = [r["fd_floor"] for r in rows_sto if r["dataset"] == name]
      if floor:
        ax.axhline(floor[0], color="gray", lw=0.8, ls=":", label="exact draws")
      ax.set_ylabel("FD_pixels to the exact distribution")
      ax.set_title({"digits": "digits oracle", "gmm": "Gaussian mixture"}[name]
                   + f": stochastic samplers ({args.stochastic_latents} samples)")
      ax.legend(fontsize=7)
      ax.grid(True, which="both", alpha=0.3)
    axes[-1, col].set_xlabel("NFE")
  fig.tight_layout()
  fig.savefig(path, dpi=120)


if __name__ == "__main__":
  os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
  main()
