"""Diagnose a trained run: where the loss is too high, biased ε, pixel drift, memorisation.

Reads a training work directory (experiments/train.py --workdir: config.json and orbax
checkpoints), restores the EMA parameters of its newest (or --step) checkpoint and
writes to <workdir>/diagnostics/ (or --out):

  loss_per_sigma.csv / .png   the model's loss per σ next to the exact floor L*(σ) of
                              the finite training set (EDM Fig. 5a) and the excess
  eps_per_timestep.csv / .png DDPM runs: mean / std of predicted ε and the ε loss per t
  trajectory_hist.csv / .png  pixel histograms of the denoised estimate at each step
                              of sampling (EDM-family samplers) or of the states (DDPM)
  nearest_neighbours.csv/.png distance of each sample / held-out image to its nearest
                              training image (needs data.holdout > 0 in the config)
  samples.png, summary.json   the samples used, and every summary number

The run is loaded as a model value (edmjax.train.loop.load_run): a DDPM ε-model
enters the per-σ loss and the EDM-family samplers through the VP bridge
(edmjax.ddpm.ddpm_as_denoiser), on the σ range of its table; its per-σ loss is
weighted by 1/σ², which makes it its ε loss. EDM runs use λ(σ) of the EDM loss
(edmjax.train.models.loss_weight).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from edmjax import cli  # noqa: E402  pylint: disable=wrong-import-position
import sample  # noqa: E402  pylint: disable=wrong-import-position  (check_writable)

EXAMPLES = """
Examples:
  # everything, for the newest checkpoint of a run
  python experiments/diagnose.py out/digits_edm
  # a DDPM run, its checkpoint at step 400, more Monte Carlo samples
  python experiments/diagnose.py out/digits_ddpm --step 400 --num-samples 1024
  # trajectories of the bridged Heun sampler for a DDPM run, 100 images
  python experiments/diagnose.py out/digits_ddpm --sampler edm --num-steps 18 \\
      --num-images 100
  # only say what would be done
  python experiments/diagnose.py out/digits_edm --dry-run
