"""EDM2 on the embedded digits: post-hoc EMA and guidance, at small scale.

Trains `digits_edm2` (EDM2UNet, learned loss weighting, EMA tracks σ_rel 0.05 and 0.10
snapshotted every `--snapshot-steps`), class-conditional with label dropout 0.1, and a
guide with half the channels trained for a quarter of the steps. Then:

(a) post-hoc EMA (Karras et al. 2024a, Fig. 5 at small scale): FD_digits and class
    accuracy of the profiles σ_rel ∈ --stds reconstructed from the main run's
    snapshots at its last step (experiments/reconstruct_phema.py), beside the two
    tracks the run trained directly;
(b) guidance against w ∈ --ws, with and without the guidance interval --interval
    (Kynkäänniemi et al. 2024): autoguidance (Karras et al. 2024b; the guide above)
    and classifier-free guidance (the main network without labels). Main model: the
    tracked σ_rel 0.10 EMA; guide: its own 0.10 track.

Every number is a mean ± standard deviation over --sets disjoint seed sets of
--seeds-per-set images (conditional on label = seed mod 10), sampled with Heun
(--num-steps steps; NFE doubles where the guide runs). Class accuracy is the share of
images the digits classifier assigns to their conditioning label. A row "real" gives
FD_digits of held-out real digits of the same count: the metric's floor.

Outputs in --out (default out/edm2_study/): main/ and guide/ (training work
directories, resumable), main/phema/ (the reconstructions), results.json, and
edm2_study.md (the tables). Run it under `nice` on a shared machine.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import configs  # noqa: E402  pylint: disable=wrong-import-position
import reconstruct_phema  # noqa: E402  pylint: disable=wrong-import-position

from edmjax import cli  # noqa: E402  pylint: disable=wrong-import-position

EXAMPLES = """
Examples:
  nice python experiments/edm2_study.py > out/edm2_study.log 2>&1
  python experiments/edm2_study.py --dry-run
  python experiments/edm2_study.py --steps 40 --snapshot-steps 10 --seeds-per-set 32 \\
      --sets 2 --stds 0.05,0.1,0.2 --ws 1,2 --out /tmp/edm2_smoke      # a smoke run
