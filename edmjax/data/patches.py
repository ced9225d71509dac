"""High-resolution training data without a network: scikit-image's bundled photographs.

scikit-image 0.26 ships these RGB photographs offline (checked): `astronaut`
(512×512), `coffee` (400×600), `chelsea` (300×451), `rocket` (427×640),
`immunohistochemistry` (512×512), `hubble_deep_field` (872×1000), `retina`
(1411×1411) and the two views of `stereo_motorcycle` (500×741). (`cat` is the same
image as `chelsea` and is never used; `skin`, `lily`, `kidney`, ... need pooch and
a download.) `EXTRA_PHOTOGRAPHS` widens the training set to more natural scenes and
textures that also ship offline: scikit-learn's two sample photographs (`china`,
`flower`, 427×640 RGB) and scikit-image's greyscale photographs `camera`, `coins`,
`moon`, `grass`, `gravel` and `brick` (given as RGB with three equal channels).
One whole photograph is held out for evaluation (default `chelsea`); training
patches are cut from the others.

`PatchSource` is a random-access source for `edmjax.data.pipeline` (the
`Source` protocol): example i is a `patch`×`patch` crop whose photograph,
position and flip are a pure function of (seed, i), so a batch depends only on its
position in the stream, as the pipeline promises.

Images are NHWC float32 in [-1, 1].
"""

from __future__ import annotations

import functools

import numpy as np

from edmjax import _arrays
from edmjax import _checks

__all__ = ["PHOTOGRAPHS", "EXTRA_PHOTOGRAPHS", "PHOTO_SETS", "AUGMENTS", "load_photograph", "photo_split", "crop_to_multiple",
           "PatchSource", "photo_patches"]

PHOTOGRAPHS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry",
               "hubble_deep_field", "retina", "motorcycle_left", "motorcycle_right")
EXTRA_PHOTOGRAPHS = ("china", "flower", "camera", "coins", "moon", "grass", "gravel", "brick")
# 'colour': the RGB photographs of scikit-image; 'all': those and EXTRA_PHOTOGRAPHS;
# 'natural': 'all' without the microscope, telescope and fundus images.
PHOTO_SETS = ("colour", "all", "natural")
_NOT_NATURAL = ("immunohistochemistry", "hubble_deep_field", "retina")
# 'hflip': horizontal flips; 'dihedral': the 8 flips and 90-degree rotations.
AUGMENTS = ("hflip", "dihedral")


@functools.lru_cache(maxsize=None)
def _load_uint8(name: str) -> np.ndarray:
  from skimage import data  # pylint: disable=g-import-not-at-top
  if name in ("motorcycle_left", "motorcycle_right"):
    left, right, _ = data.stereo_motorcycle()
    return np.asarray(left if name == "motorcycle_left" else right)
  if name in ("china", "flower"):
    from sklearn import datasets  # pylint: disable=g-import-not-at-top
    return np.asarray(datasets.load_sample_image(name + ".jpg"))
  img = np.asarray(getattr(data, name)())
  return np.repeat(img[..., None], 3, axis=-1) if img.ndim == 2 else img


def load_photograph(name: str) -> np.ndarray:
  """One photograph as (1, H, W, 3) NHWC float32 in [-1, 1].

  Raises:
    ValueError: for a name not in `PHOTOGRAPHS` or `EXTRA_PHOTOGRAPHS`.
  """
  _checks.check_choice("photograph", name, PHOTOGRAPHS + EXTRA_PHOTOGRAPHS)
  img = _load_uint8(name)
  return (img.astype(np.float32) / 127.5 - 1.0)[None]


def crop_to_multiple(x: np.ndarray, multiple: int) -> np.ndarray:
  """Centre crop of NHWC `x` to height and width divisible by `multiple`."""
  _checks.check_nhwc("x", x)
  h, w = x.shape[1], x.shape[2]
  hh, ww = h - h % multiple, w - w % multiple
  if hh == 0 or ww == 0:
    raise ValueError(f"image size {h}x{w} is smaller than multiple={multiple}.")
  top, left = (h - hh) // 2, (w - ww) // 2
  return x[:, top:top + hh, left:left + ww]


def photo_split(holdout: str = "chelsea", photo_set: str = "colour"
                ) -> tuple[tuple[str, ...], str]:
  """(training photograph names, held-out name): every photograph of the set but `holdout`.

  Args:
    holdout: the held-out photograph (any of `PHOTOGRAPHS` + `EXTRA_PHOTOGRAPHS`).
    photo_set: 'colour' (`PHOTOGRAPHS`), 'all' (with `EXTRA_PHOTOGRAPHS`) or
      'natural' ('all' without immunohistochemistry, hubble_deep_field and retina).
  """
  _checks.check_choice("photo_set", photo_set, PHOTO_SETS)
  names = PHOTOGRAPHS + (EXTRA_PHOTOGRAPHS if photo_set != "colour" else ())
  if photo_set == "natural":
    names = tuple(n for n in names if n not in _NOT_NATURAL)
  _checks.check_choice("holdout", holdout, PHOTOGRAPHS + EXTRA_PHOTOGRAPHS)
  return tuple(n for n in names if n != holdout), holdout


