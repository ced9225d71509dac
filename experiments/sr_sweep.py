#!/usr/bin/env python3
"""Compare SR training variants by held-out one-step headstart PSNR along training.

Each variant is a named list of `--set` overrides of a train_sr3.py config. Every
variant trains in its own run directory (resuming, so the checkpoints of
--eval-at are points on one run) and, at each of them, is evaluated on the whole
held-out photograph: bicubic and headstart N=1 at each σ_start (untiled, EMA
weights). One JSON line per (variant, step) goes to DIR/sweep.jsonl as it is made,
and a table of PSNR gains over bicubic is printed at the end. --budget-s stops
before the next training segment that would not fit.

--linear K also fits the best *linear* 4×4-block SR filter on the training
photographs (least squares from each K×K LR neighbourhood to the HR residual
block over bicubic) and prints its held-out gain: the bar a network has to clear
to have learned anything nonlinear.

Examples:
  python experiments/sr_sweep.py --workdir out/sr/sweep --eval-at 2700,5400 \\
      --variant base= --variant hs09=headstart_prob=0.9 \\
      --variant lr5e-3=optim.lr=5e-3,headstart_prob=0.9
  python experiments/sr_sweep.py --workdir /tmp/sw --config tiny --eval-at 2,4 \\
      --variant a= --variant b=headstart_prob=0.5
  python experiments/sr_sweep.py --workdir /tmp/sw --linear 7
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from edmjax import cli  # noqa: E402  pylint: disable=wrong-import-position


def parse_variant(text: str) -> tuple[str, list[str]]:
  """'name=a.b=1,c=2' -> ('name', ['a.b=1', 'c=2']); tuples use ':' ('1:2:2')."""
  if "=" not in text:
    raise ValueError(f"--variant {text!r} must look like NAME=field=value,field=value "
                     "(NAME= for the config unchanged).")
  name, rest = text.split("=", 1)
  sets = [s.replace(":", ",") for s in rest.split(",") if s]
  return name, sets


def parse_args(argv=None):
  p = argparse.ArgumentParser(
      description=__doc__.split("\n\n")[0],
      epilog="\n\n".join(__doc__.split("\n\n")[1:]),
      formatter_class=lambda prog: argparse.RawDescriptionHelpFormatter(prog, width=92))
  cli.add_debug_option(p)
  p.add_argument("--workdir", required=True, metavar="DIR")
  p.add_argument("--config", default="photos_4x", metavar="NAME",
                 help="train_sr3.py config the variants start from (default: %(default)s)")
  p.add_argument("--linear", type=int, default=0, metavar="K",
                 help="also fit and report the linear K×K-neighbourhood filter (0: no)")
  p.add_argument("--variant", action="append", default=[], metavar="NAME=SETS",
                 help="NAME=field=value,field=value (tuple values with ':', e.g. "
                      "net.channel_mult=1:2:2); repeatable")
  p.add_argument("--eval-at", default="", metavar="STEPS",
                 help="comma-separated training steps to evaluate at (increasing)")
  p.add_argument("--sigma-starts", default="0.2", metavar="LIST",
                 help="headstart σ_start values (N=1; default: %(default)s)")
  p.add_argument("--budget-s", type=float, default=0.0, metavar="S",
                 help="stop starting new segments after this many seconds (0: no limit)")
  return p.parse_args(argv)


def evaluate(workdir, sigma_starts):
  """{'step', 'bicubic', 'headstart': {σ: PSNR}} of the newest checkpoint."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from edmjax.sr import degrade  # pylint: disable=g-import-not-at-top
  from edmjax.sr import inference  # pylint: disable=g-import-not-at-top
  from edmjax.sr import train as sr_train  # pylint: disable=g-import-not-at-top
  cfg, model, state = sr_train.load_sr(workdir)
  _, held = sr_train.load_sr_data(cfg)
  hr = jnp.asarray(held[:1])
  lr = degrade.degrade_clean(hr, cfg.sr.degrade)
  variables = {"params": state.ema_params, **state.buffers}

  @jax.jit
  def run(sigma_start):
    den, u = inference.sr_denoiser(model, variables, lr, cfg.sr, cfg.loss.sigma_data)
    sr = inference.super_resolve(den, u, jax.random.key(0), mode="headstart",
                                 sigma_start=sigma_start, num_steps=1)
    return inference.sr_metrics(sr, hr, lr, cfg.sr.degrade)["psnr"][0]

  u = degrade.upsample(lr, cfg.sr.scale, cfg.sr.upsample)
  bic = float(inference.sr_metrics(u, hr, lr, cfg.sr.degrade)["psnr"][0])
  heads = {f"{s:g}": float(run(jnp.float32(s))) for s in sigma_starts}
  return dict(step=int(state.step), bicubic=bic, headstart=heads)


