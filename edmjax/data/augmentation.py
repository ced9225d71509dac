"""Non-leaky geometric and colour augmentation (NVlabs/edm ``training/augment.py``).

EDM (Karras et al. 2022, App. F.2) augments training images with the pipeline of
StyleGAN2-ADA (Karras et al. 2020) and conditions the network on a vector of
*augment labels* describing what was applied, so that sampling with zero labels
produces un-augmented images (the augmentations do not "leak"). This module is
a pure-JAX version of that pipeline for NHWC images:

* pixel blitting: ``xflip``, ``yflip``, ``rotate_int`` (multiples of 90°),
  ``translate_int`` (integer shifts with reflection);
* general geometric transformations: ``scale``, ``rotate_frac``, ``aniso``,
  ``translate_frac``, composed into one 3x3 matrix and executed once: reflect
  padding, 2x upsampling with the symlet-6 wavelet low-pass filter, bilinear
  resampling, filtered 2x downsampling;
* colour transformations: ``brightness``, ``contrast``, ``lumaflip``, ``hue``,
  ``saturation``, composed into one 4x4 matrix (on grey images, its mean row).

Each transformation is applied to a sample with probability ``p * <its
multiplier>`` and draws its strength from the distributions of NVlabs/edm. The
augment labels have NVlabs' layout (columns in this order, each group present
only when its multiplier is > 0):

====================  =====  ================================================
transformation        cols   label
====================  =====  ================================================
xflip                 1      1 if flipped
yflip                 1      1 if flipped
rotate_int            2      [k in {1, 2}, k in {2, 3}] for a k * 90° rotation
translate_int         2      [tx / (W * max), ty / (H * max)]
scale                 1      log2(s) / scale_std
rotate_frac           2      [cos θ - 1, sin θ]
aniso                 2      [w cos r, w sin r]
translate_frac        2      [tx / (W * std), ty / (H * std)]
brightness            1      b / brightness_std
contrast              1      log2(c) / contrast_std
lumaflip              1      1 if flipped
hue                   2      [cos θ - 1, sin θ]
saturation            1      log2(s) / saturation_std
====================  =====  ================================================

EDM's CIFAR-10 setting (``edm_augment_config()``) enables xflip, yflip, scale,
rotate_frac, aniso and translate_frac: 9 label columns (``augment_dim = 9``).

Randomness: ``key`` is one key for the batch or one key per sample (then a
sample's transformation depends on its own key only, not on the batch).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np

from edmjax import _checks

__all__ = ["AugmentConfig", "augment", "edm_augment_config"]

# Symlet-6 ("sym6") orthonormal wavelet decomposition low-pass filter: the
# anti-aliasing filter of the 2x up- and downsampling around the resampling.
SYM6 = np.array([
    0.015404109327027373, 0.0034907120842174702, -0.11799011114819057,
    -0.048311742585633, 0.4910559419267466, 0.787641141030194,
    0.3379294217276218, -0.07263752278646252, -0.021060292512300564,
    0.04472490177066578, 0.0017677118642428036, -0.007800708325034148,
])
_FILTER_PAD = len(SYM6) // 4  # extra border (pixels) kept around the output.

_PROBABILITIES = ("xflip", "yflip", "rotate_int", "translate_int", "scale",
                  "rotate_frac", "aniso", "translate_frac", "brightness",
                  "contrast", "lumaflip", "hue", "saturation")
_LABEL_COLUMNS = dict(xflip=1, yflip=1, rotate_int=2, translate_int=2, scale=1,
                      rotate_frac=2, aniso=2, translate_frac=2, brightness=1,
                      contrast=1, lumaflip=1, hue=2, saturation=1)
_GEOMETRIC = ("scale", "rotate_frac", "aniso", "translate_frac")
_COLOUR = ("brightness", "contrast", "lumaflip", "hue", "saturation")


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
  """Probabilities and strengths of the augmentations (NVlabs/edm's defaults).

  Every transformation is off by default (multiplier 0). A transformation with
  multiplier ``m > 0`` is applied to each sample with probability ``p * m``
  (clipped to 1) and contributes its columns to the augment labels even when
  ``p`` is 0. Frozen and hashable: pass it as a static argument of ``jax.jit``.

  Attributes:
    p: overall probability multiplier.
    xflip, yflip: multipliers of horizontal / vertical flips.
    rotate_int: multiplier of rotations by a multiple of 90° (square images).
    translate_int: multiplier of integer translations.
    translate_int_max: range of integer translation, relative to the image size.
    scale, rotate_frac, aniso, translate_frac: multipliers of isotropic scaling,
      arbitrary rotation, anisotropic scaling and fractional translation.
    scale_std: log2 standard deviation of isotropic scaling.
    rotate_frac_max: range of rotation, 1 = full circle.
    aniso_std: log2 standard deviation of anisotropic scaling.
    aniso_rotate_prob: probability of anisotropic scaling along a rotated frame.
    translate_frac_std: standard deviation of translation, relative to size.
    brightness, contrast, lumaflip, hue, saturation: colour multipliers.
    brightness_std: standard deviation of the brightness offset.
    contrast_std: log2 standard deviation of contrast.
    hue_max: range of hue rotation, 1 = full circle.
    saturation_std: log2 standard deviation of saturation.
  """

  p: float = 1.0
  xflip: float = 0.0
  yflip: float = 0.0
  rotate_int: float = 0.0
  translate_int: float = 0.0
  translate_int_max: float = 0.125
  scale: float = 0.0
  rotate_frac: float = 0.0
  aniso: float = 0.0
  translate_frac: float = 0.0
  scale_std: float = 0.2
  rotate_frac_max: float = 1.0
  aniso_std: float = 0.2
  aniso_rotate_prob: float = 0.5
  translate_frac_std: float = 0.125
  brightness: float = 0.0
  contrast: float = 0.0
  lumaflip: float = 0.0
  hue: float = 0.0
  saturation: float = 0.0
  brightness_std: float = 0.2
  contrast_std: float = 0.5
  hue_max: float = 1.0
  saturation_std: float = 1.0

  def __post_init__(self):
    for f in dataclasses.fields(self):
      value = getattr(self, f.name)
      if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(
            f"AugmentConfig.{f.name} must be a Python number, got {value!r}.")
      if not math.isfinite(value) or value < 0:
        raise ValueError(
            f"AugmentConfig.{f.name}={value!r} must be finite and >= 0.")

  @property
  def augment_dim(self) -> int:
    """Number of augment-label columns (the network's ``augment_dim``)."""
    return sum(n for name, n in _LABEL_COLUMNS.items()
               if getattr(self, name) > 0)

  @property
  def is_geometric(self) -> bool:
    """Whether the general (resampling) geometric stage runs."""
    return any(getattr(self, name) > 0 for name in _GEOMETRIC)

  @property
  def is_colour(self) -> bool:
    """Whether the colour-matrix stage runs."""
    return any(getattr(self, name) > 0 for name in _COLOUR)


def edm_augment_config(p: float = 0.12) -> AugmentConfig:
  """EDM's augmentation (NVlabs/edm ``train.py --augment``, 0.12 for CIFAR-10).

  xflip is given multiplier 1e8 so its gate always opens (a flip still happens
  with probability 1/2); yflip, scale, rotate_frac, aniso and translate_frac
  have multiplier 1. ``augment_dim`` is 9.

  Args:
    p: augment probability.

  Returns:
    The :class:`AugmentConfig`.
  """
  return AugmentConfig(p=float(p), xflip=1e8, yflip=1.0, scale=1.0,
                       rotate_frac=1.0, aniso=1.0, translate_frac=1.0)


# ------------------------------------------------------------------------------
# Homogeneous matrices of one sample (scalars in, small matrices out).


def _mat(rows) -> jax.Array:
  return jnp.stack([jnp.stack([jnp.asarray(v, jnp.float32) for v in r])
                    for r in rows])


def _translate2d(tx, ty) -> jax.Array:
  return _mat([[1, 0, tx], [0, 1, ty], [0, 0, 1]])


def _scale2d(sx, sy) -> jax.Array:
  return _mat([[sx, 0, 0], [0, sy, 0], [0, 0, 1]])


def _rotate2d(theta) -> jax.Array:
  c, s = jnp.cos(theta), jnp.sin(theta)
  return _mat([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def _translate3d(t) -> jax.Array:
  return _mat([[1, 0, 0, t], [0, 1, 0, t], [0, 0, 1, t], [0, 0, 0, 1]])


def _scale3d(s) -> jax.Array:
  return _mat([[s, 0, 0, 0], [0, s, 0, 0], [0, 0, s, 0], [0, 0, 0, 1]])


def _rotate3d(axis: np.ndarray, theta) -> jax.Array:
  """Rotation by `theta` about the unit `axis` (Rodrigues), homogeneous 4x4."""
  x, y, z = (float(a) for a in axis[:3])
  c, s = jnp.cos(theta), jnp.sin(theta)
  d = 1 - c
  return _mat([
      [x * x * d + c, x * y * d - z * s, x * z * d + y * s, 0],
      [y * x * d + z * s, y * y * d + c, y * z * d - x * s, 0],
      [z * x * d - y * s, z * y * d + x * s, z * z * d + c, 0],
      [0, 0, 0, 1],
  ])


_LUMA_AXIS = np.array([1.0, 1.0, 1.0, 0.0]) / np.sqrt(3.0)
_LUMA_OUTER = np.outer(_LUMA_AXIS, _LUMA_AXIS).astype(np.float32)


# ------------------------------------------------------------------------------
# Drawing one sample's transformation.


# (uniforms, normals) each transformation draws per sample; each owns fixed
# slots of one uniform and one normal vector, so enabling one transformation
# never changes the draws of another (and only two RNG calls are compiled).
_DRAWS = dict(xflip=(2, 0), yflip=(2, 0), rotate_int=(2, 0),
              translate_int=(3, 0), scale=(1, 1), rotate_frac=(2, 0),
              aniso=(3, 1), translate_frac=(1, 2), brightness=(1, 1),
              contrast=(1, 1), lumaflip=(2, 0), hue=(2, 0), saturation=(1, 1))
_SLOTS = {}
_NUM_U = _NUM_N = 0
for _name, (_nu, _nn) in _DRAWS.items():
  _SLOTS[_name] = (_NUM_U, _NUM_N)
  _NUM_U, _NUM_N = _NUM_U + _nu, _NUM_N + _nn
del _name, _nu, _nn


def _uniforms(key: jax.Array, n: int) -> jax.Array:
  """(n, _NUM_U + _NUM_N) uniforms on [0, 1): one row per sample.

  One key: a single RNG call for the batch (threefry is slow to compile on
  CPU, so there is exactly one). One key per sample: row i from key i.
  """
  shape = (_NUM_U + _NUM_N,)
  typed = jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
  if key.shape == (() if typed else (2,)):
    return jax.random.uniform(key, (n,) + shape, jnp.float32)
  return jax.vmap(lambda k: jax.random.uniform(k, shape, jnp.float32))(key)


def _draw(u: jax.Array, cfg: AugmentConfig, height: int, width: int):
  """One sample's parameters, 3x3 / 4x4 matrices and labels from its uniforms."""
  out = {}
  labels = []
  uniform = u[:_NUM_U]
  # Normals by the inverse CDF, sqrt(2) erfinv(2u - 1), as jax.random.normal.
  tiny = np.nextafter(np.float32(-1), np.float32(0))
  normal = np.float32(np.sqrt(2)) * jax.lax.erf_inv(
      jnp.maximum(u[_NUM_U:] * 2 - 1, tiny))

  def draws(name):
    (iu, in_), (nu, nn) = _SLOTS[name], _DRAWS[name]
    return ([uniform[iu + i] for i in range(nu)],
            [normal[in_ + i] for i in range(nn)])

  def on(u, multiplier):  # the gate: apply with probability multiplier * p
    return u < multiplier * cfg.p

  def integer(u, n):  # uniform on {0, ..., n - 1}
    return jnp.minimum(jnp.floor(u * n), n - 1).astype(jnp.int32)

  zero = jnp.float32(0)

  # Pixel blitting.
  if cfg.xflip > 0:
    (ug, uv), _ = draws("xflip")
    out["xflip"] = jnp.where(on(ug, cfg.xflip), integer(uv, 2), 0)
    labels.append(out["xflip"])
  if cfg.yflip > 0:
    (ug, uv), _ = draws("yflip")
    out["yflip"] = jnp.where(on(ug, cfg.yflip), integer(uv, 2), 0)
    labels.append(out["yflip"])
  if cfg.rotate_int > 0:
    (ug, uv), _ = draws("rotate_int")
    k = jnp.where(on(ug, cfg.rotate_int), integer(uv, 4), 0)
    out["rotate_int"] = k
    labels += [(k == 1) | (k == 2), (k == 2) | (k == 3)]
  if cfg.translate_int > 0:
    (ug, ux, uy), _ = draws("translate_int")
    gate = on(ug, cfg.translate_int)
    wx = jnp.where(gate, ux * 2 - 1, zero)
    wy = jnp.where(gate, uy * 2 - 1, zero)
    span_x = width * cfg.translate_int_max
    span_y = height * cfg.translate_int_max
    tx = jnp.round(wx * span_x).astype(jnp.int32)
    ty = jnp.round(wy * span_y).astype(jnp.int32)
    out["translate_int"] = (tx, ty)
    labels += [tx / span_x, ty / span_y]

  # General geometric transformations: G_inv maps output to input pixel
  # coordinates (origin at the image centre, x right, y down).
  g_inv = jnp.eye(3, dtype=jnp.float32)
  if cfg.scale > 0:
    (ug,), (nv,) = draws("scale")
    w = jnp.where(on(ug, cfg.scale), nv, zero)
    s = jnp.exp2(w * cfg.scale_std)
    g_inv = g_inv @ _scale2d(1 / s, 1 / s)
    labels.append(w)
  if cfg.rotate_frac > 0:
    (ug, uv), _ = draws("rotate_frac")
    theta = jnp.where(on(ug, cfg.rotate_frac),
                      (uv * 2 - 1) * (np.pi * cfg.rotate_frac_max), zero)
    g_inv = g_inv @ _rotate2d(theta)
    labels += [jnp.cos(theta) - 1, jnp.sin(theta)]
  if cfg.aniso > 0:
    (ug, ur, uq), (nv,) = draws("aniso")
    w = jnp.where(on(ug, cfg.aniso), nv, zero)
    r = jnp.where(uq < cfg.aniso_rotate_prob, (ur * 2 - 1) * np.pi, zero)
    s = jnp.exp2(w * cfg.aniso_std)
    g_inv = g_inv @ _rotate2d(-r) @ _scale2d(1 / s, s) @ _rotate2d(r)
    labels += [w * jnp.cos(r), w * jnp.sin(r)]
  if cfg.translate_frac > 0:
    (ug,), (nx, ny) = draws("translate_frac")
    gate = on(ug, cfg.translate_frac)
    wx = jnp.where(gate, nx, zero)
    wy = jnp.where(gate, ny, zero)
    g_inv = g_inv @ _translate2d(-wx * width * cfg.translate_frac_std,
                                 -wy * height * cfg.translate_frac_std)
    labels += [wx, wy]
  out["g_inv"] = g_inv

  # Colour transformations: M acts on homogeneous RGB (r, g, b, 1).
  m = jnp.eye(4, dtype=jnp.float32)
  if cfg.brightness > 0:
    (ug,), (nv,) = draws("brightness")
    w = jnp.where(on(ug, cfg.brightness), nv, zero)
    m = _translate3d(w * cfg.brightness_std) @ m
    labels.append(w)
  if cfg.contrast > 0:
    (ug,), (nv,) = draws("contrast")
    w = jnp.where(on(ug, cfg.contrast), nv, zero)
    m = _scale3d(jnp.exp2(w * cfg.contrast_std)) @ m
    labels.append(w)
  if cfg.lumaflip > 0:
    (ug, uv), _ = draws("lumaflip")
    w = jnp.where(on(ug, cfg.lumaflip), integer(uv, 2), 0)
    flip = 2 * _LUMA_OUTER * w.astype(jnp.float32)
    m = (jnp.eye(4, dtype=jnp.float32) - flip) @ m
    labels.append(w)
  if cfg.hue > 0:
    (ug, uv), _ = draws("hue")
    theta = jnp.where(on(ug, cfg.hue), (uv * 2 - 1) * (np.pi * cfg.hue_max),
                      zero)
    m = _rotate3d(_LUMA_AXIS, theta) @ m
    labels += [jnp.cos(theta) - 1, jnp.sin(theta)]
  if cfg.saturation > 0:
    (ug,), (nv,) = draws("saturation")
    w = jnp.where(on(ug, cfg.saturation), nv, zero)
    s = jnp.exp2(w * cfg.saturation_std)
    m = (_LUMA_OUTER + (jnp.eye(4, dtype=jnp.float32) - _LUMA_OUTER) * s) @ m
    labels.append(w)
  out["m"] = m

  label_vec = (jnp.stack([jnp.asarray(v, jnp.float32) for v in labels])
               if labels else jnp.zeros((0,), jnp.float32))
  return out, label_vec


# ------------------------------------------------------------------------------
# Executing the transformations on a batch (NHWC).


def _blit_translate(images: jax.Array, tx: jax.Array, ty: jax.Array):
  """Integer translation with mirror reflection at the borders.

  Output pixel (y, x) reads input pixel (y + ty, x - tx), reflected into the
  image (the edge pixel is not repeated), exactly as NVlabs' blit.
  """
  _, h, w, _ = images.shape

  def reflect(i, size):
    return size - 1 - jnp.abs(size - 1 - jnp.mod(i, 2 * size - 2))

  xs = reflect(jnp.arange(w)[None, :] - tx[:, None], w)  # (N, W)
  ys = reflect(jnp.arange(h)[None, :] + ty[:, None], h)  # (N, H)
  return jax.vmap(lambda im, y, x: im[y][:, x])(images, ys, xs)


def _filter_axis(images: jax.Array, taps: np.ndarray, axis: int, *,
                 upsample: bool) -> jax.Array:
  """Separable depthwise filtering along spatial `axis` (1 = H, 2 = W), NHWC.

  upsample: zero-stuff to 2L - 1 samples, then correlate with the reversed taps
    (length 2L). Otherwise: correlate with the taps at stride 2 (length L / 2 +
    3, before the caller's crop).
  """
  c = images.shape[3]
  n = len(taps)
  kernel = np.asarray(taps[::-1] if upsample else taps, np.float32)
  shape = (n, 1, 1, 1) if axis == 1 else (1, n, 1, 1)
  kernel = jnp.asarray(np.tile(kernel.reshape(shape), (1, 1, 1, c)),
                       images.dtype)
  pad = (n + 1) // 2 if upsample else (n - 1) // 2
  padding = [(pad, pad), (0, 0)] if axis == 1 else [(0, 0), (pad, pad)]
  dilation = ((2, 1) if axis == 1 else (1, 2)) if upsample else (1, 1)
  strides = (1, 1) if upsample else ((2, 1) if axis == 1 else (1, 2))
  return jax.lax.conv_general_dilated(
      images, kernel, window_strides=strides, padding=padding,
      lhs_dilation=dilation, dimension_numbers=("NHWC", "HWIO", "NHWC"),
      feature_group_count=c, precision=jax.lax.Precision.HIGHEST)


def _bilinear(image: jax.Array, v: jax.Array, u: jax.Array) -> jax.Array:
  """Samples one HWC image at float pixel coordinates (v, u); zero outside."""
  h, w, _ = image.shape
  v0, u0 = jnp.floor(v), jnp.floor(u)
  fv, fu = v - v0, u - u0
  v0, u0 = v0.astype(jnp.int32), u0.astype(jnp.int32)
  result = jnp.zeros(v.shape + image.shape[2:], image.dtype)
  for dv, wv in ((0, 1 - fv), (1, fv)):
    for du, wu in ((0, 1 - fu), (1, fu)):
      vi, ui = v0 + dv, u0 + du
      inside = (vi >= 0) & (vi < h) & (ui >= 0) & (ui < w)
      weight = jnp.where(inside, wv * wu, 0)[..., None]
      result = result + weight * image[jnp.clip(vi, 0, h - 1),
                                       jnp.clip(ui, 0, w - 1)]
  return result


def _geometric_warp(images: jax.Array, g_inv: jax.Array) -> jax.Array:
  """Resamples NHWC images through per-sample 3x3 matrices `g_inv` (N, 3, 3).

  ``g_inv`` maps output to input pixel coordinates about the image centre. The
  image is reflect-padded by (size - 1) on every side, the largest margin
  NVlabs/edm ever uses (it pads just enough for the batch, capped at that
  value, which gives the same values), upsampled 2x with the sym6 filter,
  sampled bilinearly, and downsampled 2x with the same filter.
  """
  n, h, w, _ = images.shape
  my, mx = h - 1, w - 1
  x = jnp.pad(images, ((0, 0), (my, my), (mx, mx), (0, 0)), mode="reflect")
  x = _filter_axis(x, SYM6, 2, upsample=True)
  x = _filter_axis(x, SYM6, 1, upsample=True)
  hu, wu = x.shape[1], x.shape[2]  # 2 * (h + 2 my), 2 * (w + 2 mx)

  # Output grid in upsampled pixels, with a _FILTER_PAD border for the filter.
  ho, wo = 2 * (h + 2 * _FILTER_PAD), 2 * (w + 2 * _FILTER_PAD)
  py = jnp.arange(ho, dtype=jnp.float32) + 1 - ho / 2
  px = jnp.arange(wo, dtype=jnp.float32) + 1 - wo / 2
  grid = jnp.stack([jnp.broadcast_to(px[None, :], (ho, wo)) / 2,
                    jnp.broadcast_to(py[:, None], (ho, wo)) / 2,
                    jnp.ones((ho, wo), jnp.float32)], axis=-1)  # (ho, wo, 3)
  src = jnp.einsum("nij,hwj->nhwi", g_inv, grid,
                   precision=jax.lax.Precision.HIGHEST)
  u = 2 * src[..., 0] + wu / 2 - 1
  v = 2 * src[..., 1] + hu / 2 - 1
  x = jax.vmap(_bilinear)(x, v, u)

  x = _filter_axis(x, SYM6, 2, upsample=False)[:, :, _FILTER_PAD:-_FILTER_PAD]
  x = _filter_axis(x, SYM6, 1, upsample=False)[:, _FILTER_PAD:-_FILTER_PAD]
  return x


def _colour_transform(images: jax.Array, m: jax.Array) -> jax.Array:
  """Applies per-sample homogeneous 4x4 colour matrices (N, 4, 4), NHWC."""
  c = images.shape[3]
  if c == 3:
    out = jnp.einsum("nij,nhwj->nhwi", m[:, :3, :3], images,
                     precision=jax.lax.Precision.HIGHEST)
    return out + m[:, None, None, :3, 3]
  # Grey: the mean of the three colour rows.
  row = jnp.mean(m[:, :3, :], axis=1)  # (N, 4)
  gain = jnp.sum(row[:, :3], axis=1)
  return images * gain[:, None, None, None] + row[:, 3, None, None, None]


def augment(key: jax.Array, images: jax.Array, config: AugmentConfig
            ) -> tuple[jax.Array, jax.Array]:
  """Augments a batch of NHWC images; returns them with their augment labels.

  Pure and jittable with `config` static, e.g.
  ``jax.jit(augment, static_argnames="config")``; a new key never recompiles.

  Args:
    key: one key for the batch, or one key per sample (shape (N,)).
    images: NHWC array (N, H, W, C), C = 1 or 3 when colour transforms are on;
      square (H = W) when rotate_int is on.
    config: an :class:`AugmentConfig`.

  Returns:
    ``(augmented, labels)``: augmented images shaped and typed like `images`, and
    float32 labels of shape (N, config.augment_dim) in NVlabs/edm's layout
    (see the module docstring). With every probability 0 the images come back
    unchanged and the labels are zero.

  Example:
    >>> cfg = edm_augment_config(p=0.12)
    >>> aug = jax.jit(augment, static_argnames="config")
    >>> images = jnp.zeros((4, 16, 16, 3))               # NHWC in [-1, 1]
    >>> x, labels = aug(jax.random.key(0), images, cfg)
    >>> x.shape, labels.shape
    ((4, 16, 16, 3), (4, 9))
  """
  if not isinstance(config, AugmentConfig):
    raise ValueError(
        f"config must be an AugmentConfig, got {type(config).__name__}.")
  _checks.check_nhwc("images", images)
  n, h, w, c = images.shape
  _checks.check_batch_keys(key, n)
  if config.rotate_int > 0 and h != w:
    raise ValueError(
        f"rotate_int needs square images; got H={h}, W={w}. Set rotate_int=0.")
  if (config.translate_int > 0 or config.is_geometric) and min(h, w) < 2:
    raise ValueError(
        f"translations and geometric transforms need H, W >= 2; got H={h}, "
        f"W={w}.")
  if config.is_colour and c not in (1, 3):
    raise ValueError(
        f"colour transforms need C = 1 (grey) or 3 (RGB) channels; got C={c}.")

  return _apply(_uniforms(key, n), images, config)


def _apply(uniforms: jax.Array, images: jax.Array, config: AugmentConfig
           ) -> tuple[jax.Array, jax.Array]:
  """augment() given the per-sample uniforms (N, _NUM_U + _NUM_N)."""
  _, h, w, _ = images.shape
  params, labels = jax.vmap(lambda u: _draw(u, config, h, w))(uniforms)
  dtype = images.dtype
  x = images
  if config.xflip > 0:
    x = jnp.where((params["xflip"] == 1)[:, None, None, None], x[:, :, ::-1], x)
  if config.yflip > 0:
    x = jnp.where((params["yflip"] == 1)[:, None, None, None], x[:, ::-1], x)
  if config.rotate_int > 0:
    k = params["rotate_int"][:, None, None, None]
    x = jnp.where((k == 1) | (k == 2), x[:, :, ::-1], x)
    x = jnp.where((k == 2) | (k == 3), x[:, ::-1], x)
    x = jnp.where((k == 1) | (k == 3), jnp.swapaxes(x, 1, 2), x)
  if config.translate_int > 0:
    x = _blit_translate(x, *params["translate_int"])
  if config.is_geometric:
    x = _geometric_warp(x.astype(jnp.float32), params["g_inv"])
  if config.is_colour:
    x = _colour_transform(x.astype(jnp.float32), params["m"])
  return x.astype(dtype), labels