"""


_Formatter = cli.HelpFormatter


def _floats(text):
  return [float(v) for v in text.split(",") if v.strip()]


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__ + EXAMPLES, formatter_class=_Formatter)
  cli.add_debug_option(p)
  p.add_argument("--out", default="out/edm2_study", metavar="DIR")
  p.add_argument("--steps", type=int, default=1200, metavar="N",
                 help="main run's steps (batch 64); the guide trains N/4")
  p.add_argument("--snapshot-steps", type=int, default=40, metavar="K",
                 help="EMA snapshot interval of the main run, in steps")
  p.add_argument("--stds", default="0.01,0.02,0.03,0.05,0.07,0.1,0.15,0.2,0.25",
                 metavar="LIST", help="σ_rel reconstructed post hoc")
  p.add_argument("--ws", default="1,1.5,2,3", metavar="LIST", help="guidance weights")
  p.add_argument("--interval", default="0.28,5.42", metavar="LO,HI",
                 help="guidance interval (σ_lo, σ_hi] (EDM2-XXL's in Kynkäänniemi et al.)")
  p.add_argument("--num-steps", type=int, default=10, metavar="N", help="Heun steps")
  p.add_argument("--sets", type=int, default=4, metavar="S", help="disjoint seed sets")
  p.add_argument("--seeds-per-set", type=int, default=256, metavar="N")
  p.add_argument("--dry-run", action="store_true", help="print the plan and exit")
  args = p.parse_args(argv)
  try:
    args.stds = reconstruct_phema.parse_std_list(args.stds)
    args.ws = _floats(args.ws)
    args.interval = tuple(_floats(args.interval))
  except ValueError as e:
    p.error(str(e))
  if len(args.interval) != 2 or not 0 <= args.interval[0] < args.interval[1]:
    p.error(f"--interval {args.interval} must be LO,HI with 0 <= LO < HI")
  for name in ("steps", "snapshot_steps", "num_steps", "sets", "seeds_per_set"):
    if getattr(args, name) < (2 if name in ("num_steps", "seeds_per_set") else 1):
      p.error(f"--{name.replace('_', '-')} {getattr(args, name)} is too small")
  if args.steps % args.snapshot_steps:
    p.error(f"--steps {args.steps} must be a multiple of --snapshot-steps "
            f"{args.snapshot_steps}")
  return args


def run_configs(args):
  """(main, guide) TrainConfigs of the study."""
  base = configs.get_config("digits_edm2")
  main = dataclasses.replace(
      base, total_steps=args.steps, snapshot_nimg=args.snapshot_steps * base.batch_size,
      checkpoint_every=max(args.steps // 4, 1), sample=dataclasses.replace(
          base.sample, num_images=0))
  guide = dataclasses.replace(
      main, net=dataclasses.replace(base.net, model_channels=base.net.model_channels // 2),
      total_steps=max(args.steps // 4, 1), snapshot_nimg=0,
      checkpoint_every=max(args.steps // 4, 1))
  return main, guide


def _mean_std(values):
  import numpy as np  # pylint: disable=g-import-not-at-top
  v = np.asarray(values, np.float64)
  return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0


class _Scorer:
  """FD_digits and class accuracy of generated sets (mean ± std over the sets)."""

  def __init__(self, args):
    import jax  # pylint: disable=g-import-not-at-top
    import numpy as np  # pylint: disable=g-import-not-at-top
    from edmjax import sampling  # pylint: disable=g-import-not-at-top
    from edmjax.eval import digits_classifier  # pylint: disable=g-import-not-at-top
    self.np = np
    self.clf = digits_classifier.load_digits_classifier()
    self.features = jax.jit(lambda x: digits_classifier.digits_features(
        self.clf.params, x, self.clf.config)[1])
    n = args.sets * args.seeds_per_set
    self.seeds = np.arange(n, dtype=np.int64)
    self.labels = (self.seeds % 10).astype(np.int32)
    self.sets, self.per_set = args.sets, args.seeds_per_set
    self.spec = sampling.SamplerSpec("heun", num_steps=args.num_steps)
    self.digits_metrics = digits_classifier.digits_metrics

  def score(self, images):
    np = self.np
    labels = self.labels
    fds, accs = [], []
    for k in range(self.sets):
      part = slice(k * self.per_set, (k + 1) * self.per_set)
      x = np.clip(np.asarray(images[part]), -1.0, 1.0)
      fds.append(self.digits_metrics(x, self.clf)["fd_digits"])
      pred = np.argmax(np.asarray(self.features(x)), axis=-1)
      accs.append(float(np.mean(pred == labels[part])))
    return dict(zip(("fd", "fd_std"), _mean_std(fds))) | dict(
        zip(("acc", "acc_std"), _mean_std(accs))) | dict(fd_sets=fds, acc_sets=accs)

  def generate(self, model_fn, variables, image_shape):
    from edmjax.train import generate  # pylint: disable=g-import-not-at-top
    return generate.generate(model_fn, self.seeds, self.spec, image_shape=image_shape,
                             batch_size=self.per_set, class_labels=self.labels,
                             variables=variables)


def _table(rows, columns):
  head = "| " + " | ".join(c for c, _ in columns) + " |"
  sep = "|" + "|".join("---" if i == 0 else "---:" for i in range(len(columns))) + "|"
  body = ["| " + " | ".join(fmt(r) for _, fmt in columns) + " |" for r in rows]
  return "\n".join([head, sep] + body)


def _paired(rows, ref):
  """Adds 'dfd' / 'dfd_std': FD minus the reference row's, set by set (same seeds)."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  for r in rows:
    d = np.asarray(r["fd_sets"]) - np.asarray(ref["fd_sets"])
    r["dfd"], r["dfd_std"] = _mean_std(d)


