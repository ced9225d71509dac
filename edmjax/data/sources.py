"""Image data sources: embedded sets, TFDS and image folders, all as NHWC [-1, 1].

Every source hands out images as NHWC float32 arrays in [-1, 1] and integer class
labels in ``[0, num_classes)``. Two kinds exist:

* :class:`Dataset`: everything in host memory (``images`` of shape (N, H, W, C)).
  Returned by :func:`load_digits`, :func:`load_lfw_subset`,
  :func:`load_image_folder` and :func:`to_dataset`.
* Random-access sources (:class:`TfdsSource`, :class:`ImageFolderSource`) that
  decode examples on demand, for sets too large to hold decoded in memory.

Both satisfy the :class:`Source` protocol used by :mod:`edmjax.data.pipeline`:
``len(source)``, ``source.get(indices) -> (images, labels)``, ``num_classes`` and
``name``.

Image geometry follows NVlabs/edm's ``dataset_tool.py --transform=center-crop``: a
non-square image is centre-cropped to a square of its shorter side, then resized
to ``resolution``. Resampling (``resample='auto'``) is Lanczos when shrinking (it
low-passes, as NVlabs' tool does) and bicubic when enlarging (less ringing than
Lanczos on tiny images such as the 8x8 digits); values are clipped back to the
data range afterwards.

Only NumPy is imported at module level; PIL, scikit-learn, scikit-image and
tensorflow-datasets are imported inside the functions that need them.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from typing import Any, Protocol

import numpy as np

from edmjax import _checks

__all__ = [
    "Dataset",
    "ImageFolderSource",
    "RESAMPLE_METHODS",
    "Source",
    "TfdsSource",
    "image_folder_source",
    "load_dataset",
    "load_digits",
    "load_image_folder",
    "load_lfw_subset",
    "read_image_file",
    "Subset",
    "holdout_split",
    "split_holdout",
    "tfds_source",
    "to_dataset",
]

RESAMPLE_METHODS = ("auto", "lanczos", "bicubic", "bilinear", "box", "nearest")
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif")
EMBEDDED_DATASETS = ("digits", "lfw_subset")
TFDS_DATASETS = ("mnist", "fashion_mnist", "kmnist", "cifar10", "cifar100",
                 "svhn_cropped", "celeb_a", "stl10", "oxford_flowers102")


class Source(Protocol):
  """What the batching pipeline needs from a data source (images NHWC)."""

  name: str
  num_classes: int

  def __len__(self) -> int:
    ...

  def get(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(images (n, H, W, C) float32 in [-1, 1], labels (n,) int32)."""
    ...


