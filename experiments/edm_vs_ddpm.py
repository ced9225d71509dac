"""EDM vs DDPM on the embedded digits: the same UNet, the same CPU-time budget.

Trains `digits_edm` (EDM preconditioning and loss) and `digits_ddpm` (DDPM ε-prediction,
linear β, T = 1000) with the same SongUNet, batch and optimizer, each for the same
budget of *training process CPU time* (compilation included), and measures FD_digits
(`edmjax.eval.digits_metrics`) of N generated digits at several points of that budget:

  EDM model   Heun, Karras steps, 18 steps = 35 NFE          (edm-heun-18)
  DDPM model  ancestral, all 1,000 steps                     (ddpm-ancestral)
              DDIM (η = 0) with 35 and 100 steps             (ddim-35, ddim-100)
              EDM's Heun sampler through the VP bridge,      (heun-18 on the DDPM model)
              steps rounded to the DDPM σ table, 35 NFE

Ancestral sampling costs 1,000 evaluations per image, so by default it runs only at
the last point (`--ancestral-every-point` runs it everywhere). A row "real" gives
FD_digits of N held-out real digits: the floor of the metric at this N. At the end
the loss per σ of both models is evaluated against the finite-data floor L*(σ).

CPU time is `time.process_time()` of this process around each training call (all
threads): unlike wall time it is not inflated by other programs sharing the machine.
On an otherwise idle 2-core machine, 8 CPU-minutes take about 4-5 wall minutes.

Outputs in --out (default out/edm_vs_ddpm/): results.csv (one row per model,
sampler, point), fd_vs_time.png, loss_per_sigma.png / .csv, grids/*.png,
summary.json, and the two training work directories edm/ and ddpm/.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from edmjax import cli  # noqa: E402  pylint: disable=wrong-import-position

EXAMPLES = """
Examples:
  # the default study: 8 CPU-minutes per model, FD_digits of 256 samples at 3 points
  nohup python experiments/edm_vs_ddpm.py > out/edm_vs_ddpm.log 2>&1 &
  # what would run, then exit
  python experiments/edm_vs_ddpm.py --dry-run
  # a longer, more precise study
  python experiments/edm_vs_ddpm.py --budget-minutes 30 --num-images 1000 --points 5
  # a smoke run (seconds of training)
  python experiments/edm_vs_ddpm.py --budget-minutes 0.3 --num-images 32 --points 1 \\
      --out /tmp/edm_vs_ddpm
