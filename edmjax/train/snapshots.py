"""Snapshots of EMA tracks: the input of post-hoc EMA reconstruction (EDM2, Sec. 3.2).

A run with power-function EMA tracks (`edmjax.train.phema`) saves each track every
so many training images beside its checkpoints, as NVlabs/edm2 saves
`network-snapshot-<kimg>-<std>.pkl`:

  <workdir>/snapshots/ema-<nimg, 10 digits>-<std, 3 decimals>.npz

Each file holds one parameter pytree, flattened with `/`-joined keys, in float32,
plus its training time `__nimg__` and σ_rel `__std__`. Files are written atomically
(a temporary file, then a rename) and are never pruned: reconstruction wants them
all. The exact image count is in the name, so no rounding to kimg is needed.
Reconstructed averages are written in the same format (`save` with another prefix,
e.g. `phema-…`), so whatever reads a snapshot reads a reconstruction too.
"""

from __future__ import annotations

import os
import re
from typing import Any, NamedTuple

import jax
import numpy as np
from flax import traverse_util

__all__ = ["SNAPSHOT_DIR", "Snapshot", "file_name", "save", "load", "list_snapshots"]

SNAPSHOT_DIR = "snapshots"

_NAME = re.compile(r"(?P<prefix>[A-Za-z0-9_]+)-(?P<nimg>\d+)-(?P<std>\d+\.\d+)\.npz")


class Snapshot(NamedTuple):
  """A snapshot file: its path, training time (images) and σ_rel."""
  path: str
  nimg: int
  std: float


def file_name(nimg: int, std: float, prefix: str = "ema") -> str:
  """`<prefix>-<nimg:010d>-<std:.3f>.npz`."""
  return f"{prefix}-{int(nimg):010d}-{float(std):.3f}.npz"


def _host(x) -> np.ndarray:
  """A replicated (or fully addressable) array as NumPy float32, on any process."""
  if isinstance(x, jax.Array) and not x.is_fully_addressable:
    x = x.addressable_shards[0].data
  return np.asarray(jax.device_get(x), np.float32)


def save(directory: str, nimg: int, std: float, params, *, prefix: str = "ema") -> str:
  """Writes `params` (a nested-dict pytree) as a snapshot; returns its path.

  Call it on one process (process 0); the arrays may be replicated across devices.
  """
  os.makedirs(directory, exist_ok=True)
  flat = traverse_util.flatten_dict(jax.tree.map(_host, params), sep="/")
  if any(k.startswith("__") for k in flat):
    raise ValueError("parameter names starting with '__' are reserved in snapshots.")
  path = os.path.join(directory, file_name(nimg, std, prefix))
  tmp = path + ".tmp.npz"
  np.savez(tmp, __nimg__=np.int64(nimg), __std__=np.float64(std), **flat)
  os.replace(tmp, path)
  return path


def load(path: str) -> tuple[Any, int, float]:
  """(params, nimg, std) of a snapshot file; params as nested dicts of float32."""
  with np.load(path) as f:
    nimg, std = int(f["__nimg__"]), float(f["__std__"])
    flat = {k: f[k] for k in f.files if not k.startswith("__")}
  return traverse_util.unflatten_dict(flat, sep="/"), nimg, std


def list_snapshots(directory: str, *, prefix: str = "ema", stds=None) -> list[Snapshot]:
  """The snapshots in `directory`, sorted by (nimg, std); optionally only σ_rel ∈ `stds`.

  Raises:
    FileNotFoundError: naming the directory when it does not exist.
  """
  if not os.path.isdir(directory):
    raise FileNotFoundError(f"snapshot directory {directory!r} does not exist; train with "
                            "EMA tracks and a snapshot interval first.")
  wanted = None if stds is None else {round(float(s), 3) for s in stds}
  out = []
  for name in os.listdir(directory):
    m = _NAME.fullmatch(name)
    if not m or m["prefix"] != prefix:
      continue
    std = float(m["std"])
    if wanted is not None and round(std, 3) not in wanted:
      continue
    out.append(Snapshot(os.path.join(directory, name), int(m["nimg"]), std))
  return sorted(out, key=lambda s: (s.nimg, s.std))