def _neighbourhoods(lr, k):
  """(h·w, k·k·C + 1) features: every LR pixel's k×k neighbourhood (edge padded), and 1."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  p = k // 2
  x = np.pad(lr[0], ((p, p), (p, p), (0, 0)), mode="edge")
  h, w = lr.shape[1], lr.shape[2]
  feats = np.concatenate([x[i:i + h, j:j + w] for i in range(k) for j in range(k)], -1)
  feats = feats.reshape(h * w, -1).astype(np.float64)
  return np.concatenate([feats, np.ones((h * w, 1))], 1)


def linear_baseline(cfg, k):
  """{'bicubic', 'linear'} PSNR on the held-out photograph of the best linear block filter.

  Fitted by least squares on the whole training photographs (clean degradation of
  `cfg.sr.degrade`): each LR pixel's k×k neighbourhood predicts the s×s block of the
  residual HR − bicubic(LR) it covers.
  """
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from edmjax.sr import degrade  # pylint: disable=g-import-not-at-top
  from edmjax.sr import inference  # pylint: disable=g-import-not-at-top
  from edmjax.data import patches  # pylint: disable=g-import-not-at-top
  from edmjax.sr import train as sr_train  # pylint: disable=g-import-not-at-top
  s = cfg.sr.scale

  def pair(hr):
    lr = degrade.degrade_clean(jnp.asarray(hr), cfg.sr.degrade)
    u = degrade.upsample(lr, s, cfg.sr.upsample)
    return np.asarray(lr), np.asarray(u)

  def blocks(res):
    h, w, c = res.shape[1] // s, res.shape[2] // s, res.shape[3]
    return res[0].reshape(h, s, w, s, c).transpose(0, 2, 1, 3, 4).reshape(h * w, -1)

  train, _ = patches.photo_split(cfg.data.holdout, cfg.data.photo_set)
  gram, cross = 0.0, 0.0
  for name in train:
    hr = patches.crop_to_multiple(patches.load_photograph(name), s)
    lr, u = pair(hr)
    x = _neighbourhoods(lr, k)
    gram, cross = gram + x.T @ x, cross + x.T @ blocks(hr - u).astype(np.float64)
  weights = np.linalg.solve(gram + 1e-3 * np.eye(len(gram)), cross)
  _, held = sr_train.load_sr_data(cfg)
  hr = held[:1]
  lr, u = pair(hr)
  h, w, c = lr.shape[1], lr.shape[2], lr.shape[3]
  res = (_neighbourhoods(lr, k) @ weights).reshape(h, w, s, s, c)
  sr = u + res.transpose(0, 2, 1, 3, 4).reshape(1, h * s, w * s, c)
  psnr = lambda x: float(inference.sr_metrics(jnp.asarray(x, jnp.float32), jnp.asarray(hr),  # noqa: E731
                                              jnp.asarray(lr), cfg.sr.degrade)["psnr"][0])
  return dict(bicubic=psnr(u), linear=psnr(sr))


@cli.entry_point
def main(argv=None):
  args = parse_args(argv)
  import train_sr3  # pylint: disable=g-import-not-at-top
  from edmjax.sr import train as sr_train  # pylint: disable=g-import-not-at-top
  from edmjax.train import config as config_lib  # pylint: disable=g-import-not-at-top

  eval_at = [int(s) for s in args.eval_at.split(",") if s]
  if args.variant and (not eval_at or eval_at != sorted(eval_at) or eval_at[0] < 1):
    raise ValueError(f"--eval-at {args.eval_at!r} must be increasing positive steps.")
  sigma_starts = [float(s) for s in args.sigma_starts.split(",")]
  variants = [parse_variant(v) for v in args.variant]
  base = train_sr3.CONFIGS[args.config]()
  if args.linear:
    lin = linear_baseline(base, args.linear)
    print(f"linear {args.linear}x{args.linear} filter: bicubic {lin['bicubic']:.2f} dB, "
          f"linear {lin['linear']:.2f} dB ({lin['linear'] - lin['bicubic']:+.2f})",
          flush=True)
  os.makedirs(args.workdir, exist_ok=True)
  out = os.path.join(args.workdir, "sweep.jsonl")
  t0 = time.time()
  records = []
  for name, sets in variants:
    cfg = config_lib.apply_overrides(base, sets + ["max_minutes=0", "sample_every=0",
                                                   "checkpoint_every=0"])
    run_dir = os.path.join(args.workdir, name)
    for steps in eval_at:
      spent = time.time() - t0
      if args.budget_s and spent > args.budget_s:
        print(f"budget reached after {spent:.0f} s; skipping {name} at {steps}")
        break
      t1 = time.time()
      import dataclasses  # pylint: disable=g-import-not-at-top
      sr_train.train_sr(dataclasses.replace(cfg, total_steps=steps), run_dir,
                        progress=False, log=None)
      train_s = time.time() - t1
      rec = dict(variant=name, sets=sets, train_seconds=round(train_s, 1),
                 **evaluate(run_dir, sigma_starts))
      rec["gain"] = {k: round(v - rec["bicubic"], 3) for k, v in rec["headstart"].items()}
      records.append(rec)
      with open(out, "a", encoding="utf-8") as f:
        f.write(json.dumps(rec) + "\n")
      print(json.dumps(rec), flush=True)
  if not records:
    return 0
  print("\n| variant | step | bicubic (dB) | " + " | ".join(
      f"gain σ={s:g}" for s in sigma_starts) + " | train s |")
  print("|---|---:|---:|" + "---:|" * len(sigma_starts) + "---:|")
  for r in records:
    print(f"| {r['variant']} | {r['step']} | {r['bicubic']:.2f} | " + " | ".join(
        f"{v:+.2f}" for v in r["gain"].values()) + f" | {r['train_seconds']:.0f} |")
  return 0


if __name__ == "__main__":
  sys.exit(main())