class PatchSource:
  """Random crops of a list of images as a random-access `Source` (no labels).

  Example i: photograph `u_0 mod n`, top-left corner uniform over the valid
  positions, a horizontal flip with probability ½ (`augment='hflip'`) or one of the
  8 flips and quarter turns of the square (`'dihedral'`), where u_k are 64-bit
  hashes of (seed, i, k): a pure function of (seed, i). Each photograph is drawn
  equally often.

  Attributes:
    name: a description.
    num_classes: 0 (labels are all 0).
  """

  def __init__(self, images, patch: int, *, length: int = 1 << 20, seed: int = 0,
               name: str = "patches", min_std: float = 0.0, tries: int = 8,
               augment: str = "hflip"):
    """Args:
      images: a sequence of (1, H, W, C) or (H, W, C) arrays in [-1, 1], each at
        least `patch` pixels high and wide.
      patch: the side of the square crops.
      length: the number of distinct examples (the stream's epoch).
      seed: the crops' seed.
      name: a description.
      min_std: reject flat crops: of up to `tries` candidate positions (each a hash
        of (seed, i, try)), the first whose pixel std is >= min_std is used (else
        the last); 0 keeps the first candidate. Flat sky or black background
        teaches super-resolution nothing.
      tries: candidates per example when min_std > 0.
      augment: 'hflip' (horizontal flips) or 'dihedral' (flips and quarter turns).
    """
    _checks.check_int_at_least("patch", patch, 1)
    _checks.check_choice("augment", augment, AUGMENTS)
    self.augment = augment
    _checks.check_int_at_least("length", length, 1)
    self.images = [np.asarray(im[0] if np.ndim(im) == 4 else im, np.float32)
                   for im in images]
    if not self.images:
      raise ValueError("PatchSource needs at least one image.")
    for k, im in enumerate(self.images):
      if im.shape[0] < patch or im.shape[1] < patch:
        raise ValueError(f"image {k} of size {im.shape[0]}x{im.shape[1]} is smaller than "
                         f"patch={patch}.")
    self.patch, self.length, self.seed = patch, length, seed
    self.min_std, self.tries = float(min_std), int(tries) if min_std > 0 else 1
    self.name = f"{name}-{patch}x{patch}x{self.images[0].shape[-1]}"
    self.num_classes = 0

  def __len__(self) -> int:
    return self.length

  def get(self, indices) -> tuple[np.ndarray, np.ndarray]:
    """(images (n, patch, patch, C) float32, labels (n,) int32 zeros)."""
    idx = np.asarray(indices, np.uint64).reshape(-1)
    base = _arrays.splitmix64(idx * np.uint64(4) + _arrays.splitmix64(np.full_like(idx, self.seed)))
    u = [_arrays.splitmix64(base + np.uint64(k)) for k in range(4)]
    p = self.patch
    out = np.empty((len(idx), p, p, self.images[0].shape[-1]), np.float32)
    for j in range(len(idx)):
      im = self.images[int(u[0][j] % np.uint64(len(self.images)))]
      for t in range(self.tries):
        h1 = u[1][j] if t == 0 else _arrays.splitmix64(u[1][j] + np.uint64(1000 + t))
        h2 = u[2][j] if t == 0 else _arrays.splitmix64(u[2][j] + np.uint64(2000 + t))
        top = int(h1 % np.uint64(im.shape[0] - p + 1))
        left = int(h2 % np.uint64(im.shape[1] - p + 1))
        crop = im[top:top + p, left:left + p]
        if self.min_std <= 0 or float(crop.std()) >= self.min_std:
          break
      bits = int(u[3][j] & np.uint64(7))
      if bits & 1:
        crop = crop[:, ::-1]
      if self.augment == "dihedral":
        if bits & 2:
          crop = crop[::-1]
        if bits & 4:
          crop = crop.transpose(1, 0, 2)
      out[j] = crop
    return out, np.zeros((len(idx),), np.int32)


def photo_patches(patch: int, *, holdout: str = "chelsea", seed: int = 0,
                  length: int = 1 << 20, min_std: float = 0.0, photo_set: str = "colour",
                  augment: str = "hflip") -> tuple[PatchSource, np.ndarray]:
  """Training patches from every photograph of `photo_set` but `holdout`, and the held-out one.

  Returns:
    (PatchSource of NHWC `patch`×`patch`×3 crops, held-out image (1, H, W, 3)).
  """
  train_names, held = photo_split(holdout, photo_set)
  images = [load_photograph(n) for n in train_names]
  src = PatchSource(images, patch, seed=seed, length=length, min_std=min_std,
                    name="photos-without-" + held, augment=augment)
  return src, load_photograph(held)
