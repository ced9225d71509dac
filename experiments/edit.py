"""Edit an image with a trained run: SDEdit, or inpainting with an optional RePaint walk.

Thin driver: loads the run (edmjax.train.loop.load_run), reads IN.png at the run's
image size (grey or RGB converted to the run's channels; other sizes are refused), and
calls edmjax.editing:

* without --mask: SDEdit, `editing.sdedit`: noise the image to --sigma-start and solve
  back with --sampler (small σ_start keeps the image, σ_start = 80 forgets it);
* with --mask MASK.png (white = pixels to generate, black = pixels to keep):
  `editing.inpaint`, every sampler through a model whose denoised known pixels are
  pinned to the image; --resample U --jump J add RePaint's resampling (Lugmayr et al.
  2022); --sigma-start regenerates the white region SDEdit-style from the image
  instead of from noise.

The kept pixels of OUT.png are IN.png's exactly. The noise comes from --seed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from edmjax import cli  # noqa: E402  pylint: disable=wrong-import-position
import sample  # noqa: E402  pylint: disable=wrong-import-position  (check_writable)

EXAMPLES = """
Examples:
  python experiments/edit.py in.png out.png --workdir out/digits_edm --sigma-start 2.0
  python experiments/edit.py in.png out.png --workdir out/digits_edm --mask mask.png
  python experiments/edit.py in.png out.png --workdir out/digits_edm --mask mask.png \\
      --resample 10 --jump 1 --sampler edm --opt num_steps=18
  python experiments/edit.py in.png out.png --workdir out/digits_edm --mask mask.png \\
      --sampler ode --opt rtol=1e-3 --opt atol=1e-3
"""


_Formatter = cli.HelpFormatter


def _read_png(p, path, what, shape):
  """An (H, W, C) uint8 array from a PNG, converted to C channels; exit 2 otherwise."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top
  try:
    image = Image.open(path)
  except (OSError, ValueError) as e:
    p.error(f"{what} {path!r} cannot be read as an image: {e}")
  h, w, c = shape
  if image.size != (w, h):
    p.error(f"{what} {path!r} is {image.size[0]}×{image.size[1]}; the run's images are "
            f"{w}×{h} (resize it first)")
  image = image.convert("L" if c == 1 else "RGB")
  return np.asarray(image, np.uint8).reshape(h, w, c)


