"""Overlapping tiles blended with a smooth window: any image size through a fixed-size net.

A tile function f (a denoiser, a network) is applied to overlapping T×T tiles of
the full-size inputs, and the tile outputs are averaged with per-pixel weights:

.. math::
  \\hat f(x)_p = \\frac{\\sum_t w_t(p)\\, f(x|_t)_p}{\\sum_t w_t(p)},\\qquad
  w_t(p) = w_t^{(H)}(p_h)\\, w_t^{(W)}(p_w),

where the 1-D window of a tile is 1 except on sides that face another tile, where
it is 0 for the first `margin` pixels and rises smoothly (sin²) to 1 over the rest
of the overlap. Sides on the image border are not tapered. Consequences:

* a pointwise f gives exactly f(x) (a weighted mean of equal values);
* a local f of receptive radius <= `margin` gives exactly the full-image f(x) (up
  to floating-point summation order): every pixel with nonzero weight sees its
  whole neighbourhood inside its tile, or the same image border;
* the blend is C¹ across tile boundaries, so there are no seams.

Used inside a sampler (`make_tiled_denoiser`), every step sees one consistent
full-size state, so stochastic and multi-step sampling stay seam-free too
(MultiDiffusion, Bar-Tal et al. 2023, blends in the same way).

Tile positions are static (computed from the static shapes); NHWC throughout; not
jitted here.
"""

from __future__ import annotations

import math
from typing import Callable

import jax.numpy as jnp
import numpy as np

from edmjax._arrays import Array
from edmjax import _checks


__all__ = ["tile_starts", "window_1d", "tile_weights", "tiled_apply", "make_tiled_denoiser"]


def _check_geometry(size: int, tile: int, overlap: int, margin: int, axis: str) -> None:
  _checks.check_int_at_least("tile", tile, 1)
  _checks.check_int_at_least("overlap", overlap, 0)
  _checks.check_int_at_least("margin", margin, 0)
  if size < tile:
    raise ValueError(f"the image {axis} is {size} pixels, smaller than the tile ({tile}); "
                     f"use a tile of at most {size} pixels or pad the image.")
  if overlap >= tile:
    raise ValueError(f"overlap={overlap} must be smaller than tile={tile}.")
  if size > tile and 2 * margin >= overlap:
    raise ValueError(f"overlap={overlap} must exceed 2·margin={2 * margin} so that "
                     "neighbouring tiles share a blending band.")


def tile_starts(size: int, tile: int, overlap: int) -> tuple[int, ...]:
  """Start offsets along one axis: stride tile − overlap, the last tile flush with the end."""
  if size <= tile:
    return (0,)
  stride = tile - overlap
  n = math.ceil((size - tile) / stride) + 1
  starts = [min(i * stride, size - tile) for i in range(n)]
  return tuple(sorted(set(starts)))


def window_1d(tile: int, overlap: int, margin: int, left: bool, right: bool) -> np.ndarray:
  """The (tile,) float64 window: 1, tapered (0 for `margin` pixels, then sin² up to 1
  over overlap − margin pixels) on the sides flagged `left` / `right`."""
  w = np.ones((tile,), np.float64)
  ramp_len = overlap - margin
  if ramp_len > 0:
    t = (np.arange(ramp_len) + 0.5) / ramp_len
    ramp = np.concatenate([np.zeros((margin,)), np.sin(0.5 * np.pi * t) ** 2])
  else:
    ramp = np.zeros((overlap,))
  if left and overlap:
    w[:overlap] = np.minimum(w[:overlap], ramp)
  if right and overlap:
    w[tile - overlap:] = np.minimum(w[tile - overlap:], ramp[::-1])
  return w


def tile_weights(height: int, width: int, tile: int, overlap: int, margin: int = 0):
  """(starts_h, starts_w, weights (n_h, n_w, tile, tile)) of the tiling of an image."""
  _check_geometry(height, tile, overlap, margin, "height")
  _check_geometry(width, tile, overlap, margin, "width")
  sh, sw = tile_starts(height, tile, overlap), tile_starts(width, tile, overlap)

  def windows(starts, size):
    return [window_1d(tile, overlap, margin, s > 0, s + tile < size) for s in starts]

  wh, ww = windows(sh, height), windows(sw, width)
  weights = np.stack([np.stack([np.outer(a, b) for b in ww]) for a in wh])
  return sh, sw, weights


