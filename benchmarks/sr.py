#!/usr/bin/env python3
"""Seconds per upscaled megapixel of SR3 sampling: headstart (1 and 4 Euler steps) and full.

Times `edmjax.sr.inference.super_resolve` of a 4x SR3 net (the `photos_4x` network of
experiments/train_sr3.py, or the run in --workdir) on a random LR image, tiled like
experiments/upscale.py, after one warm-up call (compilation excluded). The weights do
not change the cost, so a freshly initialised net is used unless --workdir is given.
Prints one JSON object.

Examples:
  python benchmarks/sr.py
  python benchmarks/sr.py --lr-size 128 --repeats 3
  python benchmarks/sr.py --workdir out/sr/photos4x
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def parse_args(argv=None):
  p = argparse.ArgumentParser(
      description=__doc__.split("\n\n")[0],
      epilog="\n\n".join(__doc__.split("\n\n")[1:]),
      formatter_class=lambda prog: argparse.RawDescriptionHelpFormatter(prog, width=88))
  p.add_argument("--lr-size", type=int, default=64, metavar="N",
                 help="LR side (the output is 4N x 4N; default: %(default)s)")
  p.add_argument("--repeats", type=int, default=2, metavar="K",
                 help="timed calls per mode, the best kept (default: %(default)s)")
  p.add_argument("--workdir", default=None, metavar="DIR",
                 help="a trained run to time instead of the default net")
  p.add_argument("--tile", type=int, default=32, metavar="T",
                 help="tile side, 0 for the whole image at once (default: %(default)s)")
  p.add_argument("--overlap", type=int, default=8, metavar="O", help="(default: %(default)s)")
  p.add_argument("--full-steps", type=int, default=18, metavar="N",
                 help="Heun steps of full sampling (NFE 2N−1 = 35; default: %(default)s)")
  return p.parse_args(argv)


def main(argv=None):
  args = parse_args(argv)
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from edmjax.sr import inference  # pylint: disable=g-import-not-at-top
  from edmjax.sr import model as model_lib  # pylint: disable=g-import-not-at-top
  from edmjax.sr import train as sr_train  # pylint: disable=g-import-not-at-top

  if args.workdir:
    cfg, model, state = sr_train.load_sr(args.workdir)
    variables = {"params": state.ema_params, **state.buffers}
  else:
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(
        os.path.abspath(__file__))), "experiments"))
    import train_sr3  # pylint: disable=g-import-not-at-top
    cfg = train_sr3.photos_4x()
    model = model_lib.build_sr_net(cfg.net, patch=cfg.data.patch, channels=3)
    x = jnp.zeros((1, cfg.data.patch, cfg.data.patch, 3))
    variables = jax.jit(model.init)(jax.random.key(0), x, jnp.zeros((1,)), x)
  sigma_data = cfg.loss.sigma_data or 0.1
  scale = cfg.sr.scale
  lr = jax.random.uniform(jax.random.key(1), (1, args.lr_size, args.lr_size, 3),
                          minval=-1, maxval=1)
  mpx = (args.lr_size * scale) ** 2 / 1e6

  def make(mode, steps):
    def run(lr_img, key):
      den, u = inference.sr_denoiser(model, variables, lr_img, cfg.sr, sigma_data,
                                     tile=args.tile or None, overlap=args.overlap)
      return inference.super_resolve(den, u, key, mode=mode, sigma_start=0.5,
                                     num_steps=steps)
    return jax.jit(run)

  results = {}
  for name, mode, steps, nfe in (("headstart_1step", "headstart", 1, 1),
                                 ("headstart_4steps_euler", "headstart", 4, 4),
                                 (f"full_{2 * args.full_steps - 1}nfe", "full",
                                  args.full_steps, 2 * args.full_steps - 1)):
    fn = make(mode, steps)
    t0 = time.time()
    jax.block_until_ready(fn(lr, jax.random.key(0)))
    compile_s = time.time() - t0
    best = float("inf")
    for r in range(args.repeats):
      t0 = time.time()
      jax.block_until_ready(fn(lr, jax.random.key(r + 1)))
      best = min(best, time.time() - t0)
    results[name] = dict(nfe=nfe, seconds=round(best, 3),
                         seconds_per_megapixel=round(best / mpx, 2),
                         first_call_seconds=round(compile_s, 2))
  print(json.dumps(dict(
      device=str(jax.devices()[0].device_kind), backend=jax.default_backend(),
      cpu_count=os.cpu_count(), machine=platform.machine(),
      output_size=[args.lr_size * scale] * 2, megapixels=round(mpx, 4), tile=args.tile,
      overlap=args.overlap,
      params=int(sum(v.size for v in jax.tree.leaves(variables))),
      load_average=[round(v, 2) for v in os.getloadavg()], results=results), indent=1))
  return 0


if __name__ == "__main__":
  sys.exit(main())
