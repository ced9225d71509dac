"""Train a diffusion model (EDM, VP, VE or DDPM objective) with edmjax.train.

Thin driver: picks a named config (experiments/configs.py), applies --set overrides and
calls `edmjax.train.train`, which builds, jits once, loops, logs, checkpoints and
resumes from the work directory automatically.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from edmjax import cli  # noqa: E402  pylint: disable=wrong-import-position

EXAMPLES = """
Examples:
  # the default: EDM on the embedded 8x8 digits, a few minutes on 2 CPU cores
  python experiments/train.py
  # what would run (config, parameter count, data size, sigma_data), then exit
  python experiments/train.py --config cifar10_ddpmpp --dry-run
  # the DDPM baseline with the same network
  python experiments/train.py --config digits_ddpm --workdir out/digits_ddpm
  # override any field (see --list-fields); run again to resume
  python experiments/train.py --set total_steps=3000 --set net.model_channels=64
  # bfloat16 compute and gradient accumulation
  python experiments/train.py --config cifar10_ddpmpp --set net.dtype=bfloat16 \\
      --set accum_steps=4
  # multi-host: run on every host with its process id
  python experiments/train.py --config cifar10_ddpmpp --coordinator host0:1234 \\
      --num-processes 4 --process-id $RANK
"""


_Formatter = cli.HelpFormatter


def parse_args(argv=None):
  import configs  # pylint: disable=g-import-not-at-top
  p = argparse.ArgumentParser(description=__doc__ + EXAMPLES, formatter_class=_Formatter)
  cli.add_debug_option(p)
  p.add_argument("--config", default="digits_edm", choices=sorted(configs.CONFIGS),
                 metavar="NAME", help="named config: " + ", ".join(configs.CONFIGS))
  p.add_argument("--workdir", default=None, metavar="DIR",
                 help="output and resume directory (default: out/<config>)")
  p.add_argument("--set", dest="overrides", action="append", default=[],
                 metavar="FIELD=VALUE", help="override a config field (repeatable)")
  p.add_argument("--dry-run", action="store_true",
                 help="print the resolved config, parameter count, data size and "
                      "sigma_data, then exit")
  p.add_argument("--list-fields", action="store_true", help="list settable fields")
  p.add_argument("--no-progress", action="store_true", help="no tqdm progress bar")
  p.add_argument("--cpu-devices", type=int, default=None, metavar="N",
                 help="on CPU, split the host into exactly N JAX devices (data parallel; N "
                      "must divide the batch); default: one per core, as many as divide the "
                      "batch (0 = leave one device)")
  p.add_argument("--coordinator", default=None, metavar="HOST:PORT",
                 help="jax.distributed coordinator address (multi-host)")
  p.add_argument("--num-processes", type=int, default=None, metavar="N")
  p.add_argument("--process-id", type=int, default=None, metavar="I")
  return p.parse_args(argv)


@cli.entry_point
def main(argv=None):
  args = parse_args(argv)
  if args.coordinator:
    from edmjax.train import parallel  # pylint: disable=g-import-not-at-top
    parallel.initialize_distributed(args.coordinator, args.num_processes, args.process_id)
  import configs  # pylint: disable=g-import-not-at-top
  from edmjax import train as tr  # pylint: disable=g-import-not-at-top
  from edmjax.train import config as cfg_lib, loop  # pylint: disable=g-import-not-at-top

  cfg = configs.get_config(args.config)
  if args.list_fields:
    print("\n".join(cfg_lib.field_names(cfg)))
    return 0
  cfg = cfg_lib.apply_overrides(cfg, args.overrides)  # every field and combination
  workdir = args.workdir or os.path.join("out", args.config)
  if not args.coordinator and args.cpu_devices != 0:
    tr.parallel.split_cpu_into_devices(cfg.batch_size, cfg.accum_steps, devices=args.cpu_devices)

  if args.dry_run:
    import jax  # pylint: disable=g-import-not-at-top
    from edmjax.data import stats  # pylint: disable=g-import-not-at-top
    data = loop.load_data(cfg)
    cfg = cfg_lib.validate(loop.resolve_config(cfg, data), image_shape=data.image_shape)
    built = loop.build(cfg, tr.parallel.make_mesh(), data.image_shape, data.num_classes)
    shapes = jax.eval_shape(lambda: built.model.init(
        jax.random.key(0), jax.numpy.zeros((1,) + data.image_shape),
        jax.numpy.zeros((1,)),
        jax.numpy.zeros((1, built.label_dim)) if built.label_dim else None,
        jax.numpy.zeros((1, built.augment_dim)) if built.augment_dim else None))
    print(cfg_lib.to_json(cfg))
    print(f"parameters      {tr.count_params(shapes['params']):,}")
    print(f"data            {getattr(data.source, 'name', cfg.data.name)}: "
          f"{len(data.source)} training images of shape {data.image_shape}, "
          f"{data.num_classes} classes, {0 if data.heldout is None else len(data.heldout)} "
          "held out")
    images = loop.training_images(data.source)
    print(f"sigma_data      {stats.estimate_sigma_data(images):.4f} estimated from "
          f"{len(images)} images (config uses {cfg.loss.sigma_data})")
    print(f"devices         {jax.device_count()} x {jax.devices()[0].platform}")
    print(f"schedule        {cfg.total_steps} steps x batch {cfg.batch_size} = "
          f"{cfg.total_steps * cfg.batch_size / 1000:.1f} kimg")
    return 0

  t0 = time.time()
  result = loop.train(cfg, workdir, progress=not args.no_progress)
  elapsed = time.time() - t0
  import jax  # pylint: disable=g-import-not-at-top
  if jax.process_index() == 0:
    print(f"done in {elapsed:.0f} s: {workdir}/ (samples/, checkpoints/, metrics.jsonl, "
          "loss.png)")
    if result.neighbours:
      n = result.neighbours
      print("nearest-training-neighbour distance (L2, pixels in [-1, 1]): "
            f"samples median {n['samples_median']:.3f}, held-out real median "
            f"{n['heldout_median']:.3f} (ratio {n['median_ratio']:.2f}; ~1 = as novel as "
            "new real images, << 1 = copies)")
      print(json.dumps(n))
  return 0


if __name__ == "__main__":
  sys.exit(main())
