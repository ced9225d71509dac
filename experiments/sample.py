"""Draw samples from a training work directory's newest checkpoint (EMA parameters).

Thin driver: loads the run for sampling (edmjax.train.loop.load_run: its config and
network, not its data) and draws one image per seed with any sampler of
edmjax.sampling (`--sampler NAME --opt name=value`) through
edmjax.train.generate.generate: each seed has its own latents and noise key, so a
seed gives the same image at any --batch size, and the batch is split over one JAX
CPU device per core (or every accelerator). Writes a PNG grid and an .npz.
"""

from __future__ import annotations

import argparse
import os
import sys

import guidance_args

from edmjax import cli

EXAMPLES = """
Examples:
  python experiments/sample.py --workdir out/digits_edm --seeds 0-63
  python experiments/sample.py --workdir out/digits_edm --sampler ablation \\
      --opt solver=euler --opt discretization=vp --opt num_steps=50
  python experiments/sample.py --workdir out/digits_edm --sampler dpmpp_2m --opt num_steps=10
  python experiments/sample.py --workdir out/digits_ddpm --sampler ddim --opt num_steps=50
  python experiments/sample.py --workdir out/digits_ddpm --sampler edm   # the VP bridge
  python experiments/sample.py --workdir out/digits_edm --class 3 --seeds 0-15
  python experiments/sample.py --workdir out/digits_edm2 --ema 0.1 --guidance 2 \
      --guidance-interval 0.3,5            # classifier-free, a tracked EMA
  python experiments/sample.py --workdir out/digits_edm2 --ema out/digits_edm2/phema/\
phema-0000128000-0.070.npz --guidance 1.5 --guide-workdir out/digits_edm2_guide
  python experiments/sample.py --list-samplers
"""


_Formatter = cli.HelpFormatter


def parse_seeds(text: str, option: str = "--seeds") -> list[int]:
  """'0-63' or '1,5,9' or '0-3,10' -> a list of ints in [0, 2**32 - 1].

  Raises:
    cli.UsageError: naming `option`, the value and what is allowed (a part that is
      not a number, an empty range LO-HI with LO > HI, a seed out of range, no seed).
  """
  def number(part):
    try:
      value = int(part)
    except ValueError:
      raise cli.UsageError(f"{option}={text!r}: {part.strip()!r} is not a seed; write seeds "
                           "as non-negative integers, ranges LO-HI or a comma-separated "
                           "list (e.g. 0-63 or 1,5,9).") from None
    if not 0 <= value < 2**32:
      raise cli.UsageError(f"{option}={text!r}: seed {value} is not allowed; seeds lie in "
                           "[0, 2**32 - 1].")
    return value

  out = []
  for part in text.split(","):
    if "-" in part.strip()[1:]:
      lo, hi = part.split("-", 1) if not part.strip().startswith("-") else ("", part)
      a, b = number(lo), number(hi)
      if a > b:
        raise cli.UsageError(f"{option}={text!r}: the range {a}-{b} is empty; write "
                             "LO-HI with LO <= HI.")
      out.extend(range(a, b + 1))
    elif part.strip():
      out.append(number(part))
  if not out:
    raise cli.UsageError(f"{option}={text!r} names no seed.")
  return out


def check_writable(folder: str, option: str) -> None:
  """Checks a file can be written in `folder` (or the parent it would be made in),
  before any slow work; creates nothing.

  Raises:
    cli.UsageError: naming `option` and the folder.
  """
  from edmjax.train import runner  # pylint: disable=g-import-not-at-top
  try:
    runner.check_writable(folder, create=False)
  except OSError as e:
    raise cli.UsageError(f"{option}: cannot write into {folder!r} ({e.strerror or e}); "
                         "choose a folder you can write to.") from None


def print_samplers() -> None:
  """Prints every sampler with its options and defaults (--list-samplers)."""
  from edmjax import sampling  # pylint: disable=g-import-not-at-top
  for name in sampling.SAMPLER_NAMES:
    opts = ", ".join(f"{k}={d!r}" for k, (d, _) in sampling.SamplerSpec.options_of(
        name).items())
    print(f"{name:16s} {opts}")


