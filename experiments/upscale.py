#!/usr/bin/env python3
"""Upscale one image of any size with a trained SR3 net (overlapping tiles, no seams).

The image is super-resolved by the factor the net was trained for. The net runs on
overlapping tiles of its training size, blended at every denoiser evaluation with
a smooth window (edmjax.sr.tiling), so the sampler always sees one full-size image
and the result has no seams. Images smaller than a tile are padded by reflection
and cropped back.

Modes:
  headstart  start from bicubic(LR) + σ_start·n and take N Euler steps (NFE N; N=1
             is a single denoiser evaluation); small σ_start: fidelity, large:
             generated detail (default)
  full       sample from σ_max=80 with N Heun steps (NFE 2N−1)
  bicubic    the bicubic upsampling only (a baseline)

--project replaces the result by the nearest image whose area downsampling equals
the input exactly (no colour shift, LR consistency +inf; only for area-trained nets).
The LR consistency PSNR(downsample(SR), LR) and the mean-colour error are printed
with every result.

Examples:
  python experiments/upscale.py IN.png OUT.png --workdir out/sr/photos4x
  python experiments/upscale.py IN.png OUT.png --workdir out/sr/photos4x --sigma-start 0.2 --steps 4
  python experiments/upscale.py IN.png OUT.png --workdir out/sr/photos4x --mode full --steps 18
  python experiments/upscale.py IN.png OUT.png --workdir out/sr/photos4x --dry-run
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402


def parse_args(argv=None):
  p = argparse.ArgumentParser(
      description=__doc__.split("\n\n")[0],
      epilog="\n\n".join(__doc__.split("\n\n")[1:]),
      formatter_class=lambda prog: argparse.RawDescriptionHelpFormatter(prog, width=92))
  p.add_argument("input", metavar="IN.png", help="low-resolution image (PNG, JPEG, ...)")
  p.add_argument("output", metavar="OUT.png", help="where to write the upscaled PNG")
  p.add_argument("--workdir", default="out/sr/photos4x", metavar="DIR",
                 help="SR training run (experiments/train_sr3.py; default: %(default)s)")
  p.add_argument("--mode", default="headstart", choices=("headstart", "full", "bicubic"),
                 help="sampling mode (default: %(default)s)")
  p.add_argument("--sigma-start", type=float, default=0.5, metavar="S",
                 help="headstart noise level σ_start > 0 (default: %(default)s)")
  p.add_argument("--steps", type=int, default=1, metavar="N",
                 help="steps N (headstart Euler: NFE N, Heun and full: NFE 2N−1; "
                      "default: %(default)s)")
  p.add_argument("--solver", default="euler", choices=("euler", "heun"),
                 help="headstart solver: euler (NFE N) or heun (NFE 2N−1; default: "
                      "%(default)s)")
  p.add_argument("--tile", type=int, default=None, metavar="T",
                 help="tile side in output pixels (default: the training patch)")
  p.add_argument("--overlap", type=int, default=8, metavar="O",
                 help="tile overlap in output pixels (default: %(default)s)")
  p.add_argument("--seed", type=int, default=0, help="noise seed (default: %(default)s)")
  p.add_argument("--project", action="store_true",
                 help="project onto exact LR consistency (area downsampling)")
  p.add_argument("--dry-run", action="store_true",
                 help="print the plan (sizes, tiles, NFE) and exit without running the net")
  return p.parse_args(argv)


def _read(path, channels):
  from PIL import Image  # pylint: disable=g-import-not-at-top
  img = Image.open(path)
  img = img.convert("RGB" if channels == 3 else "L")
  arr = np.asarray(img, np.float32) / 127.5 - 1.0
  return arr.reshape(arr.shape[:2] + (channels,))[None]


def _write(path, x):
  from PIL import Image  # pylint: disable=g-import-not-at-top
  pix = np.clip(np.rint((np.asarray(x[0]) + 1) * 127.5), 0, 255).astype(np.uint8)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  Image.fromarray(pix[..., 0] if pix.shape[-1] == 1 else pix).save(path)


def main(argv=None):
  args = parse_args(argv)
  if not os.path.exists(args.input):
    raise SystemExit(f"error: input image {args.input!r} does not exist.")
  if args.sigma_start <= 0:
    raise SystemExit(f"error: --sigma-start={args.sigma_start} must be > 0.")
  if args.steps < 1:
    raise SystemExit(f"error: --steps={args.steps} must be >= 1.")
  from edmjax.sr import train as sr_train  # pylint: disable=g-import-not-at-top
  cfg = sr_train.read_sr_config(args.workdir)
  scale = cfg.sr.scale
  channels = 3 if cfg.data.name == "photos" else (cfg.data.channels or 1)
  lr = _read(args.input, channels)
  h, w = lr.shape[1:3]
  tile = args.tile or (cfg.data.patch if cfg.data.name == "photos" else cfg.data.resolution)
  multiple = 2 ** (len(cfg.net.channel_mult) - 1)
  if tile % multiple or tile % scale:
    raise SystemExit(f"error: --tile={tile} must be a multiple of {multiple} and of the "
                     f"scale {scale}.")
  min_lr = -(-tile // scale)
  pad_h, pad_w = max(0, min_lr - h), max(0, min_lr - w)
  if args.mode == "full" and args.steps < 2:
    raise SystemExit(f"error: --mode full needs --steps >= 2, got {args.steps}.")
  heun = args.mode == "full" or args.solver == "heun"
  nfe = 0 if args.mode == "bicubic" else (2 * args.steps - 1 if heun else args.steps)
  from edmjax.sr import tiling  # pylint: disable=g-import-not-at-top
  hh, ww = (h + pad_h) * scale, (w + pad_w) * scale
  n_tiles = len(tiling.tile_starts(hh, tile, args.overlap)) * len(
      tiling.tile_starts(ww, tile, args.overlap))
  plan = dict(input=[h, w, channels], output=[h * scale, w * scale, channels], scale=scale,
              mode=args.mode, sigma_start=args.sigma_start, steps=args.steps, nfe=nfe,
              solver="heun" if heun else "euler",
              tile=tile, overlap=args.overlap, tiles=n_tiles, padding=[pad_h, pad_w],
              project=args.project)
  print(json.dumps(plan))
  if args.dry_run:
    return 0

  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from edmjax.sr import inference  # pylint: disable=g-import-not-at-top
  cfg, model, state = sr_train.load_sr(args.workdir)
  variables = {"params": state.ema_params, **state.buffers}
  x = np.pad(lr, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="reflect") \
      if (pad_h or pad_w) else lr

  def run(lr_img, key):
    den, u = inference.sr_denoiser(model, variables, lr_img, cfg.sr, cfg.loss.sigma_data,
                                   tile=tile, overlap=args.overlap)
    return inference.super_resolve(den, u, key, mode=args.mode, sigma_start=args.sigma_start,
                                   num_steps=args.steps, solver=args.solver,
                                   project_lr=lr_img if args.project else None, scale=scale)

  t0 = time.time()
  sr = jax.jit(run)(jnp.asarray(x), jax.random.key(args.seed))
  sr = np.asarray(jax.block_until_ready(sr))[:, :h * scale, :w * scale]
  seconds = time.time() - t0
  m = inference.sr_metrics(jnp.asarray(sr), None, jnp.asarray(lr), cfg.sr.degrade)
  _write(args.output, sr)
  print(json.dumps(dict(output=args.output, seconds=round(seconds, 2),
                        lr_consistency_db=round(float(m["consistency"][0]), 2),
                        colour_error_255=[round(float(v), 3) for v in m["colour_error"][0]])))
  return 0


if __name__ == "__main__":
  sys.exit(main())