def _pm(key):
  if key == "acc":
    return lambda r: f"{100 * r[key]:.1f} ± {100 * r[key + '_std']:.1f}"
  sign = "+" if key == "dfd" else ""
  return lambda r: f"{r[key]:{sign}.2f} ± {r[key + '_std']:.2f}"


@cli.entry_point
def main(argv=None):
  args = parse_args(argv)
  main_cfg, guide_cfg = run_configs(args)
  n_snap = args.steps // args.snapshot_steps
  print(f"EDM2 study: main {args.steps} steps (snapshots every {args.snapshot_steps}: "
        f"{n_snap} per track), guide {guide_cfg.total_steps} steps at "
        f"{guide_cfg.net.model_channels} channels; σ_rel {args.stds}; w {args.ws}, "
        f"interval {args.interval}; {args.sets} x {args.seeds_per_set} images, Heun "
        f"{args.num_steps} steps; output {args.out}/")
  if args.dry_run:
    return 0
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from edmjax.eval import digits_split  # pylint: disable=g-import-not-at-top
  from edmjax.train import loop, models, snapshots  # pylint: disable=g-import-not-at-top

  say = lambda *a: print(time.strftime("%H:%M:%S"), *a, flush=True)  # noqa: E731
  t_start, c_start = time.time(), time.process_time()
  os.makedirs(args.out, exist_ok=True)
  timings = {}
  for name, cfg in (("main", main_cfg), ("guide", guide_cfg)):
    t0 = time.time()
    say(f"training {name}: {cfg.total_steps} steps")
    loop.train(cfg, os.path.join(args.out, name), progress=False, log=None)
    timings[f"train_{name}_s"] = time.time() - t0
  main_dir, guide_dir = (os.path.join(args.out, n) for n in ("main", "guide"))

  t0 = time.time()
  say(f"reconstructing σ_rel {args.stds}")
  status = reconstruct_phema.main(["--workdir", main_dir, "--std",
                                   ",".join(f"{s:g}" for s in args.stds)])
  if status:
    raise RuntimeError(f"reconstruct_phema.py failed on {main_dir!r} (exit status "
                       f"{status}); its message is above.")
  timings["reconstruct_s"] = time.time() - t0
  nimg = main_cfg.total_steps * main_cfg.batch_size

  scorer = _Scorer(args)
  # The metric's floor: FD_digits of the held-out real digits (one set of all of them).
  _, _, x_test, _ = digits_split(scorer.clf.config)
  rows = [dict(part="real", what=f"held-out real digits (one set of {len(x_test)})",
               fd=float(scorer.digits_metrics(x_test, scorer.clf)["fd_digits"]),
               fd_std=float("nan"), acc=float("nan"), acc_std=float("nan"))]

  t0 = time.time()
  for std, how in [(s, "reconstructed") for s in args.stds] + [(0.05, "tracked"),
                                                                (0.1, "tracked")]:
    ema = std if how == "tracked" else os.path.join(
        main_dir, "phema", snapshots.file_name(nimg, std, "phema"))
    _, _, info = loop.load_run(main_dir, ema=ema)
    images = scorer.generate(info.model_fn, info.variables, info.image_shape)
    r = dict(part="posthoc", std=std, how=how, **scorer.score(images))
    rows.append(r)
    say(f"σ_rel {std:.3f} ({how}): FD {r['fd']:.2f} ± {r['fd_std']:.2f}, "
        f"acc {100 * r['acc']:.1f}%")
  timings["posthoc_eval_s"] = time.time() - t0

  t0 = time.time()
  _, _, main_info = loop.load_run(main_dir, ema=0.1)
  _, _, guide_info = loop.load_run(guide_dir, ema=0.1)
  for method in ("autoguidance", "cfg"):
    for interval in (None, args.interval):
      model_fn = models.GuidedModelFn(main_info.model_fn,
                                      guide_info.model_fn if method == "autoguidance"
                                      else None, interval)
      for w in args.ws:
        if w == 1.0 and (method != "autoguidance" or interval is not None):
          continue   # w = 1 is the main model alone: one row
        variables = {"main": main_info.variables, "guide": guide_info.variables,
                     "guidance": jnp.float32(w)}
        images = scorer.generate(model_fn, variables, main_info.image_shape)
        r = dict(part="guidance", method="none" if w == 1.0 else method, w=w,
                 interval=None if interval is None else list(interval),
                 **scorer.score(images))
        rows.append(r)
        say(f"{r['method']} w={w:g} interval={interval}: FD {r['fd']:.2f} ± "
            f"{r['fd_std']:.2f}, acc {100 * r['acc']:.1f}%")
  timings["guidance_eval_s"] = time.time() - t0
  timings["total_wall_s"] = time.time() - t_start
  timings["total_cpu_s"] = time.process_time() - c_start

  summary = dict(args={k: v for k, v in vars(args).items()}, timings=timings, rows=rows,
                 main_nimg=nimg)
  with open(os.path.join(args.out, "results.json"), "w", encoding="utf-8") as f:
    json.dump(summary, f, indent=2)
  post = [r for r in rows if r["part"] == "posthoc"]
  guided = [r for r in rows if r["part"] == "guidance"]
  _paired(post, next(r for r in post if r["how"] == "tracked" and r["std"] == 0.1))
  _paired(guided, next(r for r in guided if r["method"] == "none"))
  lines = [f"# EDM2 study on digits ({time.strftime('%Y-%m-%d')})", "",
           f"Main run {args.steps} steps of batch {main_cfg.batch_size} ({nimg} images), "
           f"guide {guide_cfg.total_steps} steps at {guide_cfg.net.model_channels} "
           f"channels. Heun {args.num_steps} steps; {args.sets} sets of "
           f"{args.seeds_per_set} images; mean ± std over the sets.", "",
           "## Post-hoc EMA", "",
           _table([r for r in rows if r["part"] == "real"] + post, [
               ("σ_rel", lambda r: f"{r['std']:.3f}" if "std" in r else "real"),
               ("EMA", lambda r: r.get("how", r.get("what", ""))),
               ("FD_digits", lambda r: f"{r['fd']:.2f}" if r["part"] == "real"
                else _pm("fd")(r)),
               ("ΔFD vs tracked 0.100, paired", lambda r: "" if r["part"] == "real"
                else _pm("dfd")(r)),
               ("class accuracy (%)", lambda r: "" if r["part"] == "real" else _pm("acc")(r)),
           ]), "", "## Guidance", "",
           _table(guided, [
               ("method", lambda r: r["method"]), ("w", lambda r: f"{r['w']:g}"),
               ("interval", lambda r: "all σ" if r["interval"] is None else
                f"({r['interval'][0]:g}, {r['interval'][1]:g}]"),
               ("FD_digits", _pm("fd")), ("ΔFD vs w = 1, paired", _pm("dfd")),
               ("class accuracy (%)", _pm("acc")),
           ]), "", "± is the standard deviation over the seed sets; every row uses the same "
           "seeds and labels, so the paired differences (ΔFD, set by set against the "
           "reference row) are more precise than the ± of the FD itself.", "",
           "Timings (s): " + ", ".join(f"{k} {v:.0f}" for k, v in timings.items())]
  with open(os.path.join(args.out, "edm2_study.md"), "w", encoding="utf-8") as f:
    f.write("\n".join(lines) + "\n")
  say(f"done: {args.out}/edm2_study.md, results.json "
      f"({timings['total_wall_s'] / 60:.1f} wall-min)")
  return 0


if __name__ == "__main__":
  sys.exit(main())
