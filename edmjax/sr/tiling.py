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

Memory: tiles go through the tile function in batches (`tile_batch`, chosen from a
memory budget by `tile_batch_for_budget` and `measure_tile_bytes`) inside a
`lax.scan` that adds each batch's weighted outputs to the blended image as they are
computed. The tiles' memory is that of one batch, whatever the image size; the
weights are two 1-D tables per axis, never an (H, W) or per-tile 2-D table. A
`progress` callback reports each batch.

Tile positions are static (computed from the static shapes); NHWC throughout; not
jitted here.
"""

from __future__ import annotations

import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from edmjax._arrays import Array
from edmjax import _checks


__all__ = ["tile_starts", "window_1d", "tile_weights", "tiled_apply", "make_tiled_denoiser",
           "TilePlan", "plan_tiles", "tile_batch_for_budget", "measure_tile_bytes"]


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
  """Start offsets along one axis: stride tile − overlap, the last tile flush with the end.

  Raises:
    ValueError: tile < 1, overlap < 0 or overlap >= tile (naming the values).
  """
  _checks.check_int_at_least("tile", tile, 1)
  _checks.check_int_at_least("overlap", overlap, 0)
  if overlap >= tile:
    raise ValueError(f"overlap={overlap} must be smaller than tile={tile}.")
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


class TilePlan(NamedTuple):
  """How `tiled_apply` cuts an image: tile positions and the batches they run in.

  Attributes:
    starts_h, starts_w: tile offsets along each axis (`tile_starts`).
    tiles: tiles per image, len(starts_h) · len(starts_w).
    positions_per_call: tile positions per call of the tile function (each call
      runs them for every image of the batch: batch · positions_per_call tiles).
    calls: calls of the tile function per evaluation, ceil(tiles / positions_per_call);
      the last call is padded with zero-weight repeats of the first tile.
  """
  starts_h: tuple[int, ...]
  starts_w: tuple[int, ...]
  tiles: int
  positions_per_call: int
  calls: int


def plan_tiles(height: int, width: int, tile: int, overlap: int, margin: int = 0, *,
               batch: int = 1, tile_batch: int | None = None) -> TilePlan:
  """The `TilePlan` of an image: positions, and `tile_batch` tiles per call (None: all).

  `tile_batch` counts tiles of the whole batch per call of the tile function, so a
  call holds max(1, tile_batch // batch) positions of each of the `batch` images.
  Checks the geometry (as `tile_weights`) before anything is computed.
  """
  _check_geometry(height, tile, overlap, margin, "height")
  _check_geometry(width, tile, overlap, margin, "width")
  _checks.check_int_at_least("batch", batch, 1)
  if tile_batch is not None:
    _checks.check_int_at_least("tile_batch", tile_batch, 1)
  sh, sw = tile_starts(height, tile, overlap), tile_starts(width, tile, overlap)
  n = len(sh) * len(sw)
  k = n if tile_batch is None else max(1, min(n, tile_batch // batch))
  return TilePlan(starts_h=sh, starts_w=sw, tiles=n, positions_per_call=k,
                  calls=-(-n // k))


def tile_batch_for_budget(bytes_per_tile: float, budget_bytes: float, *,
                          fixed_bytes: float = 0.0, tiles: int | None = None) -> int:
  """The largest tile batch whose working memory fits `budget_bytes` (at least 1).

  Memory of one call is modelled as `fixed_bytes + tile_batch · bytes_per_tile`
  (`measure_tile_bytes` gives both for a tile function); the result is capped at
  `tiles` when given (no point batching more than there are).
  """
  _checks.check_positive("bytes_per_tile", bytes_per_tile)
  _checks.check_positive("budget_bytes", budget_bytes)
  k = int((budget_bytes - fixed_bytes) // bytes_per_tile)
  k = max(1, k)
  return min(k, tiles) if tiles is not None else k


def measure_tile_bytes(fn: Callable[..., Array], *example_args, constants: tuple = (),
                       probe: tuple[int, int] = (1, 4)):
  """(bytes_per_tile, fixed_bytes) of `fn` on tile batches, from XLA's memory analysis.

  `fn(*constants, *tiles)`: `example_args` are arrays or `jax.ShapeDtypeStruct`s of
  ONE tile each (leading axis 1: e.g. (1, T, T, C) tiles, (1,) σ); `constants`
  (e.g. the network's variables, as arrays or `jax.eval_shape` structures) are passed
  whole. `fn` is compiled (not run) for tile batches of the `probe` sizes, and the
  argument + output + temporary bytes are fitted as fixed + k · per_tile: what XLA
  will allocate for one call on this backend, the network's activations included.
  """

  def total(k):
    shapes = [jax.ShapeDtypeStruct((k,) + tuple(a.shape[1:]), a.dtype) for a in example_args]
    consts = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype), constants)
    m = jax.jit(fn).lower(*consts, *shapes).compile().memory_analysis()
    if m is None:  # pragma: no cover - backends without memory analysis
      raise RuntimeError("this backend gives no memory analysis; pass a tile batch.")
    return (m.temp_size_in_bytes + m.argument_size_in_bytes + m.output_size_in_bytes)

  k0, k1 = probe
  b0, b1 = total(k0), total(k1)
  per = (b1 - b0) / (k1 - k0)
  if per <= 0:
    per, fixed = b1 / k1, 0.0
  else:
    fixed = max(0.0, b0 - per * k0)
  return float(per), float(fixed)


def _normalized_windows(starts, size, tile, overlap, margin):
  """(n, tile) windows along one axis, divided by their sum over tiles at each pixel.

  The 2-D weights are separable (w_t = w^(H) ⊗ w^(W)) and the tiles form a grid, so
  Σ_t w_t(p) = (Σ_i w_i^(H)(p_h)) (Σ_j w_j^(W)(p_w)): normalizing each axis makes the
  products of the tiles sum to 1 at every pixel, with no (H, W) table of sums.
  """
  wins = np.stack([window_1d(tile, overlap, margin, s > 0, s + tile < size) for s in starts])
  norm = np.zeros((size,), np.float64)
  for s, w in zip(starts, wins):
    norm[s:s + tile] += w
  if not np.all(norm > 0):  # pragma: no cover - guaranteed by the geometry checks
    raise AssertionError("tile weights do not cover the image")
  return np.stack([w / norm[s:s + tile] for s, w in zip(starts, wins)])


def tiled_apply(fn: Callable[..., Array], x: Array, *conds: Array, tile: int,
                overlap: int, margin: int = 0, per_sample: tuple = (),
                tile_batch: int | None = None,
                progress: Callable[[Any], None] | None = None) -> Array:
  """Applies `fn` to overlapping tiles of `x` (and `conds`) and blends the outputs.

  Tiles go through `fn` in calls of `tile_batch` tiles (`plan_tiles`), in a
  `lax.scan` whose carry is the blended output: each call's tiles are weighted and
  added as soon as they are computed, so the memory of the tiles is that of one
  call, however large the image (the full-size input, conditions and output are
  still held). `tile_batch=None` runs every tile in one call.

  Args:
    fn: `fn(x_tiles, *cond_tiles, *per_sample) -> y_tiles`, batched over tiles:
      inputs (B·k, T, T, C), output (B·k, T, T, C_out), sample-major (tile b·k + t
      is position t of image b).
    x: (B, H, W, C) NHWC; H, W >= T.
    *conds: further NHWC arrays of the same (B, H, W), cut into the same tiles.
    tile: T.
    overlap: pixels shared by neighbouring tiles (< T).
    margin: pixels at a tile's inner edge given zero weight (receptive radius of a
      local `fn` that must be reproduced exactly); needs overlap > 2·margin.
    per_sample: (B, ...) arrays repeated for every tile of their sample (e.g. σ).
    tile_batch: tiles per call of `fn` (None: all); e.g. from `tile_batch_for_budget`.
    progress: called on the host (`jax.debug.callback`) after each call of `fn` with
      the call's index, e.g. to advance a progress bar.

  Returns:
    (B, H, W, C_out), the blended output.
  """
  _checks.check_nhwc("x", x)
  b, h, w, _ = x.shape
  for c in conds:
    _checks.check_nhwc("cond", c)
    if c.shape[:3] != x.shape[:3]:
      raise ValueError(f"a condition has shape {c.shape}; expected (B, H, W) = {x.shape[:3]}.")
  plan = plan_tiles(h, w, tile, overlap, margin, batch=b, tile_batch=tile_batch)
  wh = _normalized_windows(plan.starts_h, h, tile, overlap, margin)
  ww = _normalized_windows(plan.starts_w, w, tile, overlap, margin)
  k, calls = plan.positions_per_call, plan.calls
  ii, jj = np.meshgrid(np.arange(len(plan.starts_h)), np.arange(len(plan.starts_w)),
                       indexing="ij")
  ii, jj = ii.ravel(), jj.ravel()
  pad = calls * k - plan.tiles
  valid = np.concatenate([np.ones(plan.tiles), np.zeros(pad)])  # padded tiles weigh 0
  ii, jj = np.concatenate([ii, np.zeros(pad, ii.dtype)]), np.concatenate(
      [jj, np.zeros(pad, jj.dtype)])

  def per_call(a):
    return jnp.asarray(a).reshape((calls, k) + np.shape(a)[1:])

  xs = dict(r0=per_call(np.asarray(plan.starts_h)[ii].astype(np.int32)),
            c0=per_call(np.asarray(plan.starts_w)[jj].astype(np.int32)),
            wh=per_call((wh[ii] * valid[:, None]).astype(np.float32)),
            ww=per_call(ww[jj].astype(np.float32)),
            index=jnp.arange(calls, dtype=jnp.int32))
  offsets = jnp.arange(tile, dtype=jnp.int32)
  reps = [jnp.repeat(jnp.asarray(p), k, axis=0) for p in per_sample]

  def body(total, chunk):
    rows = (chunk["r0"][:, None] + offsets[None, :])[:, :, None]  # (k, T, 1)
    cols = (chunk["c0"][:, None] + offsets[None, :])[:, None, :]  # (k, 1, T)

    def cut(a):
      return a[:, rows, cols].reshape((b * k, tile, tile) + a.shape[3:])

    y = fn(cut(x), *[cut(c) for c in conds], *reps)
    y = y.reshape((b, k) + y.shape[1:])
    weight = (chunk["wh"][:, :, None] * chunk["ww"][:, None, :]).astype(y.dtype)
    total = total.at[:, rows, cols].add(y * weight[None, :, :, :, None])
    if progress is not None:
      jax.debug.callback(progress, chunk["index"])
    return total, None

  out_shape = jax.eval_shape(
      lambda: fn(jnp.zeros((b * k, tile, tile) + x.shape[3:], x.dtype),
                 *[jnp.zeros((b * k, tile, tile) + c.shape[3:], c.dtype) for c in conds],
                 *reps))
  total = jnp.zeros((b, h, w, out_shape.shape[-1]), out_shape.dtype)
  total, _ = jax.lax.scan(body, total, xs)
  return total


def make_tiled_denoiser(tile_denoise: Callable[..., Array], *conds: Array, tile: int,
                        overlap: int, margin: int = 0, tile_batch: int | None = None,
                        progress: Callable[[Any], None] | None = None
                        ) -> Callable[[Array, Array], Array]:
  """A full-size denoiser D(x; σ) from a tile denoiser, blended at every evaluation.

  Args:
    tile_denoise: `tile_denoise(x_tiles, sigma_tiles, *cond_tiles) -> D` on tiles
      (B·n, T, T, C) with sigma (B·n,); e.g. `lambda x, s, u:
      make_sr_denoiser(apply, u, ...)(x, s)`.
    *conds: full-size NHWC conditions (e.g. the upsampled LR image).
    tile, overlap, margin, tile_batch, progress: see `tiled_apply`.

  Returns:
    `denoise(x, sigma)` for full-size NHWC x and sigma (B,), usable by any sampler.
  """

  def denoise(x, sigma):
    sigma = jnp.broadcast_to(jnp.asarray(sigma, x.dtype), x.shape[:1])
    return tiled_apply(lambda xt, *rest: tile_denoise(xt, rest[-1], *rest[:-1]),
                       x, *conds, tile=tile, overlap=overlap, margin=margin,
                       per_sample=(sigma,), tile_batch=tile_batch, progress=progress)

  return denoise
