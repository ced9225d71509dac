"""CSV and PNG writers for `edmjax.eval.diagnostics` (matplotlib, Agg backend).

Every `write_*_csv` writes one row per σ / timestep / step / image with a header; every
`plot_*` writes one PNG. Paths' parent folders are created. Matplotlib is imported
lazily, so `edmjax.eval` does not need it unless a plot is written.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from edmjax.eval.diagnostics import (EpsStats, MemorisationReport, PixelHistograms,
                                     SigmaLossProfile)

__all__ = ["write_csv", "write_rows_csv", "write_sigma_loss_csv", "plot_sigma_loss",
           "write_eps_stats_csv", "plot_eps_stats", "write_histograms_csv",
           "plot_pixel_histograms", "write_memorisation_csv", "plot_memorisation",
           "plot_curves", "plot_schedule_curves"]


def _parent(path: str) -> None:
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)


def _pyplot():
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  return plt


def _save(fig, path: str) -> None:
  _parent(path)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  _pyplot().close(fig)


def _fmt(v: Any) -> Any:
  if isinstance(v, (float, np.floating)):
    return f"{float(v):.8g}"
  if isinstance(v, np.integer):
    return int(v)
  return v


def write_csv(path: str, columns: Mapping[str, Any]) -> None:
  """Writes equal-length 1-D columns as a CSV with a header row."""
  names = list(columns)
  values = [np.asarray(columns[k]).reshape(-1) for k in names]
  lengths = {len(v) for v in values}
  if len(lengths) > 1:
    raise ValueError(f"columns have different lengths: "
                     f"{ {k: len(v) for k, v in zip(names, values)} }.")
  _parent(path)
  with open(path, "w", newline="", encoding="utf-8") as f:
    w = csv.writer(f)
    w.writerow(names)
    for row in zip(*values):
      w.writerow([_fmt(v.item() if hasattr(v, "item") else v) for v in row])


def write_rows_csv(path: str, rows: Sequence[Mapping[str, Any]]) -> None:
  """Writes a list of dicts as a CSV (columns: the union of keys, in first-seen order)."""
  names: list[str] = []
  for r in rows:
    names.extend(k for k in r if k not in names)
  _parent(path)
  with open(path, "w", newline="", encoding="utf-8") as f:
    w = csv.writer(f)
    w.writerow(names)
    for r in rows:
      w.writerow([_fmt(r.get(k, "")) for k in names])


# -------------------------------------------------------------------- loss per σ


def write_sigma_loss_csv(path: str, profile: SigmaLossProfile) -> None:
  """One row per σ: every field of the profile, plus the λ-weighted loss and floor."""
  cols = {k: np.asarray(v) for k, v in profile._asdict().items()}
  cols["weighted_loss"] = cols["loss"] * cols["weight"]
  cols["weighted_bound"] = cols["bound"] * cols["weight"]
  write_csv(path, cols)


def plot_sigma_loss(path: str, profiles: SigmaLossProfile | Mapping[str, SigmaLossProfile],
                    *, title: str = "loss per σ (Karras et al. 2022, Fig. 5a)") -> None:
  """Two panels: loss and floor L*(σ) (log-log), and the excess loss with ±2 s.e."""
  if isinstance(profiles, SigmaLossProfile):
    profiles = {"model": profiles}
  plt = _pyplot()
  fig, axes = plt.subplots(1, 2, figsize=(11, 4))
  for j, (name, p) in enumerate(profiles.items()):
    s = np.asarray(p.sigma)
    line, = axes[0].plot(s, np.asarray(p.loss) * np.asarray(p.weight), "o-", ms=3,
                         label=f"{name}: λ(σ)·L(σ)")
    floor = np.asarray(p.bound) * np.asarray(p.weight)
    axes[0].plot(s, np.where(floor > 0, floor, np.nan), "--", lw=1.2,
                 color=line.get_color(),
                 label="λ(σ)·L*(σ), ideal denoiser of the training set" if j == 0 else None)
    ex, se = np.asarray(p.excess) * np.asarray(p.weight), \
        np.asarray(p.excess_stderr) * np.asarray(p.weight)
    axes[1].plot(s, ex, "o-", ms=3, color=line.get_color(), label=name)
    axes[1].fill_between(s, ex - 2 * se, ex + 2 * se, color=line.get_color(), alpha=0.2)
  axes[0].set(xscale="log", yscale="log", xlabel="σ", ylabel="weighted loss per element",
              title=title)
  axes[1].axhline(0.0, color="k", lw=0.8)
  axes[1].set(xscale="log", xlabel="σ",
              ylabel="λ(σ)·(L(σ) − L*(σ))", title="excess over the finite-data floor")
  axes[0].legend(fontsize=7)
  axes[1].legend(fontsize=7)
  _save(fig, path)


# --------------------------------------------------------------------- DDPM ε


def write_eps_stats_csv(path: str, stats: EpsStats) -> None:
  """One row per timestep: t, σ_t, mean/std of predicted ε, loss and floor."""
  write_csv(path, {k: np.asarray(v) for k, v in stats._asdict().items()})


def plot_eps_stats(path: str, stats: EpsStats, *, title: str = "DDPM ε-model per timestep"
                   ) -> None:
  """Three panels against t: mean of ε_θ (±2 s.e.), its std, and the ε loss with floor."""
  plt = _pyplot()
  t = np.asarray(stats.t)
  fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
  m, se = np.asarray(stats.eps_mean), np.asarray(stats.eps_mean_stderr)
  axes[0].plot(t, m, "o-", ms=3)
  axes[0].fill_between(t, m - 2 * se, m + 2 * se, alpha=0.25)
  axes[0].axhline(0.0, color="k", lw=0.8)
  axes[0].set(xlabel="t", ylabel="mean ε_θ(x_t, t)", title="mean predicted ε (ideal: 0)")
  axes[1].plot(t, np.asarray(stats.eps_std), "o-", ms=3)
  axes[1].axhline(1.0, color="k", lw=0.8)
  axes[1].set(xlabel="t", ylabel="std ε_θ(x_t, t)", title="spread of predicted ε")
  axes[2].plot(t, np.asarray(stats.loss), "o-", ms=3, label="model")
  if np.all(np.isfinite(np.asarray(stats.bound))):
    axes[2].plot(t, np.asarray(stats.bound), "k--", lw=1.2, label="ideal ε-model")
  axes[2].set(xlabel="t", ylabel="E(ε_θ − ε)²", yscale="log", title="ε loss per timestep")
  axes[2].legend(fontsize=7)
  fig.suptitle(title, fontsize=10)
  _save(fig, path)


# ------------------------------------------------------------ pixel histograms


def write_histograms_csv(path: str, hist: PixelHistograms,
                         step_values: Sequence[float] | None = None) -> None:
  """One row per trajectory step: σ (or step index), summary numbers and bin counts."""
  counts = np.asarray(hist.counts)
  steps = np.arange(counts.shape[0]) if step_values is None else np.asarray(step_values)
  edges = np.asarray(hist.edges)
  cols: dict[str, Any] = {"step": np.arange(counts.shape[0]), "level": steps,
                          "mean": np.asarray(hist.mean), "std": np.asarray(hist.std),
                          "frac_below": np.asarray(hist.frac_below),
                          "frac_above": np.asarray(hist.frac_above),
                          "num_nonfinite": np.asarray(hist.num_nonfinite)}
  for j in range(counts.shape[1]):
    cols[f"bin[{edges[j]:.3g},{edges[j + 1]:.3g})"] = counts[:, j]
  write_csv(path, cols)


def plot_pixel_histograms(path: str, hist: PixelHistograms,
                          step_values: Sequence[float] | None = None, *,
                          level_name: str = "σ", title: str = "pixel values along sampling"
                          ) -> None:
  """A heat map of the histograms (rows: steps) and the mean / saturation per step."""
  plt = _pyplot()
  counts = np.asarray(hist.counts, np.float64)
  share = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
  edges = np.asarray(hist.edges)
  n = counts.shape[0]
  fig, axes = plt.subplots(1, 2, figsize=(12, 4))
  im = axes[0].imshow(np.log10(share + 1e-5), aspect="auto", origin="upper",
                      extent=(edges[0], edges[-1], n - 0.5, -0.5), cmap="viridis")
  fig.colorbar(im, ax=axes[0], label="log10 share of pixels")
  axes[0].set(xlabel="pixel value", ylabel="step (0 = start)", title=title)
  x = np.arange(n) if step_values is None else np.asarray(step_values)
  axes[1].plot(np.arange(n), np.asarray(hist.mean), "o-", ms=3, label="mean")
  axes[1].plot(np.arange(n), np.asarray(hist.std), "s-", ms=3, label="std")
  axes[1].plot(np.arange(n), np.asarray(hist.frac_below), "v-", ms=3, label="share < lo")
  axes[1].plot(np.arange(n), np.asarray(hist.frac_above), "^-", ms=3, label="share > hi")
  axes[1].set(xlabel="step", title=f"per step ({level_name} from "
              f"{float(x[0]):.3g} to {float(x[-1]):.3g})")
  axes[1].legend(fontsize=7)
  _save(fig, path)


# ---------------------------------------------------------------- memorisation


def write_memorisation_csv(path: str, report: MemorisationReport) -> None:
  """One row per image: kind ('sample' / 'heldout'), its NN distance and NN index."""
  ds, dh = np.asarray(report.sample_distances), np.asarray(report.heldout_distances)
  write_csv(path, {
      "kind": np.array(["sample"] * len(ds) + ["heldout"] * len(dh)),
      "nn_distance": np.concatenate([ds, dh]),
      "nn_index": np.concatenate([np.asarray(report.sample_index), np.full(len(dh), -1)]),
  })


def plot_memorisation(path: str, report: MemorisationReport, *,
                      title: str = "nearest-training-neighbour distance") -> None:
  """Overlaid histograms of the NN distances of samples and of held-out real images."""
  plt = _pyplot()
  ds, dh = np.asarray(report.sample_distances), np.asarray(report.heldout_distances)
  hi = max(float(np.max(ds, initial=0.0)), float(np.max(dh, initial=0.0)), 1e-6)
  bins = np.linspace(0.0, hi * 1.02, 40)
  fig, ax = plt.subplots(figsize=(6.5, 4))
  ax.hist(dh, bins=bins, alpha=0.55, density=True, label=f"held-out real ({len(dh)})")
  ax.hist(ds, bins=bins, alpha=0.55, density=True, label=f"generated ({len(ds)})")
  ax.set(xlabel="L2 distance to nearest training image", ylabel="density", title=title)
  ax.legend(fontsize=8)
  _save(fig, path)


# ------------------------------------------------------------------- generic


def plot_curves(path: str, curves: Mapping[str, tuple[Sequence[float], Sequence[float]]], *,
                xlabel: str, ylabel: str, title: str = "", logx: bool = False,
                logy: bool = False, hlines: Mapping[str, float] | None = None) -> None:
  """Line plot of named (x, y) curves, with optional labelled horizontal lines."""
  plt = _pyplot()
  fig, ax = plt.subplots(figsize=(7, 4.2))
  for name, (x, y) in curves.items():
    ax.plot(np.asarray(x, np.float64), np.asarray(y, np.float64), "o-", ms=4, label=name)
  for name, v in (hlines or {}).items():
    ax.axhline(v, color="k", ls=":", lw=1, label=name)
  ax.set(xlabel=xlabel, ylabel=ylabel, title=title, xscale="log" if logx else "linear",
         yscale="log" if logy else "linear")
  ax.legend(fontsize=7)
  _save(fig, path)


def plot_schedule_curves(path: str, sigma: Any, curves: Mapping[str, Mapping[str, Any]], *,
                         title: str = "") -> None:
  """One panel per curve family (e.g. c_skip, c_out, c_in), several named lines each."""
  plt = _pyplot()
  fig, axes = plt.subplots(1, len(curves), figsize=(4.2 * len(curves), 3.6))
  axes = np.atleast_1d(axes)
  s = np.asarray(sigma, np.float64)
  for ax, (panel, lines) in zip(axes, curves.items()):
    for name, y in lines.items():
      ax.plot(s, np.asarray(y, np.float64), label=name)
    ax.set(xscale="log", xlabel="σ", title=panel)
    ax.legend(fontsize=7)
  if title:
    fig.suptitle(title, fontsize=10)
  _save(fig, path)
