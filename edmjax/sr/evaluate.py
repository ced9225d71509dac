"""Evaluation of a trained SR net on a held-out image: the σ_start × NFE table.

For one HR image (NHWC, batch 1) and its LR = A(HR), `evaluate_image` runs bicubic
upsampling, headstart for every (σ_start, N) and full sampling from σ_max, each
with and without the LR-consistency projection, and reports for each the PSNR and
SSIM against HR, the LR consistency PSNR(A(SR), LR) and the mean-colour error
against the LR input (`inference.sr_metrics`). Every sampler call is jitted once
per static (N, mode) and reused across σ_start values and seeds.
"""

from __future__ import annotations

import time
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from edmjax._arrays import Array
from edmjax.sr import degrade
from edmjax.sr import inference


__all__ = ["evaluate_image", "evaluate_photographs", "format_table", "format_pivot",
           "format_photographs"]


def _row(name, sr, hr, lr, cfg, nfe, seconds, **extra):
  m = jax.device_get(inference.sr_metrics(sr, hr, lr, cfg.degrade))
  return dict(method=name, nfe=nfe, psnr=float(m["psnr"][0]), ssim=float(m["ssim"][0]),
              consistency=float(m["consistency"][0]),
              colour_error=[float(v) for v in m["colour_error"][0]],
              max_colour_error=float(np.max(m["colour_error"][0])), seconds=seconds, **extra)


def evaluate_image(model, variables, cfg, sigma_data: float, hr: Array, *,
                   sigma_starts: Sequence[float] = (0.05, 0.1, 0.2, 0.5, 1.0, 2.0),
                   steps: Sequence[int] = (1, 2, 4),
                   solvers: Sequence[str] = ("euler", "heun"), full_steps: int = 18,
                   full_seeds: int = 1, tile: int | None = None, overlap: int = 8,
                   seed: int = 0, log=print):
  """Rows of metrics (dicts) and the images {name: NHWC} for one held-out image.

  Args:
    model, variables: the `SR3UNet` and its (EMA) variables.
    cfg: the run's `SRConfig`.
    sigma_data: σ_d of the run.
    hr: (1, H, W, C) HR image, H and W divisible by the scale (and the net).
    sigma_starts, steps, solvers: the headstart grid (Heun: NFE 2N − 1, Euler: N;
      N = 1 is the same single evaluation for both and is run once).
    full_steps: N of full sampling from σ_max = 80 (NFE 2N − 1).
    full_seeds: seeds of full sampling (each a row).
    tile, overlap: tiled evaluation (`edmjax.sr.tiling`); None: the whole image.
    seed: the base seed.
    log: progress lines, or None.
  """
  say = log or (lambda *a, **k: None)
  hr = jnp.asarray(hr, jnp.float32)
  lr = degrade.degrade_clean(hr, cfg.degrade)
  scale = cfg.scale

  def run(mode, num_steps, solver="euler"):
    def f(sigma_start, key):
      den, u = inference.sr_denoiser(model, variables, lr, cfg, sigma_data, tile=tile,
                                     overlap=overlap)
      return inference.super_resolve(den, u, key, mode=mode, sigma_start=sigma_start,
                                     num_steps=num_steps, solver=solver)
    return jax.jit(f)

  rows, images = [], {}
  u = degrade.upsample(lr, scale, cfg.upsample)
  rows.append(_row("bicubic", u, hr, lr, cfg, 0, 0.0))
  images["bicubic"] = u
  rows.append(_row("bicubic + projection", degrade.project_consistent(u, lr, scale), hr, lr,
                   cfg, 0, 0.0))
  key = jax.random.key(seed)
  grid = [(solver, n) for n in steps for solver in solvers if n > 1 or solver == solvers[0]]
  for solver, n in grid:
    fn = run("headstart", n, solver)
    nfe = inference.sr_spec("headstart", num_steps=n, solver=solver).nfe()
    for s in sigma_starts:
      t0 = time.time()
      sr = jax.block_until_ready(fn(jnp.float32(s), key))
      dt = time.time() - t0
      name = f"headstart σ={s:g} N={n}" + (f" {solver}" if n > 1 else "")
      rows.append(_row(name, sr, hr, lr, cfg, nfe, dt, sigma_start=s, steps=n,
                       solver=solver))
      rows.append(_row(name + " + projection",
                       degrade.project_consistent(sr, lr, scale), hr, lr, cfg, nfe, dt,
                       sigma_start=s, steps=n, solver=solver))
      images[name] = sr
      say(f"  {name}: PSNR {rows[-2]['psnr']:.2f} dB, consistency "
          f"{rows[-2]['consistency']:.1f} dB ({dt:.1f} s)")
  fn = run("full", full_steps)
  for k in range(full_seeds):
    t0 = time.time()
    sr = jax.block_until_ready(fn(jnp.float32(1.0), jax.random.fold_in(key, k + 1)))
    dt = time.time() - t0
    name = f"full σ_max=80 N={full_steps} seed={k}"
    nfe = inference.sr_spec("full", num_steps=full_steps).nfe()
    rows.append(_row(name, sr, hr, lr, cfg, nfe, dt, steps=full_steps))
    rows.append(_row(name + " + projection", degrade.project_consistent(sr, lr, scale), hr,
                     lr, cfg, nfe, dt, steps=full_steps))
    images[name] = sr
    say(f"  {name}: PSNR {rows[-2]['psnr']:.2f} dB, consistency "
        f"{rows[-2]['consistency']:.1f} dB ({dt:.1f} s)")
  images["hr"], images["lr"] = hr, lr
  return rows, images