@cli.entry_point
def main(argv=None):
  from edmjax import sampling  # pylint: disable=g-import-not-at-top
  p = argparse.ArgumentParser(description=__doc__ + EXAMPLES, formatter_class=_Formatter)
  cli.add_debug_option(p)
  p.add_argument("--workdir", metavar="DIR", help="training work directory")
  p.add_argument("--seeds", default="0-63", metavar="RANGE", help="e.g. 0-63 or 1,5,9")
  p.add_argument("--sampler", default="edm", choices=sampling.SAMPLER_NAMES)
  p.add_argument("--opt", action="append", default=[], metavar="NAME=VALUE",
                 help="sampler option (repeatable), e.g. num_steps=32; see --list-samplers")
  p.add_argument("--list-samplers", action="store_true",
                 help="list every sampler with its options and defaults, then exit")
  p.add_argument("--class", dest="class_label", type=int, default=None, metavar="C",
                 help="class label for a class-conditional run (default: seed %% classes)")
  p.add_argument("--batch", type=int, default=64, metavar="N", help="seeds per batch")
  p.add_argument("--step", type=int, default=None, help="checkpoint step (default: newest)")
  p.add_argument("--cpu-devices", type=int, default=None, metavar="N",
                 help="on CPU, split the host into N JAX devices (default: one per core, "
                      "as many as divide --batch; 0 = leave one device); sample on at "
                      "most N devices")
  guidance_args.add_arguments(p)
  p.add_argument("--no-progress", action="store_true", help="no progress bar")
  p.add_argument("--out", default=None, metavar="PATH",
                 help="output path without extension (default: WORKDIR/generated/<sampler>)")
  args = p.parse_args(argv)
  if args.list_samplers:
    print_samplers()
    return 0
  if not args.workdir:
    p.error("--workdir is required")
  try:
    spec = sampling.SamplerSpec.parse(args.sampler, args.opt)
  except ValueError as e:
    p.error(str(e))
  seeds = parse_seeds(args.seeds)
  if spec.name == "headstart":
    p.error("--sampler headstart starts from an image (experiments/upscale.py); choose a "
            "sampler that starts from noise")
  if args.batch < 1:
    p.error(f"--batch={args.batch} is not allowed; it must be >= 1")
  guidance_args.check(args, p.error)
  if not os.path.exists(os.path.join(args.workdir, "config.json")):
    p.error(f"--workdir {args.workdir!r} has no config.json; pass a work directory of "
            "experiments/train.py")
  out = args.out or os.path.join(args.workdir, "generated", args.sampler)
  if os.path.splitext(out)[1].lower() in (".png", ".npz"):
    out = os.path.splitext(out)[0]  # --out x.png writes x.png and x.npz
  check_writable(os.path.dirname(os.path.abspath(out)), "--out")

  from edmjax.train import parallel  # pylint: disable=g-import-not-at-top
  if args.cpu_devices != 0:
    parallel.split_cpu_into_devices(args.batch, max_devices=args.cpu_devices)
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from edmjax.train import generate, loop, monitor  # pylint: disable=g-import-not-at-top

  try:
    cfg, model, info, model_fn, variables, what = guidance_args.load(args.workdir, args,
                                                                     step=args.step)
  except (FileNotFoundError, ValueError) as e:
    p.error(str(e))
  labels = None
  if info.label_dim:
    if args.class_label is not None:
      if not 0 <= args.class_label < info.label_dim:
        p.error(f"--class {args.class_label} is not allowed; the run has "
                f"{info.label_dim} classes (0 to {info.label_dim - 1})")
      labels = np.full(len(seeds), args.class_label, np.int32)
    else:
      labels = (np.asarray(seeds) % info.label_dim).astype(np.int32)
  elif args.class_label is not None:
    p.error(f"--class {args.class_label}: the run is unconditional "
            f"(data.cond={cfg.data.cond})")
  mesh = (generate.generation_mesh(args.batch, jax.devices()[:args.cpu_devices])
          if args.cpu_devices else None)
  images = generate.generate(model_fn, seeds, spec, image_shape=info.image_shape,
                             batch_size=args.batch, class_labels=labels,
                             variables=variables, mesh=mesh,
                             progress=not args.no_progress)
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  np.savez(out + ".npz", images=images, seeds=np.asarray(seeds),
           labels=np.zeros(0, np.int32) if labels is None else labels)
  monitor.save_grid(out + ".png", np.clip(images, -1, 1))
  nfe = spec.nfe(model.eps.T if model.eps is not None else None)
  guided = " (x2 where guided)" if model_fn is not info.model_fn else ""
  print(f"{len(seeds)} samples ({spec!r}, {nfe} NFE{guided}; {what}) -> "
        f"{out}.png, {out}.npz")
  return 0


if __name__ == "__main__":
  sys.exit(main())
