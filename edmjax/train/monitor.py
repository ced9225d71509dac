"""What a run writes besides checkpoints: metrics (JSON lines), plots, sample grids.

Also the memorisation check of the samples: the Euclidean distance from each image
to its nearest training image, for samples and for held-out real images. Samples
that copy training images would sit much closer to the training set than fresh real
images do.
"""

from __future__ import annotations

import csv
import json
import os

import numpy as np
from PIL import Image

__all__ = ["MetricsWriter", "read_metrics", "truncate_metrics", "image_grid", "save_grid", "plot_losses",
           "nearest_neighbour_distances", "neighbour_report"]


class MetricsWriter:
  """Appends one JSON object per line to `path` (flushed after every line)."""

  def __init__(self, path: str):
    self.path = path
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    self._f = open(path, "a", encoding="utf-8")

  def write(self, record: dict) -> None:
    clean = {k: (v.tolist() if isinstance(v, np.ndarray) else
                 v.item() if isinstance(v, np.generic) else v) for k, v in record.items()}
    try:
      self._f.write(json.dumps(clean) + "\n")
      self._f.flush()
    except OSError as e:  # a full disk: say which file, at the step it happens
      raise OSError(e.errno, e.strerror, self.path) from None

  def close(self) -> None:
    try:
      self._f.close()
    except OSError as e:
      raise OSError(e.errno, e.strerror, self.path) from None


def read_metrics(path: str) -> list[dict]:
  """The records of a JSON-lines file (a torn last line, e.g. after a kill, is dropped)."""
  if not os.path.exists(path):
    return []
  out = []
  with open(path, encoding="utf-8") as f:
    for line in f:
      try:
        out.append(json.loads(line))
      except json.JSONDecodeError:
        pass
  return out


def truncate_metrics(path: str, step: int) -> int:
  """Keeps the records of `path` up to `step` (and drops a torn line); returns how many
  records were dropped.

  A resumed run calls it with its checkpoint's step: records written after that
  checkpoint by the run that was stopped are logged again by the resumed one, and
  the file keeps one record per step.
  """
  if not os.path.exists(path):
    return 0
  keep = [r for r in read_metrics(path) if isinstance(r.get("step"), int) and r["step"] <= step]
  with open(path, encoding="utf-8") as f:
    lines = sum(1 for line in f if line.strip())
  if lines == len(keep):
    return 0
  tmp = path + ".tmp"
  with open(tmp, "w", encoding="utf-8") as f:
    f.writelines(json.dumps(r) + "\n" for r in keep)
  os.replace(tmp, path)
  return lines - len(keep)


def image_grid(images: np.ndarray, *, cols: int | None = None, pad: int = 1) -> np.ndarray:
  """NHWC images in [-1, 1] -> one uint8 HWC grid image (grey stays 1 channel)."""
  images = np.asarray(images, np.float32)
  n, h, w, c = images.shape
  cols = cols or int(np.ceil(np.sqrt(n)))
  rows = int(np.ceil(n / cols))
  grid = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, c), 255, np.uint8)
  pix = np.clip(np.rint((images + 1) * 127.5), 0, 255).astype(np.uint8)
  for i in range(n):
    r, q = divmod(i, cols)
    grid[pad + r * (h + pad):pad + r * (h + pad) + h,
         pad + q * (w + pad):pad + q * (w + pad) + w] = pix[i]
  return grid


def save_grid(path: str, images: np.ndarray, *, cols: int | None = None,
              min_size: int = 512) -> None:
  """Writes a PNG grid of NHWC images in [-1, 1], enlarged (nearest) to >= `min_size`."""
  grid = image_grid(images, cols=cols)
  scale = max(1, int(np.ceil(min_size / max(grid.shape[:2]))))
  grid = np.repeat(np.repeat(grid, scale, axis=0), scale, axis=1)
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  Image.fromarray(grid[..., 0] if grid.shape[-1] == 1 else grid).save(path)


def plot_losses(records: list[dict], path: str) -> None:
  """Loss (and loss per σ bin when present) against kimg, as a PNG (matplotlib Agg)."""
  import matplotlib  # pylint: disable=g-import-not-at-top
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=g-import-not-at-top
  records = [r for r in records if "loss" in r and r["loss"] is not None]
  if not records:
    return
  kimg = [r["kimg"] for r in records]
  fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
  axes[0].plot(kimg, [r["loss"] for r in records], lw=1)
  axes[0].set(xlabel="kimg", ylabel="loss (mean per element)", yscale="log", title="loss")
  labels = records[-1].get("loss_bin_labels")
  if labels:
    for j, label in enumerate(labels):
      ys = [r["loss_per_sigma"][j] for r in records]
      if any(y is not None for y in ys):
        axes[1].plot(kimg, [np.nan if y is None else y for y in ys], lw=1, label=label)
    axes[1].set(xlabel="kimg", yscale="log", title="loss per σ bin")
    axes[1].legend(fontsize=7)
  fig.tight_layout()
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  fig.savefig(path, dpi=100)
  plt.close(fig)


def write_loss_csv(records: list[dict], path: str) -> None:
  """The logged loss and loss per σ bin against step and kimg, one row per log record."""
  records = [r for r in records if r.get("loss") is not None]
  if not records:
    return
  labels = records[-1].get("loss_bin_labels") or []
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  with open(path, "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["step", "kimg", "loss"] + [f"loss {l}" for l in labels])
    for r in records:
      per = r.get("loss_per_sigma") or [None] * len(labels)
      w.writerow([r.get("step"), r.get("kimg"), r["loss"]]
                 + ["" if v is None else v for v in per])


def nearest_neighbour_distances(queries: np.ndarray, references: np.ndarray,
                                chunk: int = 1024) -> np.ndarray:
  """For each query image, the Euclidean distance to its nearest reference image.

  Args:
    queries: (n, ...) images; references: (m, ...) images of the same shape.

  Returns:
    (n,) float64 distances.
  """
  q = np.asarray(queries, np.float64).reshape(len(queries), -1)
  r = np.asarray(references, np.float64).reshape(len(references), -1)
  r2 = np.einsum("md,md->m", r, r)
  out = []
  for s in range(0, len(q), chunk):
    qc = q[s:s + chunk]
    d2 = np.einsum("nd,nd->n", qc, qc)[:, None] + r2[None, :] - 2 * qc @ r.T
    out.append(np.sqrt(np.maximum(d2.min(axis=1), 0)))
  return np.concatenate(out) if out else np.zeros((0,))


def neighbour_report(samples: np.ndarray, heldout: np.ndarray, train: np.ndarray) -> dict:
  """Nearest-training-neighbour distances of samples vs held-out real images.

  Returns:
    A dict with the median / mean / 5th percentile of each and their ratio
    (`median_ratio` = samples / held-out; near 1: samples are as novel as new real
    images; near 0: samples copy the training set).
  """
  ds = nearest_neighbour_distances(samples, train)
  dh = nearest_neighbour_distances(heldout, train)
  rep = dict(num_samples=int(len(ds)), num_heldout=int(len(dh)))
  for name, d in (("samples", ds), ("heldout", dh)):
    rep[f"{name}_median"] = float(np.median(d))
    rep[f"{name}_mean"] = float(np.mean(d))
    rep[f"{name}_p05"] = float(np.percentile(d, 5))
  rep["median_ratio"] = rep["samples_median"] / max(rep["heldout_median"], 1e-12)
  return rep
