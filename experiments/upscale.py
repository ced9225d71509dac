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

Memory: the tiles go through the net in batches sized to --tile-memory (XLA's own
estimate of one call's memory, measured by compiling the net), and each batch is
blended into the output as it completes; a progress bar counts the batches. The
full-size image (input, output and the sampler's state) is held in memory as well.
The input's EXIF orientation is applied and 16-bit PNGs keep their range. Every
option is checked before any work starts (also with --dry-run).

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

from edmjax import cli  # noqa: E402


def _parser():
  p = argparse.ArgumentParser(
      description=__doc__.split("\n\n")[0],
      epilog="\n\n".join(__doc__.split("\n\n")[1:]),
      formatter_class=lambda prog: argparse.RawDescriptionHelpFormatter(prog, width=92))
  cli.add_debug_option(p)
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
                 help="tile overlap in output pixels, 0 <= O < T (default: %(default)s)")
  p.add_argument("--tile-memory", type=float, default=1024.0, metavar="MIB",
                 help="memory budget of one batch of tiles through the net, in MiB "
                      "(default: %(default)s)")
  p.add_argument("--tile-batch", type=int, default=None, metavar="K",
                 help="tiles per net call (default: as many as fit in --tile-memory)")
  p.add_argument("--no-progress", action="store_true", help="no progress bar")
  p.add_argument("--seed", type=int, default=0, help="noise seed (default: %(default)s)")
  p.add_argument("--project", action="store_true",
                 help="project onto exact LR consistency (area downsampling)")
  p.add_argument("--dry-run", action="store_true",
                 help="print the plan (sizes, tiles, batches, NFE) and exit without "
                      "running the net")
  return p


def parse_args(argv=None):
  return _parser().parse_args(argv)


def _read(path, channels):
  """The input as (1, H, W, C) in [-1, 1]: EXIF orientation applied, 16-bit kept."""
  from edmjax.data import sources  # pylint: disable=g-import-not-at-top
  array, scale = sources.read_image_file(path, channels)
  return (np.asarray(array, np.float32) / np.float32(scale) * 2 - 1)[None]


def _write(path, x):
  from PIL import Image  # pylint: disable=g-import-not-at-top
  pix = np.clip(np.rint((np.asarray(x[0]) + 1) * 127.5), 0, 255).astype(np.uint8)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  Image.fromarray(pix[..., 0] if pix.shape[-1] == 1 else pix).save(path)


def _check_output(parser, path):
  """The output path must have an extension PIL can write and a writable folder."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  Image.init()
  ext = os.path.splitext(path)[1].lower()
  writable = sorted(e for e, fmt in Image.registered_extensions().items() if fmt in Image.SAVE)
  if ext not in writable:
    parser.error(f"OUT.png={path!r} has {'no extension' if not ext else f'extension {ext!r}'}"
                 f"; the image format comes from it: use .png (lossless), .jpg, .tif, .webp "
                 f"or another of {', '.join(writable)}.")
  folder = os.path.dirname(os.path.abspath(path))
  while not os.path.exists(folder):
    folder = os.path.dirname(folder)
  if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
    parser.error(f"OUT.png={path!r}: cannot write into {folder!r} (not a writable folder).")


def _check_args(parser, args):
  """Every option, before any work (also for --dry-run)."""
  if not os.path.isfile(args.input):
    parser.error(f"IN.png={args.input!r} does not exist or is not a file.")
  _check_output(parser, args.output)
  if not args.sigma_start > 0 or not np.isfinite(args.sigma_start):
    parser.error(f"--sigma-start={args.sigma_start} must be a finite number > 0.")
  if args.steps < 1:
    parser.error(f"--steps={args.steps} must be >= 1.")
  if args.mode == "full" and args.steps < 2:
    parser.error(f"--mode full needs --steps >= 2, got {args.steps}.")
  if args.tile is not None and args.tile < 1:
    parser.error(f"--tile={args.tile} must be >= 1.")
  if args.overlap < 0:
    parser.error(f"--overlap={args.overlap} must be >= 0.")
  if not args.tile_memory > 0 or not np.isfinite(args.tile_memory):
    parser.error(f"--tile-memory={args.tile_memory} must be a finite number of MiB > 0.")
  if args.tile_batch is not None and args.tile_batch < 1:
    parser.error(f"--tile-batch={args.tile_batch} must be >= 1.")


def _image_size(path):
  """(H, W) as displayed (EXIF orientation applied), without decoding the pixels."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  try:
    with Image.open(path) as im:
      w, h = im.size
      orientation = im.getexif().get(0x0112, 1)
  except Exception as e:  # PIL raises many kinds for a file that is not an image
    raise ValueError(f"Cannot read image file {path!r}: {e}") from e
  return (w, h) if orientation in (5, 6, 7, 8) else (h, w)


@cli.entry_point
def main(argv=None):
  parser = _parser()
  args = parser.parse_args(argv)
  _check_args(parser, args)
  from edmjax.sr import train as sr_train  # pylint: disable=g-import-not-at-top
  from edmjax.sr import tiling  # pylint: disable=g-import-not-at-top
  if not os.path.exists(os.path.join(args.workdir, "config.json")):
    parser.error(f"--workdir={args.workdir!r} has no config.json; it must be an SR training "
                 "run (experiments/train_sr3.py --workdir).")
  cfg = sr_train.read_sr_config(args.workdir)
  scale = cfg.sr.scale
  channels = 3 if cfg.data.name == "photos" else (cfg.data.channels or 1)
  try:
    h, w = _image_size(args.input)
  except ValueError as e:
    parser.error(str(e))
  patch = cfg.data.patch if cfg.data.name == "photos" else cfg.data.resolution
  tile = args.tile or patch
  if tile is None:
    parser.error(f"--tile is needed: the run in {args.workdir!r} trained on "
                 f"{cfg.data.name!r} at its native size, so there is no default tile.")
  multiple = 2 ** (len(cfg.net.channel_mult) - 1)
  if tile % multiple or tile % scale:
    parser.error(f"--tile={tile} must be a multiple of {multiple} and of the scale {scale}.")
  if args.overlap >= tile:
    parser.error(f"--overlap={args.overlap} must be smaller than the tile ({tile}).")
  min_lr = -(-tile // scale)
  pad_h, pad_w = max(0, min_lr - h), max(0, min_lr - w)
  heun = args.mode == "full" or args.solver == "heun"
  nfe = 0 if args.mode == "bicubic" else (2 * args.steps - 1 if heun else args.steps)
  hh, ww = (h + pad_h) * scale, (w + pad_w) * scale
  plan = tiling.plan_tiles(hh, ww, tile, args.overlap)

  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from edmjax.sr import inference  # pylint: disable=g-import-not-at-top
  from edmjax.sr import model as model_lib  # pylint: disable=g-import-not-at-top
  model = model_lib.build_sr_net(cfg.net, patch=patch or tile, channels=channels,
                                 noise_aug=cfg.sr.noise_aug)
  sigma_data = cfg.loss.sigma_data if cfg.loss.sigma_data is not None else 0.5

  def tile_fn(variables, xt, st, ut, at):
    apply = model_lib.make_net_apply(model, variables, noise_aug=cfg.sr.noise_aug)
    return model_lib.make_sr_denoiser(apply, ut, residual=cfg.sr.residual,
                                      sigma_data=sigma_data, sigma_aug=at)(xt, st)

  tile_batch, per_tile = args.tile_batch, None
  if nfe and tile_batch is None:
    one = jax.ShapeDtypeStruct((1, tile, tile, channels), jnp.float32)
    vec = jax.ShapeDtypeStruct((1,), jnp.float32)
    abstract = jax.eval_shape(lambda: model.init(
        jax.random.key(0), jnp.zeros((1, tile, tile, channels)), jnp.zeros((1,)),
        jnp.zeros((1, tile, tile, channels)), None,
        jnp.zeros((1,)) if cfg.sr.noise_aug else None))
    per_tile, fixed = tiling.measure_tile_bytes(tile_fn, one, vec, one, vec,
                                                constants=(abstract,))
    tile_batch = tiling.tile_batch_for_budget(per_tile, args.tile_memory * 2**20,
                                              fixed_bytes=fixed, tiles=plan.tiles)
  plan = tiling.plan_tiles(hh, ww, tile, args.overlap, tile_batch=tile_batch)
  info = dict(input=[h, w, channels], output=[h * scale, w * scale, channels], scale=scale,
              mode=args.mode, sigma_start=args.sigma_start, steps=args.steps, nfe=nfe,
              solver="heun" if heun else "euler",
              tile=tile, overlap=args.overlap, tiles=plan.tiles, padding=[pad_h, pad_w],
              tile_batch=plan.positions_per_call if nfe else None,
              net_calls=plan.calls * nfe,
              tile_batch_mib=(round(per_tile * plan.positions_per_call / 2**20, 1)
                              if per_tile else None),
              project=args.project)
  print(json.dumps(info))
  if args.dry_run:
    return 0

  lr = _read(args.input, channels)
  if lr.shape[1:3] != (h, w):  # pragma: no cover - _image_size and the decoder agree
    raise AssertionError(f"decoded {lr.shape[1:3]}, expected {(h, w)}")
  variables = {}
  if nfe:  # the bicubic baseline needs no network
    cfg, model, state = sr_train.load_sr(args.workdir)
    variables = {"params": state.ema_params, **state.buffers}
  x = np.pad(lr, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="reflect") \
      if (pad_h or pad_w) else lr
  bar = None
  if nfe and not args.no_progress:
    from tqdm.auto import tqdm  # pylint: disable=g-import-not-at-top
    bar = tqdm(total=plan.calls * nfe, unit="batch", desc="tiles", file=sys.stderr,
               dynamic_ncols=True, mininterval=1.0)

  def progress(_):
    if bar is not None:
      bar.update(1)

  def run(lr_img, key):
    den, u = inference.sr_denoiser(model, variables, lr_img, cfg.sr, cfg.loss.sigma_data,
                                   tile=tile, overlap=args.overlap,
                                   tile_batch=tile_batch, progress=progress)
    return inference.super_resolve(den, u, key, mode=args.mode, sigma_start=args.sigma_start,
                                   num_steps=args.steps, solver=args.solver,
                                   project_lr=lr_img if args.project else None, scale=scale)

  t0 = time.time()
  try:
    sr = jax.jit(run)(jnp.asarray(x), jax.random.key(args.seed))
    sr = np.asarray(jax.block_until_ready(sr))[:, :h * scale, :w * scale]
  finally:
    if bar is not None:
      bar.close()
  seconds = time.time() - t0
  m = inference.sr_metrics(jnp.asarray(sr), None, jnp.asarray(lr), cfg.sr.degrade)
  _write(args.output, sr)
  print(json.dumps(dict(output=args.output, seconds=round(seconds, 2),
                        lr_consistency_db=round(float(m["consistency"][0]), 2),
                        colour_error_255=[round(float(v), 3) for v in m["colour_error"][0]])))
  return 0


if __name__ == "__main__":
  sys.exit(main())