def evaluate_photographs(model, variables, cfg, sigma_data: float, images, *,
                         sigma_start: float = 0.2, num_steps: int = 1, tile: int | None = None,
                         overlap: int = 8, seed: int = 0, log=print):
  """Bicubic against headstart (σ_start, N Euler steps) on several whole HR images.

  How much one-step SR beats bicubic depends on the picture far more than on the
  training (edges and regular texture gain much, fur and grass little), so a
  single held-out photograph says little alone; this runs the same comparison on
  every photograph the net never saw.

  Args:
    model, variables, cfg, sigma_data: as `evaluate_image`.
    images: {name: (1, H, W, C) HR image}, H and W divisible by the scale (and the net).
    sigma_start, num_steps: the headstart.
    tile, overlap: tiled evaluation; None runs each image whole.
    seed: the noise seed.
    log: progress lines, or None.

  Returns:
    One row per image: name, shape, bicubic and headstart PSNR and SSIM, the PSNR
    gain, and the headstart's LR consistency and maximum colour error.
  """
  say = log or (lambda *a, **k: None)

  @jax.jit
  def run(hr):
    lr = degrade.degrade_clean(hr, cfg.degrade)
    den, u = inference.sr_denoiser(model, variables, lr, cfg, sigma_data, tile=tile,
                                   overlap=overlap)
    sr = inference.super_resolve(den, u, jax.random.key(seed), mode="headstart",
                                 sigma_start=sigma_start, num_steps=num_steps)
    return (inference.sr_metrics(u, hr, lr, cfg.degrade),
            inference.sr_metrics(sr, hr, lr, cfg.degrade))

  rows = []
  for name, hr in images.items():
    bic, head = jax.device_get(run(jnp.asarray(hr, jnp.float32)))
    rows.append(dict(image=name, shape=list(np.shape(hr)[1:3]),
                     bicubic_psnr=float(bic["psnr"][0]), bicubic_ssim=float(bic["ssim"][0]),
                     psnr=float(head["psnr"][0]), ssim=float(head["ssim"][0]),
                     gain=float(head["psnr"][0] - bic["psnr"][0]),
                     consistency=float(head["consistency"][0]),
                     max_colour_error=float(np.max(head["colour_error"][0])),
                     sigma_start=sigma_start, steps=num_steps))
    say(f"  {name}: bicubic {rows[-1]['bicubic_psnr']:.2f} dB, headstart "
        f"{rows[-1]['psnr']:.2f} dB ({rows[-1]['gain']:+.2f})")
  return rows


def format_photographs(rows) -> str:
  """A Markdown table of `evaluate_photographs` rows, with their mean and median gain."""
  lines = ["| image | size | bicubic PSNR (dB) | headstart PSNR (dB) | gain (dB) | "
           "bicubic SSIM | headstart SSIM | LR consistency (dB) |",
           "|---|---|---:|---:|---:|---:|---:|---:|"]
  for r in rows:
    lines.append(f"| {r['image']} | {r['shape'][0]}×{r['shape'][1]} | "
                 f"{r['bicubic_psnr']:.2f} | {r['psnr']:.2f} | {r['gain']:+.2f} | "
                 f"{r['bicubic_ssim']:.4f} | {r['ssim']:.4f} | {r['consistency']:.1f} |")
  gains = np.asarray([r["gain"] for r in rows])
  if len(gains):
    lines.append(f"| mean / median gain | | | | {gains.mean():+.2f} / "
                 f"{np.median(gains):+.2f} | | | |")
  return "\n".join(lines)


def format_table(rows) -> str:
  """A Markdown table of `evaluate_image` rows."""
  lines = ["| method | NFE | PSNR (dB) | SSIM | LR consistency (dB) | max colour error (1/255) |",
           "|---|---:|---:|---:|---:|---:|"]
  for r in rows:
    cons = "∞" if not np.isfinite(r["consistency"]) else f"{r['consistency']:.2f}"
    lines.append(f"| {r['method']} | {r['nfe']} | {r['psnr']:.2f} | {r['ssim']:.4f} | "
                 f"{cons} | {r['max_colour_error']:.3f} |")
  return "\n".join(lines)


def format_pivot(rows, metric: str = "psnr", digits: int = 2) -> str:
  """A Markdown table of one metric of the headstart rows: σ_start × (solver, N, NFE)."""
  heads = [r for r in rows if "sigma_start" in r and "projection" not in r["method"]]
  cols = sorted({(r["steps"], r["solver"] if r["steps"] > 1 else "", r["nfe"])
                 for r in heads}, key=lambda c: (c[2], c[1]))
  sigmas = sorted({r["sigma_start"] for r in heads})
  head = "| σ_start | " + " | ".join(
      f"N={n}{' ' + s if s else ''} (NFE {nfe})" for n, s, nfe in cols) + " |"
  lines = [head, "|---:|" + "---:|" * len(cols)]
  for sg in sigmas:
    vals = []
    for n, s, _ in cols:
      match = [r for r in heads if r["sigma_start"] == sg and r["steps"] == n
               and (n == 1 or r["solver"] == s)]
      vals.append(f"{match[0][metric]:.{digits}f}" if match else "")
    lines.append(f"| {sg:g} | " + " | ".join(vals) + " |")
  return "\n".join(lines)
