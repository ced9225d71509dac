"""Command-line options shared by the sampling scripts: which EMA, and guidance.

  --ema STD|FILE            a tracked power-function EMA of the run (its σ_rel), or a
                            snapshot / post-hoc reconstruction file
                            (experiments/reconstruct_phema.py); default: the run's EMA
  --guidance W              D_w = D_guide + W (D_main − D_guide); 1 = no guidance
  --guide-workdir DIR       the guide run (autoguidance: a smaller or shorter-trained
                            model); without it, classifier-free guidance (the main
                            network without labels; needs a class-conditional run)
  --guide-ema STD|FILE      the guide's weights, as --ema
  --guidance-interval LO,HI guide only for σ in (LO, HI] (Kynkäänniemi et al. 2024)

Thin glue over edmjax.train.loop.load_run and edmjax.train.models.GuidedModelFn; the
weight W is an argument of the compiled program (a sweep over W compiles once).
"""

from __future__ import annotations

import math


def add_arguments(p) -> None:
  """Adds the options above to an argparse parser (or argument group)."""
  p.add_argument("--ema", default=None, metavar="STD|FILE",
                 help="EMA weights: a tracked σ_rel of the run (optim.ema_stds) or a "
                      "snapshot / reconstruction .npz (default: the run's EMA)")
  p.add_argument("--guidance", type=float, default=1.0, metavar="W",
                 help="guidance weight w (1: none)")
  p.add_argument("--guide-workdir", default=None, metavar="DIR",
                 help="guide run for autoguidance (default: classifier-free guidance "
                      "with the main network without labels)")
  p.add_argument("--guide-ema", default=None, metavar="STD|FILE",
                 help="the guide's EMA weights, as --ema")
  p.add_argument("--guidance-interval", default=None, metavar="LO,HI",
                 help="apply guidance only for σ in (LO, HI], e.g. 0.28,5.42")


def parse_ema(text):
  """'0.1' -> 0.1; a path stays a path; None stays None."""
  if text is None:
    return None
  try:
    return float(text)
  except ValueError:
    return text


def check_weight_and_interval(args, error, guide_option: str) -> bool:
  """Checks --guidance and --guidance-interval, sets `args.interval` ((lo, hi) or None)
  and returns whether guidance is asked for (W != 1 or a guide given by
  `guide_option`, the `args` attribute naming the guide)."""
  if not math.isfinite(args.guidance):
    error(f"--guidance {args.guidance} is not allowed; it must be a finite number.")
  args.interval = None
  if args.guidance_interval is not None:
    try:
      lo, hi = (float(v) for v in args.guidance_interval.split(","))
    except ValueError:
      error(f"--guidance-interval {args.guidance_interval!r} must be two numbers LO,HI.")
    if not 0 <= lo < hi:
      error(f"--guidance-interval {args.guidance_interval!r} is not allowed; it needs "
            "0 <= LO < HI.")
    args.interval = (lo, hi)
  guided = args.guidance != 1.0 or getattr(args, guide_option) is not None
  if not guided and args.interval is not None:
    error(f"--guidance-interval needs guidance: pass --guidance W (W != 1) or "
          f"--{guide_option.replace('_', '-')}.")
  return guided


def check(args, error) -> None:
  """Validates the options (before anything slow); `error(message)` exits (status 2)."""
  guided = check_weight_and_interval(args, error, "guide_workdir")
  if not guided and args.guide_ema is not None:
    error("--guide-ema needs guidance: pass --guidance W (W != 1) or --guide-workdir DIR.")
  if args.guide_ema is not None and args.guide_workdir is None:
    error("--guide-ema needs --guide-workdir (classifier-free guidance uses the main "
          "network's own weights).")


def load(workdir, args, *, step=None):
  """(cfg, info, model_fn, variables, description) for `generate.generate`.

  Without guidance, the run's `info.model_fn` and `info.variables`; with guidance, a
  `GuidedModelFn` over both runs.

  Raises:
    FileNotFoundError / ValueError: from `load_run`, or a guide whose images or
      classes do not match the main run's (naming both).
  """
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from edmjax.train import loop, models  # pylint: disable=g-import-not-at-top
  cfg, model, info = loop.load_run(workdir, step=step, ema=parse_ema(args.ema))
  what = f"{workdir} step {info.step}" + (f", ema {args.ema}" if args.ema else "")
  if args.guidance == 1.0 and args.guide_workdir is None:
    return cfg, model, info, info.model_fn, info.variables, what
  guide_fn, guide_vars = None, {}
  if args.guide_workdir is None:
    if not info.label_dim:
      raise ValueError(f"--guidance {args.guidance} without --guide-workdir is "
                       f"classifier-free guidance, but {workdir!r} is unconditional; "
                       "give a guide run (autoguidance).")
    what += f", classifier-free guidance w={args.guidance:g}"
  else:
    _, _, ginfo = loop.load_run(args.guide_workdir, ema=parse_ema(args.guide_ema))
    if tuple(ginfo.image_shape) != tuple(info.image_shape):
      raise ValueError(f"the guide {args.guide_workdir!r} makes {ginfo.image_shape} images, "
                       f"the main run {info.image_shape}.")
    guide_fn, guide_vars = ginfo.model_fn, ginfo.variables
    what += (f", autoguidance w={args.guidance:g} by {args.guide_workdir} step "
             f"{ginfo.step}" + (f" ema {args.guide_ema}" if args.guide_ema else ""))
  if args.interval is not None:
    what += f" for σ in ({args.interval[0]:g}, {args.interval[1]:g}]"
  model_fn = models.GuidedModelFn(info.model_fn, guide_fn, args.interval)
  variables = {"main": info.variables, "guide": guide_vars,
               "guidance": jnp.float32(args.guidance)}
  return cfg, model_fn(variables), info, model_fn, variables, what