"""

MODELS = {"edm": "digits_edm", "ddpm": "digits_ddpm"}


_Formatter = cli.HelpFormatter


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__ + EXAMPLES, formatter_class=_Formatter)
  cli.add_debug_option(p)
  p.add_argument("--budget-minutes", type=float, default=8.0, metavar="MIN",
                 help="training budget per model, in CPU-minutes of this process")
  p.add_argument("--points", type=int, default=3, metavar="K",
                 help="evaluation points per model, at budget·2^-(K-1), ..., budget/2, budget")
  p.add_argument("--num-images", type=int, default=256, metavar="N",
                 help="generated images per sampler and point (FD_digits sample size)")
  p.add_argument("--models", default="edm,ddpm", metavar="LIST",
                 help="which models to train: edm, ddpm or both")
  p.add_argument("--ancestral-every-point", action="store_true",
                 help="run the 1,000-step ancestral sampler at every point, not only the last")
  p.add_argument("--sigma-points", type=int, default=16, metavar="S",
                 help="σ grid of the final loss-per-σ diagnostic (0: skip)")
  p.add_argument("--out", default="out/edm_vs_ddpm", metavar="DIR", help="output folder")
  p.add_argument("--fresh", action="store_true",
                 help="delete earlier work directories in --out first (otherwise resume them)")
  p.add_argument("--set", dest="overrides", action="append", default=[],
                 metavar="FIELD=VALUE", help="config override applied to both models")
  p.add_argument("--seed", type=int, default=0, metavar="S", help="sampling seed")
  p.add_argument("--dry-run", action="store_true", help="print the plan and exit")
  return p.parse_args(argv)


def _samplers(model: str):
  from edmjax.sampling import SamplerSpec  # pylint: disable=g-import-not-at-top
  if model == "edm":
    return [SamplerSpec("edm", num_steps=18)]
  return [SamplerSpec("ddpm"), SamplerSpec("ddim", num_steps=35),
          SamplerSpec("ddim", num_steps=100), SamplerSpec("edm", num_steps=18)]


def _config(model: str, overrides):
  import configs  # pylint: disable=g-import-not-at-top
  from edmjax.train import config as cfg_lib  # pylint: disable=g-import-not-at-top
  cfg = configs.get_config(MODELS[model])
  cfg = dataclasses.replace(cfg, total_steps=10**8, checkpoint_every=0, sample_every=0,
                            keep_checkpoints=2,
                            sample=dataclasses.replace(cfg.sample, num_images=0))
  return cfg_lib.apply_overrides(cfg, overrides)


def _targets(budget_s: float, points: int):
  return [budget_s * 2.0 ** -(points - 1 - k) for k in range(points)]


class _Clock:
  """Cumulative training CPU and wall seconds of one model, persisted for resumes."""

  def __init__(self, path):
    self.path = path
    self.cpu = self.wall = 0.0
    self.done_points = []
    if os.path.exists(path):
      with open(path, encoding="utf-8") as f:
        d = json.load(f)
      self.cpu, self.wall, self.done_points = d["cpu"], d["wall"], d["done_points"]

  def save(self):
    with open(self.path, "w", encoding="utf-8") as f:
      json.dump({"cpu": self.cpu, "wall": self.wall, "done_points": self.done_points}, f)


def _train_to(cfg, workdir, clock, target_cpu, log):
  """Trains in chunks until the cumulative training CPU time reaches `target_cpu`."""
  from edmjax.train import loop  # pylint: disable=g-import-not-at-top
  step = _current_step(workdir)
  rate = None  # steps per CPU second, from the last chunk
  while clock.cpu < target_cpu:
    left = target_cpu - clock.cpu
    chunk = 25 if rate is None else max(1, int(round(left * rate)))
    c0, w0 = time.process_time(), time.time()
    loop.train(cfg, workdir, stop_at_step=step + chunk, progress=False, log=None)
    dc, dw = time.process_time() - c0, time.time() - w0
    clock.cpu += dc
    clock.wall += dw
    step += chunk
    if rate is not None or step > chunk:
      rate = chunk / max(dc, 1e-3)
    else:
      rate = chunk / max(dc, 1e-3) * 2.0  # the first chunk includes the compilation
    clock.save()
    log(f"  step {step}: {clock.cpu:.0f} CPU-s / {clock.wall:.0f} wall-s of training")
  return step


def _current_step(workdir):
  ckpt = os.path.join(workdir, "checkpoints")
  if not os.path.isdir(ckpt):
    return 0
  steps = [int(d) for d in os.listdir(ckpt) if d.isdigit()]
  return max(steps, default=0)


class _Evaluator:
  """Sampling of one trained model (its weights are arguments: one compile per spec)."""

  def __init__(self, workdir):
    from edmjax.train import loop  # pylint: disable=g-import-not-at-top
    self.workdir = workdir
    self.cfg, self.model, self.info = loop.load_run(workdir)

  def variables(self):
    from edmjax.train import loop  # pylint: disable=g-import-not-at-top
    _, self.model, self.info = loop.load_run(self.workdir)
    return self.info.variables, self.info.step, self.info.position


def _generate(ev, spec, variables, seeds):
  import numpy as np  # pylint: disable=g-import-not-at-top
  from edmjax.train import generate  # pylint: disable=g-import-not-at-top
  c0, w0 = time.process_time(), time.time()
  images = generate.generate(ev.info.model_fn, seeds, spec, image_shape=ev.info.image_shape,
                             batch_size=len(seeds), variables=variables)
  return np.asarray(images), time.process_time() - c0, time.time() - w0


def _score(images, classifier):
  import numpy as np  # pylint: disable=g-import-not-at-top
  from edmjax.eval import digits_metrics  # pylint: disable=g-import-not-at-top
  finite = bool(np.all(np.isfinite(images)))
  if not finite:
    return {"fd_digits": float("nan"), "confidence": float("nan"),
            "class_coverage": float("nan"), "digits_score": float("nan")}
  m = digits_metrics(np.clip(images, -1.0, 1.0), classifier)
  return {k: m[k] for k in ("fd_digits", "confidence", "class_coverage", "digits_score")}


@cli.entry_point
def main(argv=None):
  args = parse_args(argv)
  models_to_run = [m.strip() for m in args.models.split(",") if m.strip()]
  for m in models_to_run or [args.models]:
    if m not in MODELS:
      raise cli.UsageError(f"--models={args.models!r}: {m!r} is not a model; choose from "
                           f"{', '.join(sorted(MODELS))}.")
  import math  # pylint: disable=g-import-not-at-top
  if not (math.isfinite(args.budget_minutes) and args.budget_minutes > 0):
    raise cli.UsageError(f"--budget-minutes={args.budget_minutes} is not allowed; it must "
                         "be a finite number > 0.")
  for option, value, low in (("--points", args.points, 1), ("--num-images", args.num_images, 2),
                             ("--sigma-points", args.sigma_points, 0), ("--seed", args.seed, 0)):
    if value < low:
      raise cli.UsageError(f"{option}={value} is not allowed; it must be >= {low}.")
  for m in models_to_run:  # every --set, before any training
    _config(m, args.overrides)
  budget_s = args.budget_minutes * 60.0
  targets = _targets(budget_s, args.points)
  plan = {m: [s.label + f" ({s.nfe()} NFE)" for s in _samplers(m)] for m in models_to_run}
  print(f"EDM vs DDPM on digits: {args.budget_minutes:g} CPU-min per model, evaluation at "
        f"{', '.join(f'{t / 60:.2f}' for t in targets)} CPU-min, {args.num_images} images "
        f"per sampler; output {args.out}/")
  for m, s in plan.items():
    print(f"  {m:5s} config {MODELS[m]}: {', '.join(s)}")
  if args.dry_run:
    for m in models_to_run:
      from edmjax.train import config as cfg_lib  # pylint: disable=g-import-not-at-top
      print(f"--- {m}\n{cfg_lib.to_json(_config(m, args.overrides))}")
    return 0

  # One JAX CPU device per core (as train.py): training and sampling shard the batch.
  from edmjax.train import parallel  # pylint: disable=g-import-not-at-top
  batch = math.gcd(*[_config(m, args.overrides).batch_size for m in models_to_run],
                   args.num_images)
  parallel.split_cpu_into_devices(batch)
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from edmjax import losses  # pylint: disable=g-import-not-at-top
  from edmjax.eval import diagnostic_plots as dp  # pylint: disable=g-import-not-at-top
  from edmjax.eval import diagnostics  # pylint: disable=g-import-not-at-top
  from edmjax.eval import digits_split, load_digits_classifier  # pylint: disable=g-import-not-at-top
  from edmjax.train import loop, monitor  # pylint: disable=g-import-not-at-top

  os.makedirs(args.out, exist_ok=True)
  say = lambda *a: print(time.strftime("%H:%M:%S"), *a, flush=True)  # noqa: E731
  classifier = load_digits_classifier()
  rows_path = os.path.join(args.out, "results.csv")
  rows = []
  if os.path.exists(os.path.join(args.out, "results.json")) and not args.fresh:
    with open(os.path.join(args.out, "results.json"), encoding="utf-8") as f:
      rows = json.load(f)

  # The floor of FD_digits at this sample size: N real digits the classifier never saw.
  _, _, x_test, _ = digits_split(classifier.config)
  real = x_test[np.random.RandomState(args.seed).permutation(len(x_test))[:args.num_images]]
  if not any(r["model"] == "real" for r in rows):
    rows.append(dict(model="real", sampler=f"held-out digits ({len(real)})", nfe=0, step=0,
                     kimg=0.0, train_cpu_min=0.0, train_wall_min=0.0,
                     **_score(real, classifier)))

  seeds = np.arange(args.seed, args.seed + args.num_images, dtype=np.uint32)
  final = {}
  for m in models_to_run:
    workdir = os.path.join(args.out, m)
    if args.fresh and os.path.isdir(workdir):
      import shutil  # pylint: disable=g-import-not-at-top
      shutil.rmtree(workdir)
    os.makedirs(workdir, exist_ok=True)
    cfg = _config(m, args.overrides)
    clock = _Clock(os.path.join(workdir, "budget.json"))
    say(f"{m}: training {MODELS[m]} ({cfg.total_steps} steps cap, batch {cfg.batch_size})")
    ev = None
    for k, target in enumerate(targets):
      if k in clock.done_points:
        continue
      _train_to(cfg, workdir, clock, target, say)
      ev = ev or _Evaluator(workdir)
      variables, step, nimg = ev.variables()
      last = k == len(targets) - 1
      if not last and clock.cpu >= targets[k + 1]:
        clock.done_points.append(k)  # overshot the next point too: evaluate there only
        continue
      for spec in _samplers(m):
        if spec.name == "ddpm" and not (last or args.ancestral_every_point):
          continue
        images, s_cpu, s_wall = _generate(ev, spec, variables, seeds)
        nfe = spec.nfe(None if ev.model.eps is None else ev.model.eps.T)
        row = dict(model=m, sampler=spec.label, nfe=nfe, step=step,
                   kimg=nimg / 1000.0, train_cpu_min=clock.cpu / 60.0,
                   train_wall_min=clock.wall / 60.0, **_score(images, classifier),
                   sample_cpu_s=s_cpu, sample_wall_s=s_wall)
        rows.append(row)
        say(f"  {m} {spec.label:15s} ({nfe:4d} NFE) at {clock.cpu / 60:.2f} CPU-min: "
            f"FD_digits {row['fd_digits']:.3f}, coverage {row['class_coverage']:.2f} "
            f"[sampling {s_cpu:.0f} CPU-s]")
        if last:
          monitor.save_grid(os.path.join(args.out, "grids", f"{m}_{spec.label}.png"),
                            np.clip(images[:100], -1, 1))
          if spec.name in ("edm", "ddpm"):
            final[f"{m}/{spec.label}"] = images
      clock.done_points.append(k)
      clock.save()
      with open(os.path.join(args.out, "results.json"), "w", encoding="utf-8") as f:
        json.dump(rows, f, indent=1, default=float)
      dp.write_rows_csv(rows_path, rows)

  # Plots: FD_digits against training CPU time, one curve per model and sampler.
  curves = {}
  for r in rows:
    if r["model"] == "real":
      continue
    x, y = curves.setdefault(f"{r['model']} model, {r['sampler']} ({r['nfe']} NFE)", ([], []))
    x.append(r["train_cpu_min"])
    y.append(r["fd_digits"])
  floor = [r["fd_digits"] for r in rows if r["model"] == "real"]
  dp.plot_curves(os.path.join(args.out, "fd_vs_time.png"), curves,
                 xlabel="training CPU-minutes", ylabel="FD_digits (lower is better)",
                 title=f"EDM vs DDPM on digits, {args.num_images} samples", logy=True,
                 hlines={"real held-out digits": floor[0]} if floor else None)

  # Final diagnostics: loss per σ against the finite-data floor, and memorisation.
  summary = {"machine": platform.platform(), "cpu_count": os.cpu_count(),
             "jax": jax.__version__, "budget_cpu_min": args.budget_minutes,
             "num_images": args.num_images, "rows": rows}
  if args.sigma_points > 0 and models_to_run:
    profiles = {}
    data = loop.load_data(_config(models_to_run[0], args.overrides))
    train_images = loop.training_images(data.source)
    # One weighting for both models: EDM's λ(σ) with σ_data of the training images.
    from edmjax.data import stats  # pylint: disable=g-import-not-at-top
    sigma_data = float(stats.estimate_sigma_data(train_images))
    summary["loss_weight"] = f"EDM lambda(sigma) with sigma_data={sigma_data:.4f}"
    for m in models_to_run:
      ev = _Evaluator(os.path.join(args.out, m))
      variables, _, _ = ev.variables()
      lo = ev.model.sigma_range(0.002, 80.0)[0]  # a DDPM run: its table's lowest level
      sigmas = diagnostics.log_sigma_grid(args.sigma_points, lo, 80.0)

      def profile(variables, key, data, ev=ev, sigmas=sigmas):
        return diagnostics.sigma_loss_profile(
            ev.info.model_fn(variables), key, data, sigmas, 256,
            weight=lambda s: losses.edm_loss_weight(s, sigma_data))

      profiles[f"{m} model"] = jax.jit(profile)(variables, jax.random.key(args.seed),
                                              train_images)
      dp.write_sigma_loss_csv(os.path.join(args.out, f"loss_per_sigma_{m}.csv"),
                              profiles[f"{m} model"])
    dp.plot_sigma_loss(os.path.join(args.out, "loss_per_sigma.png"), profiles,
                       title="loss per σ (EDM weighting λ(σ) for both)")
    mem = {}
    for name, images in final.items():
      rep = diagnostics.memorisation_report(np.clip(images, -1, 1), data.heldout,
                                            train_images)
      mem[name] = diagnostics.memorisation_summary(rep)
    summary["memorisation"] = mem
  with open(os.path.join(args.out, "summary.json"), "w", encoding="utf-8") as f:
    json.dump(summary, f, indent=1, default=float)
  say(f"done: {rows_path}, {os.path.join(args.out, 'fd_vs_time.png')}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
