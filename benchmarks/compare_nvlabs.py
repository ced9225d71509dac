"""edmjax against NVlabs/edm on the same CPU cores, side by side (one JSON document).

The work (CIFAR-10 DDPM++ recipe scaled down: model_channels 32, channel_mult (2, 2, 2),
4 blocks, attention at 16x16, dropout 0.13, augmentation p 0.12, fp32, 32x32x3):

  train       one optimizer step at batch 32 (EDM loss, Adam, EMA), images/s
  sample      `edm_sampler`, 18 steps (35 NFE), batch 32, images/s; edmjax through
              `edmjax.sampling.sample` under `jax.jit`, one row per device count of
              `--sample-devices` (1: one default JAX CPU device, as a user's `jax.jit`
              gets it; 2: the batch split over two devices, as the scripts do)

Each measurement is its own process, pinned to `--cpus` (default: the cores this
process may use); PyTorch uses that many threads. Rounds are interleaved (NVlabs,
edmjax, NVlabs, edmjax, ...) and the edmjax/NVlabs ratio is taken within each round,
so a drift in the machine's speed moves both. The JSON holds every round, medians,
the paired ratios, the machine and the load average before and after. Images per
CPU-second (process CPU time instead of wall time) are given beside images/s: on a
loaded machine they still compare the two sides' efficiency per core, while images/s
then mostly measure the load (PyTorch's spinning OpenMP threads inflate its CPU time
under contention, so its per-CPU-second figure is then pessimistic).

NVlabs/edm is imported from `--nvlabs` (a checkout of github.com/NVlabs/edm) under
`--torch-python`; when that interpreter has no torch, `pip install torch==2.13.0` (and
NVlabs' click, tqdm, pillow) is run into it first.

Usage:
  python benchmarks/compare_nvlabs.py [--nvlabs DIR] [--torch-python PY] [--cpus 0,1]
      [--rounds 3] [--train-devices 2] [--sample-devices 1,2] [--out FILE] [--tiny]

`--tiny` (a 16-channel net at 16x16, batch 4, 2 sampler steps, one round) checks that
everything runs end to end in a few minutes; its figures mean nothing.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import side_by_side  # noqa: E402  pylint: disable=g-import-not-at-top

NET = dict(model_channels=32, channel_mult=(2, 2, 2), num_blocks=4, attn_resolutions=(16,),
           dropout=0.13, augment_p=0.12, resolution=32, channels=3, batch=32)
TINY = dict(model_channels=16, channel_mult=(1, 2), num_blocks=1, attn_resolutions=(8,),
            dropout=0.13, augment_p=0.12, resolution=16, channels=3, batch=4)


def ensure_torch(python: str) -> None:
  """Installs torch 2.13.0 (and NVlabs' imports) into `python` if it lacks them."""
  probe = "import torch, click, tqdm, PIL, numpy"
  if subprocess.run([python, "-c", probe], capture_output=True, check=False).returncode == 0:
    return
  print(f"compare_nvlabs: installing torch==2.13.0 into {python}", file=sys.stderr)
  subprocess.run([python, "-m", "pip", "install", "torch==2.13.0", "click", "tqdm", "pillow",
                  "numpy"], check=True)


def _cpus(text):
  if not text:
    return sorted(os.sched_getaffinity(0))
  try:
    cpus = sorted({int(c) for c in text.split(",")})
  except ValueError:
    cpus = []
  if not cpus or not set(cpus) <= os.sched_getaffinity(0):
    raise argparse.ArgumentTypeError(
        f"--cpus {text!r}: give a comma-separated list of cores this process may use "
        f"({sorted(os.sched_getaffinity(0))}).")
  return cpus


def _machine(cpus):
  model = "unknown"
  try:
    with open("/proc/cpuinfo", encoding="utf-8") as f:
      model = next((l.split(":", 1)[1].strip() for l in f if l.startswith("model name")),
                   model)
  except OSError:
    pass
  return dict(cpu=model, cores_used=cpus, cores_total=os.cpu_count(),
              python=platform.python_version(),
              date=datetime.datetime.now().astimezone().isoformat(timespec="seconds"))


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--nvlabs", default="/work/refs/NVlabs+edm", metavar="DIR",
                 help="NVlabs/edm checkout (has training/networks.py and generate.py)")
  p.add_argument("--torch-python", default="/work/refvenv/bin/python", metavar="PY",
                 help="interpreter with torch (installed on demand)")
  p.add_argument("--cpus", type=_cpus, default=None, metavar="LIST",
                 help="cores to pin both sides to (default: all this process may use)")
  p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (>= 1)")
  p.add_argument("--work", default="train,sample", help="train, sample or both")
  p.add_argument("--train-steps", type=int, default=5)
  p.add_argument("--train-devices", type=int, default=None, metavar="N",
                 help="JAX CPU devices for the edmjax step (default: one per core, as "
                      "experiments/train.py)")
  p.add_argument("--sample-devices", default="1,2", metavar="LIST",
                 help="JAX CPU device counts for the sampler, one row each (default 1,2: "
                      "the plain library API on one default device, and the batch split "
                      "over two devices as the scripts do)")
  p.add_argument("--xla-options", default=None, metavar="JSON",
                 help="compiler options for edmjax's step and sampler, e.g. "
                      "'{\"xla_cpu_experimental_ynn_fusion_type\": \"\"}'")
  p.add_argument("--out", default=None, metavar="FILE", help="also write the JSON here")
  p.add_argument("--tiny", action="store_true", help="tiny smoke run (figures meaningless)")
  args = p.parse_args(argv)
  cpus = args.cpus or _cpus(None)
  work = [w for w in args.work.split(",") if w]
  if not work or not set(work) <= {"train", "sample"}:
    p.error(f"--work {args.work!r}: allowed train, sample or train,sample")
  if args.rounds < 1 or args.train_steps < 1:
    p.error("--rounds and --train-steps must be >= 1")
  if not os.path.isfile(os.path.join(args.nvlabs, "training", "networks.py")):
    p.error(f"--nvlabs {args.nvlabs!r} is not an NVlabs/edm checkout "
            "(no training/networks.py)")
  try:
    sample_devices = [int(n) for n in args.sample_devices.split(",") if n]
  except ValueError:
    sample_devices = []
  if not sample_devices or not all(1 <= n <= len(cpus) for n in sample_devices):
    p.error(f"--sample-devices {args.sample_devices!r}: give device counts from 1 to "
            f"{len(cpus)} (the pinned cores), e.g. 1,2")
  if args.train_devices is not None and not 1 <= args.train_devices <= len(cpus):
    p.error(f"--train-devices {args.train_devices}: allowed 1 to {len(cpus)} "
            "(the pinned cores)")
  try:
    xla_options = json.loads(args.xla_options) if args.xla_options else None
  except ValueError as e:
    p.error(f"--xla-options {args.xla_options!r} is not JSON: {e}")
  ensure_torch(args.torch_python)

  net = TINY if args.tiny else NET
  rounds = 1 if args.tiny else args.rounds
  common = dict(net, nvlabs=os.path.abspath(args.nvlabs), device="cpu",
                xla_options=xla_options)
  train = dict(common, work="train", steps=1 if args.tiny else args.train_steps,
               jax_devices=args.train_devices or len(cpus))
  sample = dict(common, work="sample", num_steps=2 if args.tiny else 18, warmup=0)
  # (row name, NVlabs spec, edmjax spec); rows of one work share NVlabs' run in a round.
  rows_spec = []
  if "train" in work:
    rows_spec.append(("train", train, train))
  if "sample" in work:
    rows_spec += [(f"sample_{n}dev", sample, dict(sample, jax_devices=n))
                  for n in sample_devices]
  load_before = side_by_side.load_average()

  def write(final):
    """The JSON so far (written after every row, so a stopped run keeps its rows)."""
    summary = []
    for name, nv_spec, ej_spec in rows_spec:
      if not rows[name]["edmjax"]:
        continue
      nv = [r["images_per_s"] for r in rows[name]["nvlabs"]]
      ej = [r["images_per_s"] for r in rows[name]["edmjax"]]
      nv_cpu = [r["images_per_s"] / r["busy_cores"] for r in rows[name]["nvlabs"]]
      ej_cpu = [r["images_per_s"] / r["busy_cores"] for r in rows[name]["edmjax"]]
      summary.append(dict(
          work=name, batch=net["batch"],
          nvlabs_images_per_s=statistics.median(nv), edmjax_images_per_s=statistics.median(ej),
          ratio_paired_median=statistics.median(e / n for e, n in zip(ej, nv)),
          nvlabs_images_per_cpu_s=statistics.median(nv_cpu),
          edmjax_images_per_cpu_s=statistics.median(ej_cpu),
          ratio_per_cpu_s_paired_median=statistics.median(e / n for e, n in zip(ej_cpu, nv_cpu)),
          edmjax_jax_devices=ej_spec["jax_devices"], torch_threads=len(cpus),
          nfe=(2 * ej_spec["num_steps"] - 1) if nv_spec["work"] == "sample" else None))
    doc = dict(benchmark="compare_nvlabs", tiny=args.tiny, machine=_machine(cpus),
               load_average_before=load_before, load_average_after=side_by_side.load_average(),
               config=dict(net, precision="fp32"), xla_options=xla_options,
               summary=summary,
               rounds_done=min(len(r["edmjax"]) for r in rows.values()), rounds=rows)
    text = json.dumps(doc, indent=1)
    if final:
      print(text)
    if args.out:
      with open(args.out, "w", encoding="utf-8") as f:
        f.write(text + "\n")

  rows = {name: {"nvlabs": [], "edmjax": []} for name, _, _ in rows_spec}
  for _ in range(rounds):
    nvlabs_runs = {}
    for name, nv_spec, ej_spec in rows_spec:
      w = nv_spec["work"]
      if w not in nvlabs_runs:
        nvlabs_runs[w] = side_by_side.spawn(
            args.torch_python, dict(nv_spec, framework="torch"), cpus=cpus)
      rows[name]["nvlabs"].append(nvlabs_runs[w])
      rows[name]["edmjax"].append(side_by_side.spawn(
          sys.executable, dict(ej_spec, framework="jax"), cpus=cpus))
      print(json.dumps({"round": name, "nvlabs": rows[name]["nvlabs"][-1]["images_per_s"],
                        "edmjax": rows[name]["edmjax"][-1]["images_per_s"],
                        "load": side_by_side.load_average()}), file=sys.stderr, flush=True)
      write(final=False)
  write(final=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
