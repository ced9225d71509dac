#!/usr/bin/env python3
"""Train an SR3 super-resolution net with the EDM loss, then evaluate it on held-out data.

The net is SR3's conditioned U-Net (edmjax.nn.sr3_unet: SongUNet on the noisy image
concatenated with the bicubically upsampled LR image), trained on HR patches of
scikit-image's photographs (one photograph, `chelsea` by default, held out whole)
degraded by area downsampling (edmjax.sr.degrade), learning the residual
HR − bicubic(LR) under EDM preconditioning (edmjax.sr.model).

Outputs in --workdir: config.json, checkpoints/, metrics.jsonl, loss.png,
strips/step_*.png (LR | bicubic | headstart | HR on held-out crops) and, with
--eval (default after training), eval/table.md, eval/results.json and
eval/strip.png (LR, bicubic, headstart, full, HR of the whole held-out photograph),
and, for photographs, eval/unseen.md (bicubic against one-step headstart on every
photograph the net never saw: the gain depends on the picture).

Configs:
  photos_4x   4x SR on photograph patches (32x32 HR), 32-channel DDPM++ net, half the
              examples headstart examples; stops after 30 minutes (max_minutes)
  photos_2x   the same at 2x (64x64 HR patches)
  lfw_4x      4x SR of scikit-image's LFW crops (32x32 grey; 20 held out)
  tiny        a seconds-long smoke run (tests, --dry-run checks)

Examples:
  python experiments/train_sr3.py --workdir out/sr/photos4x --set max_minutes=30
  python experiments/train_sr3.py --config lfw_4x --workdir out/sr/lfw --set total_steps=2000
  python experiments/train_sr3.py --workdir out/sr/photos4x --eval-only
  python experiments/train_sr3.py --config tiny --workdir /tmp/sr_tiny --dry-run
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402

from edmjax import cli  # noqa: E402
from edmjax.sr import degrade as degrade_lib  # noqa: E402
from edmjax.sr import model as model_lib  # noqa: E402
from edmjax.sr import train as sr_train  # noqa: E402
from edmjax.train import config as config_lib  # noqa: E402
from edmjax.train import parallel  # noqa: E402
from edmjax.train.config import NetConfig, OptimConfig  # noqa: E402


def photos_4x():
  """The measured run of docs/super_resolution.md (out/sr/photos4x_v3)."""
  return sr_train.SRTrainConfig(
      net=NetConfig(model_channels=32, channel_mult=(1, 2, 2), num_blocks=1,
                    attn_resolutions=(), dropout=0.0),
      data=sr_train.SRDataConfig(min_std=0.1),
      loss=sr_train.LossConfig(P_mean=-1.0, P_std=1.2, sigma_data=None),
      headstart_prob=0.5, headstart_sigma=(0.1, 1.0),
      max_minutes=30.0, total_steps=100_000)


def photos_2x():
  return dataclasses.replace(
      photos_4x(), sr=model_lib.SRConfig(degrade=degrade_lib.DegradeConfig(scale=2)),
      data=sr_train.SRDataConfig(patch=64, min_std=0.1))


def lfw_4x():
  return sr_train.SRTrainConfig(
      net=NetConfig(model_channels=16, channel_mult=(1, 2, 2), num_blocks=1,
                    attn_resolutions=(), dropout=0.0),
      data=sr_train.SRDataConfig(name="lfw_subset", resolution=32, channels=1, holdout="20"),
      sr=model_lib.SRConfig(aug_sigma_max=0.2),
      total_steps=2000, sample_every=0)


def tiny():
  return sr_train.SRTrainConfig(
      net=NetConfig(model_channels=8, channel_mult=(1, 2), num_blocks=1,
                    attn_resolutions=(), dropout=0.0, channel_mult_emb=2),
      data=sr_train.SRDataConfig(patch=16),
      optim=OptimConfig(lr=2e-3, lr_rampup_kimg=0.1, ema_halflife_kimg=0.5),
      batch_size=4, total_steps=4, log_every=2, checkpoint_every=2, sample_every=2)


CONFIGS = {"photos_4x": photos_4x, "photos_2x": photos_2x, "lfw_4x": lfw_4x, "tiny": tiny}


def parse_args(argv=None):
  p = argparse.ArgumentParser(
      description=__doc__.split("\n\n")[0],
      epilog="\n\n".join(__doc__.split("\n\n")[1:]),
      formatter_class=lambda prog: argparse.RawDescriptionHelpFormatter(prog, width=92))
  cli.add_debug_option(p)
  p.add_argument("--config", default="photos_4x", choices=sorted(CONFIGS), metavar="NAME",
                 help="named configuration: " + ", ".join(sorted(CONFIGS))
                 + " (default: %(default)s)")
  p.add_argument("--workdir", required=True, metavar="DIR",
                 help="run directory (resumes when it holds a checkpoint)")
  p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                 help="override a config field, e.g. --set net.model_channels=32 "
                      "(repeatable)")
  p.add_argument("--dry-run", action="store_true",
                 help="print the resolved config and the plan, then exit")
  p.add_argument("--eval-only", action="store_true",
                 help="skip training; evaluate the newest checkpoint")
  p.add_argument("--no-eval", action="store_true", help="do not evaluate after training")
  p.add_argument("--no-progress", action="store_true", help="no progress bar")
  p.add_argument("--cpu-devices", type=int, default=None, metavar="N",
                 help="on CPU, split the host into exactly N JAX devices (data parallel; N "
                      "must divide the batch); default: one per core, as many as divide the "
                      "batch (0 = leave one device)")
  p.add_argument("--sigma-starts", default="0.05,0.1,0.2,0.5,1,2", metavar="LIST",
                 help="headstart σ_start values of the table (default: %(default)s)")
  p.add_argument("--headstart-steps", default="1,2,4", metavar="LIST",
                 help="headstart step counts N of the table (default: %(default)s)")
  p.add_argument("--full-steps", type=int, default=18, metavar="N",
                 help="Heun steps of full sampling from σ_max=80 (NFE 2N−1; "
                      "default: %(default)s)")
  p.add_argument("--full-seeds", type=int, default=1, metavar="K",
                 help="seeds of full sampling (default: %(default)s)")
  p.add_argument("--tile", type=int, default=None, metavar="T",
                 help="evaluation tile (default: the training patch)")
  p.add_argument("--overlap", type=int, default=8, metavar="O",
                 help="tile overlap in HR pixels (default: %(default)s)")
  p.add_argument("--no-unseen", action="store_true",
                 help="photos only: skip the headstart-vs-bicubic table of every other "
                      "photograph the net never saw (eval/unseen.md)")
  return p.parse_args(argv)


def evaluate_unseen(workdir, cfg, model, variables, *, tile, overlap, sigma_start=0.2):
  """eval/unseen.md and eval/unseen.json: bicubic vs one-step headstart on every photograph
  of `edmjax.data.patches` that the run did not train on (the held-out one included)."""
  from edmjax.sr import evaluate as sr_evaluate  # pylint: disable=g-import-not-at-top
  from edmjax.data import patches  # pylint: disable=g-import-not-at-top
  train, _ = patches.photo_split(cfg.data.holdout, cfg.data.photo_set)
  multiple = cfg.sr.scale * 2 ** (len(cfg.net.channel_mult) - 1)
  images = {n: patches.crop_to_multiple(patches.load_photograph(n), multiple)
            for n in patches.PHOTOGRAPHS + patches.EXTRA_PHOTOGRAPHS if n not in train}
  print(f"headstart σ_start={sigma_start:g} N=1 on the {len(images)} unseen photographs")
  rows = sr_evaluate.evaluate_photographs(model, variables, cfg.sr, cfg.loss.sigma_data,
                                          images, sigma_start=sigma_start, tile=tile,
                                          overlap=overlap)
  out = os.path.join(workdir, "eval")
  with open(os.path.join(out, "unseen.md"), "w", encoding="utf-8") as f:
    f.write(sr_evaluate.format_photographs(rows) + "\n")
  with open(os.path.join(out, "unseen.json"), "w", encoding="utf-8") as f:
    json.dump(rows, f, indent=1)
  print(sr_evaluate.format_photographs(rows))


def evaluate(workdir, *, sigma_starts, steps, full_steps, full_seeds, tile, overlap,
             unseen=True):
  """Writes eval/table.md, eval/results.json and eval/strip.png for the held-out image
  (and, for photographs, eval/unseen.md: see `evaluate_unseen`)."""
  from edmjax.sr import evaluate as sr_evaluate  # pylint: disable=g-import-not-at-top
  from edmjax.train import monitor  # pylint: disable=g-import-not-at-top
  cfg, model, state = sr_train.load_sr(workdir)
  _, held = sr_train.load_sr_data(cfg)
  hr = held[:1]
  tile = tile or (cfg.data.patch if cfg.data.name == "photos" else None)
  print(f"evaluating step {int(state.step)} on the held-out image {hr.shape} "
        f"(tile {tile}, overlap {overlap})")
  variables = {"params": state.ema_params, **state.buffers}
  rows, images = sr_evaluate.evaluate_image(
      model, variables, cfg.sr, cfg.loss.sigma_data, hr, sigma_starts=sigma_starts,
      steps=steps, full_steps=full_steps, full_seeds=full_seeds, tile=tile, overlap=overlap)
  out = os.path.join(workdir, "eval")
  os.makedirs(out, exist_ok=True)
  table = sr_evaluate.format_table(rows)
  pivots = "\n\n".join(f"{name}\n\n" + sr_evaluate.format_pivot(rows, metric, digits)
                         for name, metric, digits in (
                             ("PSNR (dB)", "psnr", 2), ("SSIM", "ssim", 4),
                             ("LR consistency (dB)", "consistency", 1)))
  with open(os.path.join(out, "table.md"), "w", encoding="utf-8") as f:
    f.write(table + "\n\n" + pivots + "\n")
  meta = dict(step=int(state.step), kimg=int(state.position) / 1000,
              heldout=cfg.data.holdout, shape=list(hr.shape), tile=tile, overlap=overlap)
  with open(os.path.join(out, "results.json"), "w", encoding="utf-8") as f:
    json.dump(dict(meta=meta, rows=rows), f, indent=1)
  print(table)
  heads = [r for r in rows if r["method"].startswith("headstart") and "projection" not in
           r["method"] and r["steps"] <= 4]
  best = max(heads, key=lambda r: r["psnr"])["method"]
  full = [k for k in images if k.startswith("full")][0]
  scale = cfg.sr.scale
  lr_near = np.repeat(np.repeat(np.asarray(images["lr"]), scale, 1), scale, 2)
  strip = np.concatenate([lr_near, np.asarray(images["bicubic"]), np.asarray(images[best]),
                          np.asarray(images[full]), np.asarray(images["hr"])])
  monitor.save_grid(os.path.join(out, "strip.png"), np.clip(strip, -1, 1), cols=5)
  print(f"strip: LR | bicubic | {best} | {full} | HR -> {out}/strip.png")
  if unseen and cfg.data.name == "photos":
    evaluate_unseen(workdir, cfg, model, variables, tile=tile, overlap=overlap)


def _numbers(option: str, text: str, kind) -> list:
  """'0.1,0.5' -> [0.1, 0.5]: positive finite numbers of `kind` (float or int)."""
  try:
    values = [kind(v) for v in text.split(",") if v.strip()]
  except ValueError:
    values = []
  if not values or not all(0 < v < float("inf") for v in values):
    raise cli.UsageError(f"{option}={text!r} is not allowed; give a comma-separated list of "
                         f"numbers > 0{' (integers)' if kind is int else ''}.")
  return values


@cli.entry_point
def main(argv=None):
  args = parse_args(argv)
  cfg = config_lib.apply_overrides(CONFIGS[args.config](), args.set)
  sr_train.validate_sr(cfg)
  sigma_starts = _numbers("--sigma-starts", args.sigma_starts, float)
  steps = _numbers("--headstart-steps", args.headstart_steps, int)
  for option, value, low in (("--full-steps", args.full_steps, 2),
                             ("--full-seeds", args.full_seeds, 1),
                             ("--overlap", args.overlap, 0)):
    if value < low:
      raise cli.UsageError(f"{option}={value} is not allowed; it must be >= {low}.")
  if args.tile is not None and args.tile < 1:
    raise cli.UsageError(f"--tile={args.tile} is not allowed; it must be >= 1.")
  if args.eval_only and not os.path.isfile(os.path.join(args.workdir, "config.json")):
    raise cli.UsageError(f"--eval-only: --workdir={args.workdir!r} has no config.json; "
                         "evaluate a work directory that train_sr3.py trained (or drop "
                         "--eval-only to train one).")
  if args.cpu_devices != 0:  # exactly N devices (an error when N does not divide the batch)
    parallel.split_cpu_into_devices(cfg.batch_size, devices=args.cpu_devices)
  if args.dry_run:
    print(config_lib.to_json(cfg))
    print(f"would train {cfg.total_steps} steps (max_minutes={cfg.max_minutes}) in "
          f"{args.workdir}, then evaluate: {not args.no_eval}")
    return 0
  if not args.eval_only:
    t0 = time.time()
    _, cfg = sr_train.train_sr(cfg, args.workdir, progress=not args.no_progress)
    print(f"training took {time.time() - t0:.1f} s")
  if args.no_eval:
    return 0
  evaluate(args.workdir, sigma_starts=sigma_starts, steps=steps, full_steps=args.full_steps,
           full_seeds=args.full_seeds, tile=args.tile, overlap=args.overlap,
           unseen=not args.no_unseen)
  return 0


if __name__ == "__main__":
  sys.exit(main())