"""


_Formatter = cli.HelpFormatter


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__ + EXAMPLES, formatter_class=_Formatter)
  cli.add_debug_option(p)
  p.add_argument("workdir", metavar="WORKDIR", help="training work directory")
  p.add_argument("--out", default=None, metavar="DIR",
                 help="output folder (None: WORKDIR/diagnostics)")
  p.add_argument("--step", type=int, default=None, metavar="N",
                 help="checkpoint step (None: the newest)")
  p.add_argument("--num-samples", type=int, default=512, metavar="N",
                 help="Monte Carlo pairs (y, n) per σ / timestep")
  p.add_argument("--num-sigmas", type=int, default=24, metavar="S",
                 help="points of the log-σ grid")
  p.add_argument("--sigma-min", type=float, default=0.002, metavar="SIGMA")
  p.add_argument("--sigma-max", type=float, default=80.0, metavar="SIGMA")
  p.add_argument("--num-timesteps", type=int, default=24, metavar="K",
                 help="DDPM timesteps (denser at small t)")
  p.add_argument("--sampler", default=None, metavar="NAME",
                 help="sampler of the trajectory / memorisation samples, any name of "
                      "edmjax.sampling (None: the run's sample-grid sampler)")
  p.add_argument("--num-steps", type=int, default=None, metavar="N",
                 help="sampler steps (None: the sampler's, or the run's grid's)")
  p.add_argument("--opt", action="append", default=[], metavar="NAME=VALUE",
                 help="other sampler option (repeatable)")
  p.add_argument("--num-images", type=int, default=256, metavar="N",
                 help="generated images for the histograms and the memorisation check")
  p.add_argument("--seed", type=int, default=0, metavar="S")
  p.add_argument("--dry-run", action="store_true",
                 help="print the run, checkpoint and planned outputs, then exit")
  return p.parse_args(argv)


def _checkpoint_steps(workdir):
  d = os.path.join(workdir, "checkpoints")
  if not os.path.isdir(d):
    return []
  return sorted(int(s) for s in os.listdir(d) if s.isdigit())


def check_options(args) -> None:
  """Every numeric option, before the run is read (also with --dry-run).

  Raises:
    cli.UsageError: naming the option, its value and what is allowed.
  """
  import math  # pylint: disable=g-import-not-at-top
  for name in ("sigma_min", "sigma_max"):
    value = getattr(args, name)
    if not (math.isfinite(value) and value > 0):
      raise cli.UsageError(f"--{name.replace('_', '-')}={value} is not allowed; it must be "
                           "a finite number > 0.")
  if not args.sigma_min < args.sigma_max:
    raise cli.UsageError(f"--sigma-min={args.sigma_min} must be smaller than --sigma-max="
                         f"{args.sigma_max} (the σ grid runs from the one to the other).")
  for name, low in (("num_samples", 1), ("num_sigmas", 2), ("num_timesteps", 1),
                    ("num_images", 1), ("seed", 0)):
    value = getattr(args, name)
    if value < low:
      raise cli.UsageError(f"--{name.replace('_', '-')}={value} is not allowed; it must "
                           f"be >= {low}.")


@cli.entry_point
def main(argv=None):
  args = parse_args(argv)
  check_options(args)
  from edmjax.train import config as cfg_lib  # pylint: disable=g-import-not-at-top
  config_path = os.path.join(args.workdir, "config.json")
  if not os.path.exists(config_path):
    print(f"error: {args.workdir!r} has no config.json; pass a work directory of "
          "experiments/train.py (e.g. out/digits_edm).", file=sys.stderr)
    return 2
  with open(config_path, encoding="utf-8") as f:
    cfg = cfg_lib.from_json(f.read())
  steps = _checkpoint_steps(args.workdir)
  if not steps:
    print(f"error: {args.workdir!r} has no checkpoint yet.", file=sys.stderr)
    return 2
  step = args.step if args.step is not None else steps[-1]
  if step not in steps:
    print(f"error: no checkpoint at step {step}; available: {steps}.", file=sys.stderr)
    return 2
  from edmjax import sampling  # pylint: disable=g-import-not-at-top
  is_ddpm = cfg.loss.objective == "ddpm"
  opts = list(args.opt) + ([] if args.num_steps is None else [f"num_steps={args.num_steps}"])
  try:
    if args.sampler is None:
      spec = cfg.sample.spec().replace(**dict(sampling.SamplerSpec.parse(
          cfg.sample.sampler, opts).options))
    else:
      spec = sampling.SamplerSpec.parse(args.sampler, opts)
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  if spec.name == "headstart":
    print("error: --sampler headstart starts from an image; choose a sampler that starts "
          "from noise.", file=sys.stderr)
    return 2
  out = args.out or os.path.join(args.workdir, "diagnostics")
  outputs = ["loss_per_sigma.csv/.png", "trajectory_hist.csv/.png", "samples.png",
             "summary.json"]
  if is_ddpm:
    outputs.insert(1, "eps_per_timestep.csv/.png")
  if cfg.data.holdout > 0:
    outputs.insert(-2, "nearest_neighbours.csv/.png")
  print(f"run       {args.workdir}: objective {cfg.loss.objective}, data {cfg.data.name} "
        f"(holdout {cfg.data.holdout}), checkpoint step {step} of {steps}")
  print(f"sampler   {spec!r}, {args.num_images} images")
  print(f"outputs   {out}/: {', '.join(outputs)}")
  if args.dry_run:
    return 0
  sample.check_writable(out, "--out")

  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from edmjax import keys as keys_lib  # pylint: disable=g-import-not-at-top
  from edmjax.eval import diagnostic_plots as dp  # pylint: disable=g-import-not-at-top
  from edmjax.eval import diagnostics as dg  # pylint: disable=g-import-not-at-top
  from edmjax.train import loop, models, monitor  # pylint: disable=g-import-not-at-top

  t0 = time.time()
  cfg, model, info = loop.load_run(args.workdir, step=step)
  variables, model_fn = info.variables, info.model_fn
  data = loop.load_data(cfg)
  train_images = np.asarray(loop.training_images(data.source))
  eps_model = model.eps  # the ε-model of a DDPM run, else None
  summary = {"workdir": args.workdir, "step": step, "objective": cfg.loss.objective,
             "kimg": info.position / 1000.0}
  weight = models.loss_weight(cfg.loss)
  lo, hi = model.sigma_range(args.sigma_min, args.sigma_max)
  sigmas = dg.log_sigma_grid(args.num_sigmas, lo, hi)
  key = jax.random.key(args.seed)

  # 1. Loss per σ against the finite-data floor.
  profile = jax.jit(lambda v, k, d: dg.sigma_loss_profile(
      model_fn(v), k, d, sigmas, args.num_samples, weight=weight))(
          variables, key, train_images)
  dp.write_sigma_loss_csv(os.path.join(out, "loss_per_sigma.csv"), profile)
  dp.plot_sigma_loss(os.path.join(out, "loss_per_sigma.png"),
                     {f"{cfg.loss.objective} @ step {step}": profile})
  worst = int(np.argmax(np.asarray(profile.excess * profile.weight)))
  summary["loss_per_sigma"] = {
      "weighted_loss_mean": float(np.mean(profile.loss * profile.weight)),
      "weighted_floor_mean": float(np.mean(profile.bound * profile.weight)),
      "largest_weighted_excess_at_sigma": float(profile.sigma[worst]),
      "largest_weighted_excess": float(profile.excess[worst] * profile.weight[worst])}
  print(f"loss per σ: largest weighted excess {summary['loss_per_sigma']['largest_weighted_excess']:.4g}"
        f" at σ = {float(profile.sigma[worst]):.3g}")

  # 2. DDPM: predicted ε per timestep.
  if eps_model is not None:
    ts = dg.ddpm_timestep_grid(args.num_timesteps, eps_model.T)
    stats = jax.jit(lambda v, k, d: dg.eps_stats_per_timestep(
        model_fn(v).eps, k, d, eps_model.betas, ts, args.num_samples))(
            variables, key, train_images)
    dp.write_eps_stats_csv(os.path.join(out, "eps_per_timestep.csv"), stats)
    dp.plot_eps_stats(os.path.join(out, "eps_per_timestep.png"), stats)
    z = np.asarray(stats.eps_mean / np.maximum(stats.eps_mean_stderr, 1e-12))
    summary["eps_per_timestep"] = {
        "max_abs_mean": float(np.max(np.abs(stats.eps_mean))),
        "max_abs_mean_in_stderr": float(np.max(np.abs(z))),
        "at_t": int(stats.t[int(np.argmax(np.abs(z)))])}
    print(f"ε per timestep: largest |mean ε| {summary['eps_per_timestep']['max_abs_mean']:.4f}"
          f" ({summary['eps_per_timestep']['max_abs_mean_in_stderr']:.1f} s.e.) at "
          f"t = {summary['eps_per_timestep']['at_t']}")

  # 3. Pixel histograms along a sampling trajectory.
  seeds = np.arange(args.seed, args.seed + args.num_images, dtype=np.uint32)
  latents, keys = keys_lib.seed_latents_and_keys(seeds, info.image_shape)
  labels = (seeds % info.label_dim).astype(np.int32) if info.label_dim else None

  def sample(v, latents, keys, labels):
    return sampling.sample(model_fn(v), latents, keys, spec, class_labels=labels,
                           return_trajectory=True)

  images, traj = jax.jit(sample)(variables, latents, keys, labels)
  images = np.asarray(images)
  if isinstance(traj, tuple) and hasattr(traj, "denoised"):
    per_step = np.concatenate([np.asarray(traj.denoised), images[None]], axis=0)
    levels = np.append(np.asarray(traj.sigma), 0.0)
    level_name, what = "σ", "denoised estimate D(x_i; σ_i), then the sample"
  else:
    per_step = np.asarray(traj)
    levels = np.arange(per_step.shape[0], dtype=np.float64)
    level_name, what = "step", "sampler state x_t"
  hist = jax.jit(dg.pixel_histograms)(per_step)
  dp.write_histograms_csv(os.path.join(out, "trajectory_hist.csv"), hist, levels)
  dp.plot_pixel_histograms(os.path.join(out, "trajectory_hist.png"), hist, levels,
                           level_name=level_name, title=f"pixel values: {what}")
  summary["trajectory"] = {
      "sampler": spec.label, "nfe": spec.nfe(None if eps_model is None else eps_model.T),
      "what": what, "final_mean": float(hist.mean[-1]), "final_std": float(hist.std[-1]),
      "final_frac_below_-1": float(hist.frac_below[-1]),
      "final_frac_above_1": float(hist.frac_above[-1]),
      "data_mean": float(np.mean(train_images)), "data_std": float(np.std(train_images)),
      "nonfinite": int(np.sum(hist.num_nonfinite))}
  print(f"samples ({spec.label}): mean {summary['trajectory']['final_mean']:.3f} (data "
        f"{summary['trajectory']['data_mean']:.3f}), std {summary['trajectory']['final_std']:.3f}"
        f" (data {summary['trajectory']['data_std']:.3f}), beyond ±1: "
        f"{summary['trajectory']['final_frac_below_-1']:.3f} / "
        f"{summary['trajectory']['final_frac_above_1']:.3f}")
  monitor.save_grid(os.path.join(out, "samples.png"), np.clip(images[:100], -1, 1))

  # 4. Memorisation.
  if data.heldout is not None and np.all(np.isfinite(images)):
    rep = dg.memorisation_report(np.clip(images, -1, 1), data.heldout, train_images)
    dp.write_memorisation_csv(os.path.join(out, "nearest_neighbours.csv"), rep)
    dp.plot_memorisation(os.path.join(out, "nearest_neighbours.png"), rep)
    summary["memorisation"] = dg.memorisation_summary(rep)
    m = summary["memorisation"]
    print(f"nearest training neighbour: samples median {m['samples_median']:.3f}, held-out "
          f"real median {m['heldout_median']:.3f} (ratio {m['median_ratio']:.2f}), "
          f"{m['num_copies']} exact copies")
  else:
    print("memorisation: skipped (no held-out images: set data.holdout > 0, or the "
          "samples are not finite)")
  with open(os.path.join(out, "summary.json"), "w", encoding="utf-8") as f:
    json.dump(summary, f, indent=1)
  print(f"done in {time.time() - t0:.0f} s: {out}/")
  return 0


if __name__ == "__main__":
  sys.exit(main())
