"""edmjax against NVlabs/edm on one GPU: training step and `edm_sampler` (one JSON).

EDM's CIFAR-10 DDPM++ (`train.py --arch=ddpmpp`: model_channels 128, channel_mult
(2, 2, 2), 4 blocks, attention at 16x16, dropout 0.13, augmentation p 0.12; 55.7M
parameters) at batch 512:

  train   edmjax bf16 and fp32 against NVlabs `--fp16` (`use_fp16=True`) and fp32:
          images/s, step time, peak GPU memory; for edmjax also XLA's cost-analysis
          FLOPs per step, achieved FLOP/s and its fraction of the GPU's dense bf16 peak
  sample  `edm_sampler`, 18 steps (35 NFE), batch 512, in the same four precisions

Every measurement is its own process (so one framework's memory pool never holds the
other's), run one after another. fp32 is full fp32 on both sides (NVlabs' training loop
turns TF32 off; edmjax sets `jax_default_matmul_precision="highest"`). The dense bf16
peak is looked up from the device name (`PEAK_BF16_TFLOPS`) or given with
`--peak-tflops`.

Needs, on the GPU machine: this checkout with its virtualenv (JAX with CUDA), an
NVlabs/edm checkout (`--nvlabs`) and a python with torch (`--torch-python`, default
this interpreter).

Usage:
  python benchmarks/gpu_compare.py --nvlabs DIR [--torch-python PY] [--work train,sample]
      [--precisions bf16,fp32] [--batch 512] [--steps 10] [--out FILE]
  python benchmarks/gpu_compare.py --dry-run  # the worker specs, nothing run
  python benchmarks/gpu_compare.py --tiny     # CPU smoke run: a tiny net, figures meaningless

The eight workers' total time (compile included) on a GPU is not measured yet; each is
limited to `--worker-timeout` seconds, and a worker that fails or
runs past it is recorded as a row with `error` so the others' figures still come out;
`--max-seconds` (default 450) bounds the whole run the same way.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import side_by_side  # noqa: E402  pylint: disable=g-import-not-at-top

CIFAR10 = dict(model_channels=128, channel_mult=(2, 2, 2), num_blocks=4, attn_resolutions=(16,),
               dropout=0.13, augment_p=0.12, resolution=32, channels=3)
TINY = dict(model_channels=16, channel_mult=(1, 2), num_blocks=1, attn_resolutions=(8,),
            dropout=0.13, augment_p=0.12, resolution=16, channels=3)

# Dense (no sparsity) bf16 tensor-core peak, TFLOP/s, from the vendors' data sheets.
PEAK_BF16_TFLOPS = {
    "H200": 989.0, "H100 SXM": 989.0, "H100 80GB HBM3": 989.0, "H100 PCIe": 756.0,
    "H100 NVL": 835.0, "GH200": 989.0, "B200": 2250.0, "A100": 312.0, "A10G": 125.0,
    "A10": 125.0, "L40S": 362.0, "L4": 121.0, "RTX 4090": 165.0, "V100": 125.0,
}
NVLABS_PRECISION = {"bf16": "fp16", "fp32": "fp32"}  # edmjax bf16 is paired with NVlabs --fp16


def peak_tflops(device_name: str) -> float | None:
  """Dense bf16 peak for a device name (longest matching key), or None if unknown."""
  hits = [k for k in PEAK_BF16_TFLOPS if k.lower() in device_name.lower()]
  return PEAK_BF16_TFLOPS[max(hits, key=len)] if hits else None


def achieved(result: dict, peak: float | None) -> dict:
  """edmjax's achieved FLOP/s (cost analysis over measured time) and fraction of `peak`."""
  flops = result.get("flops_per_step") or result.get("flops_per_sample_call")
  seconds = result.get("step_s") or result.get("sample_s")
  if not flops or not seconds:
    return {}
  out = {"achieved_tflops": flops / seconds / 1e12}
  if peak:
    out["fraction_of_bf16_peak"] = out["achieved_tflops"] / peak
  return out


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--nvlabs", default="/work/refs/NVlabs+edm", metavar="DIR",
                 help="NVlabs/edm checkout (has training/networks.py and generate.py)")
  p.add_argument("--torch-python", default=sys.executable, metavar="PY")
  p.add_argument("--work", default="train,sample", help="train, sample or both")
  p.add_argument("--precisions", default="bf16,fp32",
                 help="edmjax precisions (bf16 is paired with NVlabs --fp16)")
  p.add_argument("--batch", type=int, default=512)
  p.add_argument("--steps", type=int, default=10, help="timed training steps")
  p.add_argument("--num-steps", type=int, default=18, help="sampler steps (2N-1 NFE)")
  p.add_argument("--peak-tflops", type=float, default=None,
                 help="dense bf16 peak of the GPU (default: from its name)")
  p.add_argument("--skip-nvlabs", action="store_true", help="edmjax rows only")
  p.add_argument("--out", default=None, metavar="FILE", help="also write the JSON here")
  p.add_argument("--worker-timeout", type=float, default=240.0, metavar="S",
                 help="seconds per worker process (a worker past it becomes an error row)")
  p.add_argument("--max-seconds", type=float, default=450.0, metavar="S",
                 help="wall-clock budget of the whole run; workers that would start past "
                      "it, or run past it, become error rows (default 450: under 8 min)")
  p.add_argument("--dry-run", action="store_true",
                 help="print the worker specs that would run (JSON) and exit")
  p.add_argument("--tiny", action="store_true",
                 help="CPU smoke run: tiny net, batch 4, 1 step, 2 sampler steps")
  args = p.parse_args(argv)
  work = [w for w in args.work.split(",") if w]
  precisions = [q for q in args.precisions.split(",") if q]
  if not work or not set(work) <= {"train", "sample"}:
    p.error(f"--work {args.work!r}: allowed train, sample or train,sample")
  if not precisions or not set(precisions) <= {"bf16", "fp32"}:
    p.error(f"--precisions {args.precisions!r}: allowed bf16, fp32 or bf16,fp32")
  if args.batch < 1 or args.steps < 1 or args.num_steps < 2:
    p.error(f"--batch {args.batch}, --steps {args.steps}, --num-steps {args.num_steps}: "
            "--batch and --steps must be >= 1 and --num-steps >= 2")
  if args.worker_timeout <= 0 or args.max_seconds <= 0:
    p.error(f"--worker-timeout {args.worker_timeout}, --max-seconds {args.max_seconds}: "
            "both must be > 0 seconds")
  if not args.skip_nvlabs and not os.path.isfile(
      os.path.join(args.nvlabs, "training", "networks.py")):
    p.error(f"--nvlabs {args.nvlabs!r} is not an NVlabs/edm checkout "
            "(no training/networks.py); pass --skip-nvlabs for edmjax alone")

  net = dict(TINY if args.tiny else CIFAR10, batch=4 if args.tiny else args.batch)
  base = dict(net, nvlabs=os.path.abspath(args.nvlabs), flops=True,
              device="cpu" if args.tiny else "auto")
  steps = 1 if args.tiny else args.steps
  num_steps = 2 if args.tiny else args.num_steps
  plan = []  # (interpreter, worker spec), in the order they run
  for w in work:
    spec = dict(base, work=w, steps=steps, num_steps=num_steps,
                warmup=1 if w == "sample" else 2)
    for q in precisions:
      plan.append((sys.executable, dict(spec, framework="jax", precision=q)))
      if not args.skip_nvlabs:
        plan.append((args.torch_python, dict(spec, framework="torch",
                                             precision=NVLABS_PRECISION[q])))
  if args.dry_run:
    print(json.dumps(dict(benchmark="gpu_compare", dry_run=True, config=net,
                          plan=[dict(python=py, spec=sp) for py, sp in plan]), indent=1))
    return 0
  t0 = time.time()
  rows = []
  for py, sp in plan:
    left = args.max_seconds - (time.time() - t0)
    try:
      if left <= 0:
        raise RuntimeError(f"not started: past --max-seconds {args.max_seconds}")
      rows.append(side_by_side.spawn(py, sp, timeout=min(args.worker_timeout, left)))
    except (RuntimeError, subprocess.TimeoutExpired) as e:  # keep the other rows
      rows.append(dict(framework=sp["framework"], work=sp["work"],
                       precision=sp["precision"], error=str(e)[-2000:]))
    print(json.dumps({"done": f"{sp['framework']}/{sp['work']}/{sp['precision']}",
                      "elapsed_s": round(time.time() - t0)}), file=sys.stderr, flush=True)

  name = next((r.get("device_name") for r in rows if r.get("device_name")), None)
  if name is None:
    name = next((r["devices"] for r in rows if "devices" in r), "unknown")
  peak = args.peak_tflops or peak_tflops(name)
  for r in rows:
    if r["framework"] == "jax" and "error" not in r:
      r.update(achieved(r, peak))
  ratios = []
  for w in work:
    for q in precisions:
      ej = [r for r in rows if r["framework"] == "jax" and r["work"] == w
            and r["precision"] == q and "error" not in r]
      nv = [r for r in rows if r["framework"] == "torch" and r["work"] == w
            and r["precision"] == NVLABS_PRECISION[q] and "error" not in r]
      if ej and nv:
        ratios.append(dict(work=w, edmjax=q, nvlabs=NVLABS_PRECISION[q],
                           images_per_s_ratio=statistics.median(
                               e["images_per_s"] / n["images_per_s"] for e, n in zip(ej, nv))))
  doc = dict(benchmark="gpu_compare", tiny=args.tiny, device=name, peak_bf16_tflops=peak,
             config=net, wall_s=time.time() - t0, ratios=ratios, rows=rows)
  text = json.dumps(doc, indent=1)
  print(text)
  if args.out:
    with open(args.out, "w", encoding="utf-8") as f:
      f.write(text + "\n")
  return 0


if __name__ == "__main__":
  sys.exit(main())