@cli.entry_point
def main(argv=None):
  from edmjax import editing, sampling  # pylint: disable=g-import-not-at-top
  p = argparse.ArgumentParser(description=__doc__ + EXAMPLES, formatter_class=_Formatter)
  cli.add_debug_option(p)
  p.add_argument("input", metavar="IN.png", help="the image to edit")
  p.add_argument("output", metavar="OUT.png", help="where to write the result")
  p.add_argument("--workdir", required=True, metavar="DIR", help="training work directory")
  p.add_argument("--step", type=int, default=None, help="checkpoint step (default: newest)")
  p.add_argument("--mask", default=None, metavar="MASK.png",
                 help="inpaint: white (>= 128) = generate, black = keep; without it, SDEdit")
  p.add_argument("--sigma-start", type=float, default=None, metavar="S",
                 help="SDEdit's starting noise level (required without --mask)")
  p.add_argument("--sampler", default="edm", choices=sampling.SAMPLER_NAMES)
  p.add_argument("--opt", action="append", default=[], metavar="NAME=VALUE",
                 help="sampler option (repeatable), e.g. num_steps=32")
  p.add_argument("--resample", type=int, default=1, metavar="U",
                 help="RePaint resamplings per jump (1: none; with --mask)")
  p.add_argument("--jump", type=int, default=1, metavar="J",
                 help="RePaint jump length in levels (with --mask)")
  p.add_argument("--class", dest="class_label", type=int, default=None, metavar="C",
                 help="class label for a class-conditional run (default: unconditional)")
  p.add_argument("--seed", type=int, default=0, help="noise seed")
  p.add_argument("--dry-run", action="store_true", help="print the plan and exit")
  args = p.parse_args(argv)
  try:
    spec = sampling.SamplerSpec.parse(args.sampler, args.opt)
  except ValueError as e:
    p.error(str(e))
  if args.mask is None:
    if args.sigma_start is None:
      p.error("without --mask the edit is SDEdit: pass --sigma-start")
    if args.resample != 1:
      p.error("--resample is RePaint's resampling for inpainting: pass --mask")
  if args.sigma_start is not None and not args.sigma_start > 0:
    p.error(f"--sigma-start {args.sigma_start} must be > 0")
  if args.resample < 1 or args.jump < 1:
    p.error(f"--resample {args.resample} and --jump {args.jump} must be >= 1")
  if args.resample > 1 and spec.name not in editing.RESAMPLE_SAMPLERS:
    p.error(f"--resample needs a sampler whose steps stand alone, one of "
            f"{', '.join(editing.RESAMPLE_SAMPLERS)}; got --sampler {spec.name}")
  for path, what in ((args.input, "IN.png"), (args.mask, "--mask")):
    if path is not None and not os.path.exists(path):
      p.error(f"{what} {path!r} does not exist")
  if not os.path.exists(os.path.join(args.workdir, "config.json")):
    p.error(f"--workdir {args.workdir!r} has no config.json; pass a work directory of "
            "experiments/train.py")
  sample.check_writable(os.path.dirname(os.path.abspath(args.output)), "OUT.png")
  try:
    if args.sigma_start is not None:
      editing.starting_at(spec, args.sigma_start)
  except ValueError as e:
    p.error(str(e))
  plan = {"input": args.input, "output": args.output, "workdir": args.workdir,
          "edit": "inpaint" if args.mask else "sdedit", "mask": args.mask,
          "sigma_start": args.sigma_start, "sampler": repr(spec),
          "resample": args.resample, "jump": args.jump, "seed": args.seed}
  if args.dry_run:
    print(json.dumps(plan, indent=2))
    return 0

  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top
  from edmjax.train import loop  # pylint: disable=g-import-not-at-top

  cfg = loop.read_config(args.workdir)       # checks that need no weights come first
  if args.class_label is not None and not cfg.data.cond:
    p.error(f"--class {args.class_label}: the run is unconditional "
            f"(data.cond={cfg.data.cond})")
  shape = cfg.data.image_shape
  if shape is not None:
    _read_png(p, args.input, "IN.png", tuple(shape))
    if args.mask:
      _read_png(p, args.mask, "--mask", tuple(shape[:2]) + (1,))
  try:
    cfg, _, info = loop.load_run(args.workdir, step=args.step)
  except FileNotFoundError as e:
    p.error(str(e))
  labels = None
  if args.class_label is not None:
    if not 0 <= args.class_label < info.label_dim:
      p.error(f"--class {args.class_label} is not allowed; the run has "
              f"{info.label_dim} classes (0 to {info.label_dim - 1})")
    labels = np.asarray([args.class_label], np.int32)
  image = editing.from_uint8(_read_png(p, args.input, "IN.png", info.image_shape))[None]
  key = jax.random.key(args.seed)
  if args.mask is None:
    def run(variables, image, key):
      return editing.sdedit(info.model_fn(variables), image, key, args.sigma_start,
                            spec=spec, class_labels=labels)
    out = jax.jit(run)(info.variables, image, key)
  else:
    generate_here = _read_png(p, args.mask, "--mask", info.image_shape[:2] + (1,)) >= 128
    known = (~generate_here).astype(np.float32)

    def run(variables, image, key):
      return editing.inpaint(info.model_fn(variables), image, known, key, spec=spec,
                             resample=args.resample, jump=args.jump,
                             sigma_start=args.sigma_start, class_labels=labels)
    try:
      out = jax.jit(run)(info.variables, image, key)
    except ValueError as e:      # e.g. resampling with a multistep sampler
      p.error(str(e))
  pixels = editing.to_uint8(np.asarray(out)[0])
  os.makedirs(os.path.dirname(os.path.abspath(args.output)), exist_ok=True)
  Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels).save(args.output)
  print(f"{plan['edit']} of {args.input} with {spec!r} (step {info.step}) -> {args.output}")
  return 0


if __name__ == "__main__":
  sys.exit(main())
