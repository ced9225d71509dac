"""Throughput of the jitted train step: images/s, compile time, peak memory (JSON).

Configs:
  digits_default  experiments/configs.py digits_edm (DDPM++ 32 ch, 8x8, batch 64)
  ddpmpp32_b32    DDPM++ at 32x32, model_channels 32, batch 32, fp32; NVlabs/edm's
                  PyTorch runs this at about 27 images/s on the 2-core reference machine
  ddpmpp32_b32_bf16  the same with bfloat16 compute (parameters, sigma and loss float32)
  cifar10_b512    EDM's CIFAR-10 DDPM++ (128 ch, batch 512); on CPU it is run only if
                  it fits in --max-seconds, else reported as skipped
  edm2_digits     experiments/configs.py digits_edm2 (EDM2UNet 32 ch, 8x8, 10 classes,
                  batch 64: uncertainty loss, 2 EMA tracks, forced weight normalisation)
  edm2_img64_s_b128  NVlabs/edm2's edm2-img64-s (280M parameters, 64x64x3, 1000 classes,
                  bf16) at batch 128; accelerators only (on CPU reported as skipped)

Usage: python benchmarks/train_step.py [--configs a,b] [--steps 5] [--max-seconds 300]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..",
                                "experiments"))

NVLABS_REFERENCE = {"ddpmpp32_b32": 27.0}


def _configs():
  import configs  # pylint: disable=g-import-not-at-top
  from edmjax.train import config as C  # pylint: disable=g-import-not-at-top
  d = configs.digits_edm()
  d = dataclasses.replace(d, loss=dataclasses.replace(d.loss, sigma_data=0.75))
  small = dataclasses.replace(
      configs.cifar10_ddpmpp(),
      net=dataclasses.replace(configs.cifar10_ddpmpp().net, model_channels=32),
      data=C.DataConfig(name="synthetic"), batch_size=32)
  big = dataclasses.replace(configs.cifar10_ddpmpp(), data=C.DataConfig(name="synthetic"))
  small_bf16 = dataclasses.replace(
      small, net=dataclasses.replace(small.net, dtype="bfloat16"))
  e = configs.digits_edm2()
  e = dataclasses.replace(e, loss=dataclasses.replace(e.loss, sigma_data=0.75))
  img64 = dataclasses.replace(configs.get_config("edm2_img64_s"), batch_size=128,
                              data=C.DataConfig(name="synthetic", cond=True))
  return {"digits_default": (d, (8, 8, 1), 10), "ddpmpp32_b32": (small, (32, 32, 3), 10),
          "ddpmpp32_b32_bf16": (small_bf16, (32, 32, 3), 10),
          "cifar10_b512": (big, (32, 32, 3), 10), "edm2_digits": (e, (8, 8, 1), 10),
          "edm2_img64_s_b128": (img64, (64, 64, 3), 1000)}


def _peak_memory(device):
  stats = device.memory_stats() if hasattr(device, "memory_stats") else None
  if stats and "peak_bytes_in_use" in stats:
    return {"peak_device_bytes": int(stats["peak_bytes_in_use"])}
  return {"peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def bench(name, cfg, shape, steps, num_classes=10):
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from edmjax.train import loop, parallel  # pylint: disable=g-import-not-at-top
  mesh = parallel.make_mesh()
  built = loop.build(cfg, mesh, shape, num_classes)
  t0 = time.time()
  state = built.init(jax.random.key_data(jax.random.key(0)))
  jax.block_until_ready(state)
  init_s = time.time() - t0
  rng = np.random.default_rng(0)
  images = rng.uniform(-1, 1, (cfg.batch_size,) + shape).astype(np.float32)
  labels = np.zeros(cfg.batch_size, np.int32)
  x, y = parallel.global_batch((images, labels), mesh)
  t0 = time.time()
  compiled = built.step.lower(state, x, y).compile()
  compile_s = time.time() - t0
  state, m = compiled(state, x, y)
  jax.block_until_ready(state)
  t0, c0 = time.time(), time.process_time()
  for _ in range(steps):
    state, m = compiled(state, x, y)
  jax.block_until_ready(state)
  wall = time.time() - t0
  cpu = time.process_time() - c0
  out = dict(config=name, batch=cfg.batch_size, image_shape=list(shape),
             dtype=cfg.net.dtype, steps=steps, images_per_sec=steps * cfg.batch_size / wall,
             images_per_cpu_sec=steps * cfg.batch_size / max(cpu, 1e-9),
             compile_s=compile_s, init_s=init_s,
             device=f"{jax.device_count()} x {jax.devices()[0].device_kind}",
             weight_grad=os.environ.get("EDMJAX_CONV_WEIGHT_GRAD", "auto"),
             **_peak_memory(jax.devices()[0]))
  if name in NVLABS_REFERENCE:
    out["nvlabs_pytorch_images_per_sec"] = NVLABS_REFERENCE[name]
  return out


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument("--configs", default="digits_default,ddpmpp32_b32,cifar10_b512")
  p.add_argument("--steps", type=int, default=5)
  p.add_argument("--max-seconds", type=float, default=300.0,
                 help="budget for cifar10_b512 on CPU (estimated from ddpmpp32_b32)")
  p.add_argument("--weight-grad", choices=("auto", "xla", "chunked"), default="auto",
                 help="convolution weight gradient (edmjax.nn.conv); auto = chunked on CPU")
  args = p.parse_args(argv)
  if args.weight_grad != "auto":
    os.environ["EDMJAX_CONV_WEIGHT_GRAD"] = args.weight_grad
  import jax  # pylint: disable=g-import-not-at-top
  cfgs = _configs()
  results = []
  for name in args.configs.split(","):
    cfg, shape, num_classes = cfgs[name]
    if name == "edm2_img64_s_b128" and jax.devices()[0].platform == "cpu":
      results.append(dict(config=name, skipped=True, reason=(
          "CPU: a 280M-parameter network at 64x64, batch 128; run it on an accelerator")))
      print(json.dumps(results[-1]), flush=True)
      continue
    if name == "cifar10_b512" and jax.devices()[0].platform == "cpu":
      small = next((r for r in results if r["config"] == "ddpmpp32_b32"), None)
      # 128 channels vs 32: ~16x the FLOPs per image; 512 images per step.
      est = None if small is None else 16 * 512 * (args.steps + 1) / small["images_per_sec"]
      if est is None or est > args.max_seconds:
        results.append(dict(config=name, skipped=True, reason=(
            f"CPU: estimated {est:.0f} s for {args.steps + 1} steps > --max-seconds "
            f"{args.max_seconds:g}" if est else "CPU: run ddpmpp32_b32 first to estimate")))
        print(json.dumps(results[-1]), flush=True)
        continue
    results.append(bench(name, cfg, shape, args.steps, num_classes))
    print(json.dumps(results[-1]), flush=True)
  return 0


if __name__ == "__main__":
  sys.exit(main())