@dataclasses.dataclass(frozen=True, eq=False)
class Dataset:
  """An in-memory image data set.

  Attributes:
    images: float32 array, shape (N, H, W, C) (NHWC), values in [-1, 1].
    labels: int32 array, shape (N,), values in [0, num_classes) (all zero when
      num_classes is 0, i.e. the set has no classes).
    num_classes: number of classes; 0 for an unlabelled set.
    name: a short description, e.g. ``"digits-16x16x1"``.
    class_names: the name of each class, when known.
  """

  images: np.ndarray
  labels: np.ndarray
  num_classes: int
  name: str
  class_names: tuple[str, ...] = ()

  def __len__(self) -> int:
    return int(self.images.shape[0])

  @property
  def resolution(self) -> int:
    """Height (= width) of the images."""
    return int(self.images.shape[1])

  @property
  def channels(self) -> int:
    return int(self.images.shape[3])

  def get(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Images (n, H, W, C) and labels (n,) of the examples at `indices`."""
    indices = np.asarray(indices)
    return self.images[indices], self.labels[indices]


# ------------------------------------------------------------------------------
# Checks and single-image conversion.


def _check_resolution(resolution: int | None) -> None:
  if resolution is not None:
    _checks.check_int_at_least("resolution", resolution, 1)


def _check_channels(channels: int | None, allow_none: bool = False) -> None:
  if channels is None and allow_none:
    return
  _checks.check_choice("channels", channels, (1, 3))


def _pil_filter(resample: str, upscale: bool):
  from PIL import Image  # pylint: disable=g-import-not-at-top
  if resample == "auto":
    resample = "bicubic" if upscale else "lanczos"
  return {
      "lanczos": Image.Resampling.LANCZOS,
      "bicubic": Image.Resampling.BICUBIC,
      "bilinear": Image.Resampling.BILINEAR,
      "box": Image.Resampling.BOX,
      "nearest": Image.Resampling.NEAREST,
  }[resample]


def _convert_channels(image: np.ndarray, channels: int | None) -> np.ndarray:
  """HWC float image with 1 or 3 channels to `channels` (None keeps them)."""
  c = image.shape[2]
  if channels is None or channels == c:
    return image
  if channels == 3:  # grey -> RGB
    return np.repeat(image, 3, axis=2)
  # RGB -> grey: ITU-R 601-2 luma, as PIL's convert("L").
  luma = np.array([0.299, 0.587, 0.114], dtype=np.float32)
  return np.tensordot(image, luma, axes=([2], [0]))[:, :, None]


def _crop_resize(image: np.ndarray, resolution: int | None,
                 resample: str) -> np.ndarray:
  """Centre-crops an HWC float image to a square and resizes it."""
  h, w = image.shape[:2]
  side = min(h, w)
  top, left = (h - side) // 2, (w - side) // 2
  image = image[top:top + side, left:left + side]
  if resolution is None or resolution == side:
    return image
  from PIL import Image  # pylint: disable=g-import-not-at-top
  flt = _pil_filter(resample, upscale=resolution > side)
  planes = [
      np.asarray(Image.fromarray(np.ascontiguousarray(image[:, :, c]))
                 .resize((resolution, resolution), flt))
      for c in range(image.shape[2])
  ]
  return np.stack(planes, axis=2)


def _prepare(image: np.ndarray, scale: float, resolution: int | None,
             channels: int | None, resample: str) -> np.ndarray:
  """An HW or HWC image with values in [0, scale] -> HWC float32 in [-1, 1]."""
  image = np.asarray(image, dtype=np.float32) / np.float32(scale)
  if image.ndim == 2:
    image = image[:, :, None]
  image = _convert_channels(image, channels)
  image = _crop_resize(image, resolution, resample)
  return np.clip(image * 2 - 1, -1, 1).astype(np.float32)


def _prepare_all(images: np.ndarray, scale: float, resolution: int | None,
                 channels: int | None, resample: str) -> np.ndarray:
  return np.stack([_prepare(im, scale, resolution, channels, resample)
                   for im in images]).astype(np.float32)


def _tag(name: str, images: np.ndarray) -> str:
  return f"{name}-{images.shape[1]}x{images.shape[2]}x{images.shape[3]}"


# ------------------------------------------------------------------------------
# Embedded data sets (no network).


def load_digits(resolution: int | None = None, *, channels: int = 1,
                resample: str = "auto") -> Dataset:
  """scikit-learn's handwritten digits: 1,797 real 8x8 images, 10 classes.

  The 16 grey levels (0 = background, 16 = ink) map linearly to [-1, 1], so the
  background is -1 and the strokes are +1.

  Args:
    resolution: output height = width; None keeps 8.
    channels: 1 (grey) or 3 (grey repeated).
    resample: one of ``RESAMPLE_METHODS`` ("auto": bicubic when enlarging).

  Returns:
    A :class:`Dataset` with images (1797, R, R, channels) NHWC float32 in [-1, 1]
    and labels 0-9.
  """
  _check_resolution(resolution)
  _check_channels(channels)
  _checks.check_choice("resample", resample, RESAMPLE_METHODS)
  from sklearn import datasets  # pylint: disable=g-import-not-at-top
  digits = datasets.load_digits()
  images = _prepare_all(digits.images, 16.0, resolution, channels, resample)
  return Dataset(images=images, labels=digits.target.astype(np.int32),
                 num_classes=10, name=_tag("digits", images),
                 class_names=tuple(str(d) for d in range(10)))


def load_lfw_subset(resolution: int | None = None, *, channels: int = 1,
                    resample: str = "auto") -> Dataset:
  """scikit-image's ``data.lfw_subset()``: 200 real 25x25 grey crops of LFW.

  The first 100 images are faces and the last 100 are non-faces (background
  patches of the same photographs), per scikit-image's documentation; the labels
  are 0 = face, 1 = non-face. (The function returns float64 in [0, 1] although
  its docstring says uint8; both are handled.)

  Args:
    resolution: output height = width; None keeps 25.
    channels: 1 (grey) or 3 (grey repeated).
    resample: one of ``RESAMPLE_METHODS``.

  Returns:
    A :class:`Dataset` with images (200, R, R, channels) NHWC float32 in [-1, 1].
  """
  _check_resolution(resolution)
  _check_channels(channels)
  _checks.check_choice("resample", resample, RESAMPLE_METHODS)
  from skimage import data  # pylint: disable=g-import-not-at-top
  raw = np.asarray(data.lfw_subset())
  scale = 255.0 if raw.dtype == np.uint8 else 1.0
  images = _prepare_all(raw, scale, resolution, channels, resample)
  labels = np.concatenate([np.zeros(100, np.int32), np.ones(100, np.int32)])
  return Dataset(images=images, labels=labels, num_classes=2,
                 name=_tag("lfw_subset", images),
                 class_names=("face", "non-face"))


# ------------------------------------------------------------------------------
# TFDS (random access through tfds.data_source; no TensorFlow needed).


@dataclasses.dataclass(frozen=True, eq=False)
class TfdsSource:
  """Random access to a TFDS image data set, decoded to NHWC float32 [-1, 1].

  Built by :func:`tfds_source`. ``data_source`` is the object returned by
  ``tfds.data_source`` (an ArrayRecord reader); examples are decoded on demand.
  """

  data_source: Any
  name: str
  num_classes: int
  resolution: int | None
  channels: int | None
  resample: str = "auto"
  image_key: str = "image"
  label_key: str | None = "label"

  def __len__(self) -> int:
    return len(self.data_source)

  def get(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Images (n, R, R, C) NHWC float32 in [-1, 1] and labels (n,) int32."""
    images, labels = [], []
    for i in np.asarray(indices).reshape(-1):
      example = self.data_source[int(i)]
      image = np.asarray(example[self.image_key])
      scale = 255.0 if image.dtype == np.uint8 else 1.0
      images.append(_prepare(image, scale, self.resolution, self.channels,
                             self.resample))
      labels.append(0 if self.label_key is None
                    else int(np.asarray(example[self.label_key])))
    if not images:
      raise ValueError("indices is empty; ask for at least one example.")
    return np.stack(images), np.asarray(labels, dtype=np.int32)


def tfds_source(name: str, *, split: str = "train",
                resolution: int | None = None, channels: int | None = None,
                data_dir: str | None = None, resample: str = "auto",
                download: bool = True) -> TfdsSource:
  """A TFDS image data set as a random-access source (NHWC float32 in [-1, 1]).

  Uses ``tfds.data_source(name, split=split, data_dir=data_dir)``: the ArrayRecord
  files are read directly, TensorFlow is not needed (the first call downloads and
  prepares the set). Labels come from the ``label`` feature when the set has
  one (``num_classes`` from its ClassLabel); otherwise all labels are 0 and
  ``num_classes`` is 0.

  Args:
    name: a TFDS name, e.g. ``"mnist"``, ``"fashion_mnist"``, ``"cifar10"``,
      ``"celeb_a"``.
    split: a TFDS split, e.g. ``"train"``, ``"test"``, ``"train[:10%]"``.
    resolution: output height = width (centre crop, then resize); None keeps the
      shorter side.
    channels: 1 or 3; None keeps the stored channels.
    data_dir: TFDS data directory (None: TFDS' default).
    resample: one of ``RESAMPLE_METHODS``.
    download: whether TFDS may download and prepare the set.

  Returns:
    A :class:`TfdsSource`.
  """
  _check_resolution(resolution)
  _check_channels(channels, allow_none=True)
  _checks.check_choice("resample", resample, RESAMPLE_METHODS)
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  try:
    ds = tfds.data_source(name, split=split, data_dir=data_dir,
                          download=download)
  except tfds.core.registered.DatasetNotFoundError as e:
    raise ValueError(
        f"TFDS has no data set named {name!r}; see tfds.list_builders() for the "
        "allowed names, e.g. 'mnist', 'fashion_mnist', 'cifar10', 'celeb_a'."
    ) from e
  features = ds.dataset_info.features
  image_keys = [k for k in features.keys() if k == "image"] or [
      k for k, f in features.items() if type(f).__name__ == "Image"]
  if not image_keys:
    raise ValueError(
        f"TFDS data set {name!r} has no image feature; its features are "
        f"{list(features.keys())}.")
  label_key, num_classes = None, 0
  if "label" in features and hasattr(features["label"], "num_classes"):
    label_key, num_classes = "label", int(features["label"].num_classes)
  return TfdsSource(data_source=ds, name=f"{name}:{split}",
                    num_classes=num_classes, resolution=resolution,
                    channels=channels, resample=resample,
                    image_key=image_keys[0], label_key=label_key)


# ------------------------------------------------------------------------------
# Image folders.


def read_image_file(path: str, channels: int | None = None) -> tuple[np.ndarray, float]:
  """Reads an image file as HWC (1 or 3 channels) with its full-scale value.

  The way a camera or phone wants the picture shown is applied: the EXIF
  orientation tag (a portrait JPEG stored sideways) is undone. 16-bit files keep
  their depth: a 16-bit grey PNG comes back with full scale 65535 (not clipped to
  8 bits), a 16-bit RGB PNG as PIL's 8-bit reduction (scale 255). RGBA / LA /
  palette-with-transparency images are composited over white. `channels=1`
  converts RGB to grey (ITU-R 601-2 luma), `channels=3` repeats a grey image;
  None keeps the file's.

  Returns:
    (array (H, W, channels), full_scale): divide by full_scale for [0, 1].

  Raises:
    ValueError: the file cannot be read as an image, naming it and the reason.
  """
  from PIL import Image  # pylint: disable=g-import-not-at-top
  from PIL import ImageOps  # pylint: disable=g-import-not-at-top
  if not os.path.isfile(path):
    raise ValueError(f"Cannot read image file {path!r}: it does not exist or is not a "
                     "file.")
  try:
    with Image.open(path) as im:
      im.load()
      fmt = im.format
      im = ImageOps.exif_transpose(im)
      if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        array = np.asarray(im, dtype=np.float32)
        if im.mode.startswith("I;16") or (im.mode == "I" and fmt == "PNG"):
          scale = 65535.0  # a 16-bit file, whatever its brightest pixel
        elif im.mode == "I":  # e.g. a 32-bit TIFF: the range is not in the file
          peak = float(array.max(initial=0))
          scale = 255.0 if peak <= 255 else 65535.0 if peak <= 65535 else peak
        else:
          scale = 1.0
        return _convert_channels(array.reshape(array.shape[:2] + (1,)), channels), scale
      if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
      if im.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(white, rgba).convert("RGB")
      if im.mode not in ("L", "RGB"):
        im = im.convert("RGB")
      if channels == 1 and im.mode == "RGB":
        im = im.convert("L")
      array = np.asarray(im)
  except Exception as e:  # PIL raises many kinds (UnidentifiedImageError, ...).
    raise ValueError(f"Cannot read image file {path!r}: {e}") from e
  if array.ndim == 2:
    array = array[:, :, None]
  return _convert_channels(array, channels), 255.0


@dataclasses.dataclass(frozen=True, eq=False)
class ImageFolderSource:
  """Random access to the image files of a folder (NHWC float32 in [-1, 1]).

  Built by :func:`image_folder_source`; ``paths[i]`` has label ``labels[i]``.
  """

  paths: tuple[str, ...]
  labels: np.ndarray
  num_classes: int
  name: str
  resolution: int
  channels: int
  resample: str = "auto"
  class_names: tuple[str, ...] = ()

  def __len__(self) -> int:
    return len(self.paths)

  def get(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Images (n, R, R, C) NHWC float32 in [-1, 1] and labels (n,) int32."""
    indices = np.asarray(indices).reshape(-1)
    images = []
    for i in indices:
      array, scale = read_image_file(self.paths[int(i)], self.channels)
      images.append(_prepare(array, scale, self.resolution, self.channels,
                             self.resample))
    if not images:
      raise ValueError("indices is empty; ask for at least one example.")
    return np.stack(images), self.labels[indices]


def _list_images(folder: str) -> list[str]:
  found = []
  for root, dirs, files in os.walk(folder):
    dirs.sort()
    found.extend(os.path.join(root, f) for f in sorted(files)
                 if f.lower().endswith(IMAGE_EXTENSIONS))
  return found


def image_folder_source(path: str, resolution: int, *, channels: int = 3,
                        resample: str = "auto") -> ImageFolderSource:
  """A folder of PNG / JPEG images as a random-access source (NHWC, [-1, 1]).

  Labels come from the sub-folder names: the immediate sub-folders of `path`
  that hold at least one image, sorted by name, are classes 0, 1, ...; images in
  deeper folders belong to their top-level sub-folder. A sub-folder without images
  is not a class (a warning names it). A folder with no such sub-folders is
  unlabelled (``num_classes`` 0, labels 0). EXIF orientation is applied and 16-bit
  files keep their range (:func:`read_image_file`). Grey, RGB and RGBA files may be mixed: RGBA (and
  grey+alpha, and palette images with transparency) are composited over a white
  background, then converted to `channels` (RGB -> grey by ITU-R 601-2 luma,
  grey -> RGB by repetition). Each image is centre-cropped to a square and
  resized to `resolution`. Files are decoded lazily; an unreadable file raises
  a ValueError naming it when it is read.

  Args:
    path: the folder.
    resolution: output height = width.
    channels: 1 or 3.
    resample: one of ``RESAMPLE_METHODS``.

  Returns:
    An :class:`ImageFolderSource`.
  """
  _checks.check_int_at_least("resolution", resolution, 1)
  _check_channels(channels)
  _checks.check_choice("resample", resample, RESAMPLE_METHODS)
  if not os.path.isdir(path):
    raise ValueError(f"Image folder {path!r} does not exist or is not a folder.")
  class_names = tuple(sorted(
      d for d in os.listdir(path)
      if os.path.isdir(os.path.join(path, d)) and not d.startswith(".")))
  if class_names:
    loose = [f for f in sorted(os.listdir(path))
             if f.lower().endswith(IMAGE_EXTENSIONS)]
    found = {cls: _list_images(os.path.join(path, cls)) for cls in class_names}
    empty = [cls for cls in class_names if not found[cls]]
    class_names = tuple(cls for cls in class_names if found[cls])
    if loose and class_names:
      raise ValueError(
          f"Image folder {path!r} has class sub-folders {list(class_names)} but "
          f"also images at its top level (e.g. {loose[0]!r}); move them into a "
          "class sub-folder.")
    if empty and class_names:
      warnings.warn(
          f"Image folder {path!r}: sub-folder(s) {empty} hold no image file and are not "
          f"classes; the classes are {list(class_names)}.", UserWarning, stacklevel=2)
  if class_names:
    paths, labels = [], []
    for label, cls in enumerate(class_names):
      files = found[cls]
      paths.extend(files)
      labels.extend([label] * len(files))
  else:
    paths = _list_images(path)
    labels = [0] * len(paths)
  if not paths:
    raise ValueError(
        f"Image folder {path!r} contains no image files; allowed extensions: "
        f"{', '.join(IMAGE_EXTENSIONS)}.")
  return ImageFolderSource(
      paths=tuple(paths), labels=np.asarray(labels, dtype=np.int32),
      num_classes=len(class_names),
      name=f"folder:{os.path.basename(os.path.normpath(path))}",
      resolution=resolution, channels=channels, resample=resample,
      class_names=class_names)


def load_image_folder(path: str, resolution: int, *, channels: int = 3,
                      resample: str = "auto") -> Dataset:
  """Decodes a whole image folder into memory; see :func:`image_folder_source`.

  Returns:
    A :class:`Dataset` with images (N, R, R, channels) NHWC float32 in [-1, 1].
  """
  return to_dataset(image_folder_source(path, resolution, channels=channels,
                                        resample=resample))


# ------------------------------------------------------------------------------
# Generic helpers.


def holdout_split(n: int, num_holdout: int, *, labels: np.ndarray | None = None,
                  seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
  """(train_indices, holdout_indices) of `n` examples, each sorted, seeded-random.

  With `labels` (n,), the split is stratified: every class gives
  `num_holdout · n_c / n` examples (rounded by largest remainder), and no class is
  held out whole — a class keeps at least one training example, so a model trained
  on the rest has seen every class. Without labels it is a uniform random draw.
  The examples taken are a seeded permutation of each class, not the last files of
  the source's order (which, for a folder of class sub-folders, is the last class).

  Raises:
    ValueError: `num_holdout` is not an int in [0, n), or it cannot be met without
      taking a class's last example.
  """
  _checks.check_int_at_least("holdout", num_holdout, 0)
  if num_holdout >= n:
    raise ValueError(f"data.holdout={num_holdout} leaves no training examples (the "
                     f"source has {n}); it must be < {n}.")
  rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x686F6C64]))
  if labels is None or num_holdout == 0:
    held = rng.permutation(n)[:num_holdout]
  else:
    labels = np.asarray(labels).reshape(-1)
    if labels.shape[0] != n:
      raise ValueError(f"labels has {labels.shape[0]} entries; expected {n}.")
    classes, counts = np.unique(labels, return_counts=True)
    room = counts - 1  # each class keeps one training example
    if num_holdout > room.sum():
      raise ValueError(
          f"data.holdout={num_holdout} would hold out every example of a class: the "
          f"{len(classes)} classes have {n} examples and each must keep one for "
          f"training; use data.holdout <= {int(room.sum())}.")
    quota = num_holdout * counts / n
    take = np.minimum(np.floor(quota).astype(np.int64), room)
    order = np.argsort(-(quota - take), kind="stable")
    while take.sum() < num_holdout:  # largest remainder first, within each class' room
      for c in order:
        if take.sum() == num_holdout:
          break
        if take[c] < room[c]:
          take[c] += 1
    held = np.concatenate([
        rng.permutation(np.flatnonzero(labels == cls))[:k]
        for cls, k in zip(classes, take)]).astype(np.int64)
  mask = np.zeros(n, bool)
  mask[held] = True
  return np.flatnonzero(~mask), np.flatnonzero(mask)


@dataclasses.dataclass(frozen=True, eq=False)
class Subset:
  """The examples `indices` of a random-access source, as a source of its own."""

  source: Any
  indices: np.ndarray

  @property
  def name(self) -> str:
    return getattr(self.source, "name", "source")

  @property
  def num_classes(self) -> int:
    return int(self.source.num_classes)

  def __len__(self) -> int:
    return int(len(self.indices))

  def get(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return self.source.get(self.indices[np.asarray(indices)])


def split_holdout(source: Source, num_holdout: int, *, seed: int = 0):
  """(train_source, holdout_images) by `holdout_split`, stratified when the labels are
  at hand (a :class:`Dataset`, an :class:`ImageFolderSource`); otherwise random.

  An in-memory :class:`Dataset` stays one (sliced); a random-access source becomes a
  :class:`Subset`. `holdout_images` is NHWC float32 in [-1, 1], or None when
  `num_holdout` is 0.
  """
  n = len(source)
  labels = getattr(source, "labels", None) if source.num_classes else None
  train_idx, held_idx = holdout_split(n, num_holdout, labels=labels, seed=seed)
  if not len(held_idx):
    return source, None
  held = source.get(held_idx)[0]
  if isinstance(source, Dataset):
    return Dataset(images=source.images[train_idx], labels=source.labels[train_idx],
                   num_classes=source.num_classes, name=source.name,
                   class_names=source.class_names), held
  return Subset(source, train_idx), held


def to_dataset(source: Source, *, chunk: int = 1024) -> Dataset:
  """Reads every example of a random-access source into a :class:`Dataset`.

  Args:
    source: any :class:`Source`.
    chunk: number of examples read per call of ``source.get``.

  Returns:
    A :class:`Dataset` (images NHWC float32 in [-1, 1]).
  """
  if isinstance(source, Dataset):
    return source
  _checks.check_int_at_least("chunk", chunk, 1)
  n = len(source)
  if n == 0:
    raise ValueError(f"Source {source.name!r} is empty.")
  parts = [source.get(np.arange(s, min(s + chunk, n))) for s in range(0, n, chunk)]
  images = np.concatenate([p[0] for p in parts])
  labels = np.concatenate([p[1] for p in parts]).astype(np.int32)
  return Dataset(images=images, labels=labels, num_classes=source.num_classes,
                 name=source.name,
                 class_names=tuple(getattr(source, "class_names", ())))


def load_dataset(name: str, *, resolution: int | None = None,
                 channels: int | None = None, split: str = "train",
                 data_dir: str | None = None,
                 resample: str = "auto") -> Source:
  """Any supported data set by name (images NHWC float32 in [-1, 1]).

  Args:
    name: ``"digits"`` or ``"lfw_subset"`` (embedded, returned in memory); a
      TFDS name from ``TFDS_DATASETS`` or ``"tfds:<any tfds name>"``
      (random access); or ``"folder:<path>"`` (random access, labels from
      sub-folders; needs `resolution`).
    resolution: output height = width; None keeps the native size (shorter
      side).
    channels: 1 or 3; None: the set's own (digits and lfw_subset: 1; folders: 3).
    split: TFDS split (ignored by embedded sets and folders).
    data_dir: TFDS data directory.
    resample: one of ``RESAMPLE_METHODS``.

  Returns:
    A :class:`Dataset` or a random-access :class:`Source`.
  """
  if not isinstance(name, str):
    raise ValueError(f"name must be a string, got {name!r}.")
  _check_resolution(resolution)
  _check_channels(channels, allow_none=True)
  if name == "digits":
    return load_digits(resolution, channels=channels or 1, resample=resample)
  if name == "lfw_subset":
    return load_lfw_subset(resolution, channels=channels or 1,
                           resample=resample)
  if name.startswith("folder:"):
    if resolution is None:
      raise ValueError(
          f"{name!r} needs a resolution (an int >= 1); got resolution=None.")
    return image_folder_source(name[len("folder:"):], resolution,
                               channels=channels or 3, resample=resample)
  if name.startswith("tfds:") or name in TFDS_DATASETS:
    return tfds_source(name.removeprefix("tfds:"), split=split,
                       resolution=resolution, channels=channels,
                       data_dir=data_dir, resample=resample)
  _checks.check_choice(
      "name", name,
      EMBEDDED_DATASETS + TFDS_DATASETS + ("tfds:<name>", "folder:<path>"))
  raise AssertionError("unreachable")  # pragma: no cover
