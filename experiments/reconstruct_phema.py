"""Post-hoc EMA: build EMA profiles a run never tracked from its EMA snapshots.

Thin driver over edmjax.train.phema.reconstruct (Karras et al. 2024, Sec. 3.2; NVlabs/
edm2's reconstruct_phema.py). The run must have trained with power-function EMA
tracks and a snapshot interval: its <workdir>/snapshots/ema-<nimg>-<std>.npz files
(edmjax.train.snapshots) are the input. For each wanted σ_rel it writes
<out>/phema-<nimg>-<std>.npz in the same format, which the sampling scripts load with
--params. Snapshots are read one at a time and accumulated in float32; the
coefficients are solved in float64. Works for any network (EDM2UNet, SongUNet, …):
a snapshot is a parameter pytree.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

from edmjax import cli
from edmjax.train import phema, snapshots

EXAMPLES = """
Examples:
  python experiments/reconstruct_phema.py --workdir out/digits_edm2 --std 0.05,0.1,0.15
  python experiments/reconstruct_phema.py --workdir out/digits_edm2 \\
      --std 0.01,0.02,...,0.25 --nimg 128000 --out out/digits_edm2/phema
"""


_Formatter = cli.HelpFormatter


def parse_std_list(text: str) -> list[float]:
  """'0.05,0.1' or '0.01,0.02,...,0.1' (an evenly spaced run) -> sorted unique floats.

  Raises:
    ValueError: a malformed list, '...' without two values before and one after, or
      a run that does not land on its end point, naming the text.
  """
  items = [s.strip() for s in text.split(",") if s.strip()]
  out = []
  for i, item in enumerate(items):
    if item != "...":
      try:
        out.append(float(item))
      except ValueError:
        raise ValueError(f"--std {text!r}: {item!r} is not a number.") from None
      continue
    if i < 2 or i + 1 >= len(items) or "..." in (items[i - 2], items[i - 1], items[i + 1]):
      raise ValueError(f"--std {text!r}: '...' needs two numbers before it and one after.")
    a, b, end = float(items[i - 2]), float(items[i - 1]), float(items[i + 1])
    step = b - a
    count = (end - b) / step if step else -1.0
    if step <= 0 or count < 1 or abs(count - round(count)) > 1e-6:
      raise ValueError(f"--std {text!r}: {a}, {b}, ..., {end} is not an increasing, "
                       "evenly spaced run.")
    out.extend(round(b + step * (k + 1), 10) for k in range(int(round(count)) - 1))
  return sorted(set(out))


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__ + EXAMPLES, formatter_class=_Formatter)
  cli.add_debug_option(p)
  p.add_argument("--workdir", required=True, metavar="DIR",
                 help="training work directory (reads DIR/snapshots)")
  p.add_argument("--std", required=True, metavar="LIST",
                 help="σ_rel to reconstruct, e.g. 0.05,0.1 or 0.01,0.02,...,0.25")
  p.add_argument("--nimg", type=int, default=None, metavar="N",
                 help="training time (images) to reconstruct at; one of the snapshots' "
                      "(default: the newest)")
  p.add_argument("--in-std", default=None, metavar="LIST",
                 help="use only snapshots of these σ_rel (default: all)")
  p.add_argument("--out", default=None, metavar="DIR", help="output folder (default: "
                 "DIR/phema)")
  p.add_argument("--max-batch", type=int, default=8, metavar="K",
                 help="reconstructions accumulated at once (memory: K + 1 parameter sets)")
  p.add_argument("--dry-run", action="store_true", help="list inputs and outputs only")
  args = p.parse_args(argv)
  try:
    args.std = parse_std_list(args.std)
    args.in_std = None if args.in_std is None else parse_std_list(args.in_std)
  except ValueError as e:
    p.error(str(e))
  for s in args.std + (args.in_std or []):
    if not 0 < s < phema.MAX_STD:
      p.error(f"--std {s} is not allowed; σ_rel must lie in (0, {phema.MAX_STD:.4f}).")
  if args.max_batch < 1:
    p.error(f"--max-batch {args.max_batch} is not allowed; it must be >= 1.")
  return args


@cli.entry_point
def main(argv=None):
  args = parse_args(argv)
  try:
    found = snapshots.list_snapshots(os.path.join(args.workdir, snapshots.SNAPSHOT_DIR),
                                     stds=args.in_std)
  except FileNotFoundError as e:
    print(f"error: {e}", file=sys.stderr)
    return 2
  times = sorted({s.nimg for s in found})
  nimg = times[-1] if (times and args.nimg is None) else args.nimg
  if not found or nimg not in times:
    print(f"error: --nimg {nimg} is not the time of any snapshot in {args.workdir!r} "
          f"(snapshot times: {times[:3]}{' ...' if len(times) > 3 else ''}"
          f"{times[-1:] if len(times) > 3 else ''}).", file=sys.stderr)
    return 2
  used = [s for s in found if 0 < s.nimg <= nimg]
  out_dir = args.out or os.path.join(args.workdir, "phema")
  print(f"{len(used)} snapshots up to nimg {nimg} "
        f"(σ_rel {sorted({s.std for s in used})}); reconstructing σ_rel {args.std}")
  if args.dry_run:
    for std in args.std:
      print("  " + os.path.join(out_dir, snapshots.file_name(nimg, std, "phema")))
    return 0
  t0 = time.time()
  for k in range(0, len(args.std), args.max_batch):
    batch = args.std[k:k + args.max_batch]
    outs = phema.reconstruct([s.nimg for s in used], [s.std for s in used],
                             lambda i: snapshots.load(used[i].path)[0], batch, out_nimg=nimg)
    for std, params in zip(batch, outs):
      print("  " + snapshots.save(out_dir, nimg, std, params, prefix="phema"))
  print(f"done in {time.time() - t0:.1f} s")
  return 0


if __name__ == "__main__":
  sys.exit(main())