def tiled_apply(fn: Callable[..., Array], x: Array, *conds: Array, tile: int,
                overlap: int, margin: int = 0, per_sample: tuple = ()) -> Array:
  """Applies `fn` to overlapping tiles of `x` (and `conds`) and blends the outputs.

  Args:
    fn: `fn(x_tiles, *cond_tiles, *per_sample) -> y_tiles`, batched over tiles:
      inputs (B·n, T, T, C), output (B·n, T, T, C_out).
    x: (B, H, W, C) NHWC; H, W >= T.
    *conds: further NHWC arrays of the same (B, H, W), cut into the same tiles.
    tile: T.
    overlap: pixels shared by neighbouring tiles (< T).
    margin: pixels at a tile's inner edge given zero weight (receptive radius of a
      local `fn` that must be reproduced exactly); needs overlap > 2·margin.
    per_sample: (B, ...) arrays repeated for every tile of their sample (e.g. σ).

  Returns:
    (B, H, W, C_out), the blended output.
  """
  _checks.check_nhwc("x", x)
  b, h, w, _ = x.shape
  for c in conds:
    _checks.check_nhwc("cond", c)
    if c.shape[:3] != x.shape[:3]:
      raise ValueError(f"a condition has shape {c.shape}; expected (B, H, W) = {x.shape[:3]}.")
  sh, sw, weights = tile_weights(h, w, tile, overlap, margin)
  pos = [(i, j) for i in range(len(sh)) for j in range(len(sw))]
  n = len(pos)
  # One gather cuts every tile and one scatter-add blends them back (a small graph
  # however many tiles there are).
  rows = np.asarray([sh[i] + np.arange(tile) for i, _ in pos])[:, :, None]  # (n, T, 1)
  cols = np.asarray([sw[j] + np.arange(tile) for _, j in pos])[:, None, :]  # (n, 1, T)
  w_tiles = np.stack([weights[i, j] for i, j in pos])  # (n, T, T)

  def cut(a):
    return a[:, rows, cols].reshape((b * n, tile, tile) + a.shape[3:])

  reps = [jnp.repeat(jnp.asarray(p), n, axis=0) for p in per_sample]
  y = fn(cut(x), *[cut(c) for c in conds], *reps)
  y = y.reshape((b, n) + y.shape[1:])
  dtype = y.dtype
  norm = np.zeros((h, w), np.float64)
  np.add.at(norm, (np.broadcast_to(rows, w_tiles.shape), np.broadcast_to(cols, w_tiles.shape)),
            w_tiles)
  if not np.all(norm > 0):  # pragma: no cover - guaranteed by the geometry checks
    raise AssertionError("tile weights do not cover the image")
  total = jnp.zeros((b, h, w, y.shape[-1]), dtype).at[:, rows, cols].add(
      y * jnp.asarray(w_tiles, dtype)[None, :, :, :, None])
  return total * jnp.asarray(1.0 / norm, dtype)[None, :, :, None]


def make_tiled_denoiser(tile_denoise: Callable[..., Array], *conds: Array, tile: int,
                        overlap: int, margin: int = 0) -> Callable[[Array, Array], Array]:
  """A full-size denoiser D(x; σ) from a tile denoiser, blended at every evaluation.

  Args:
    tile_denoise: `tile_denoise(x_tiles, sigma_tiles, *cond_tiles) -> D` on tiles
      (B·n, T, T, C) with sigma (B·n,); e.g. `lambda x, s, u:
      make_sr_denoiser(apply, u, ...)(x, s)`.
    *conds: full-size NHWC conditions (e.g. the upsampled LR image).
    tile, overlap, margin: see `tiled_apply`.

  Returns:
    `denoise(x, sigma)` for full-size NHWC x and sigma (B,), usable by any sampler.
  """

  def denoise(x, sigma):
    sigma = jnp.broadcast_to(jnp.asarray(sigma, x.dtype), x.shape[:1])
    return tiled_apply(lambda xt, *rest: tile_denoise(xt, rest[-1], *rest[:-1]),
                       x, *conds, tile=tile, overlap=overlap, margin=margin,
                       per_sample=(sigma,))

  return denoise
