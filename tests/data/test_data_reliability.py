"""Image folders as a user fills them: empty class folders, rotated JPEGs, 16-bit PNGs,
broken files; and a held-out split that never takes a whole class."""

import os
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from edmjax.data import sources


def _png16_rgb(path, rgb):
  """Writes a 16-bit RGB PNG by hand (PIL cannot write 48-bit PNGs)."""
  h, w, _ = rgb.shape
  raw = b"".join(b"\x00" + rgb[i].astype(">u2").tobytes() for i in range(h))

  def chunk(tag, data):
    return (struct.pack(">I", len(data)) + tag + data
            + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF))

  png = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
         + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
  with open(path, "wb") as f:
    f.write(png)


def _save(path, array):
  os.makedirs(os.path.dirname(path), exist_ok=True)
  Image.fromarray(array).save(path)


def test_an_empty_class_folder_is_not_a_class(tmp_path):
  for cls in ("cat", "dog"):
    _save(str(tmp_path / cls / "a.png"), np.zeros((8, 8, 3), np.uint8))
  os.makedirs(tmp_path / "empty")
  os.makedirs(tmp_path / "nested_empty" / "deeper")
  with pytest.warns(UserWarning, match=r"\['empty', 'nested_empty'\] hold no image file"):
    src = sources.image_folder_source(str(tmp_path), 8)
  assert src.num_classes == 2 and src.class_names == ("cat", "dog")
  assert sorted(src.labels.tolist()) == [0, 1]


def test_exif_orientation_is_applied(tmp_path):
  # A 'portrait' stored sideways: 6 means the viewer turns it 90° clockwise.
  stored = np.zeros((16, 24, 3), np.uint8)
  stored[:8, :, 0] = 255  # top half red, as stored
  im = Image.fromarray(stored)
  exif = im.getexif()
  exif[0x0112] = 6
  path = str(tmp_path / "rotated.jpg")
  im.save(path, exif=exif, quality=100)
  array, scale = sources.read_image_file(path, 3)
  assert array.shape == (24, 16, 3) and scale == 255.0
  # Turned clockwise, the stored top half becomes the right-hand half.
  assert array[:, 10:, 0].mean() > 200 and array[:, :6, 0].mean() < 50


def test_16_bit_pngs_keep_their_range(tmp_path):
  grey = np.full((4, 4), 16384, np.uint16)  # a quarter of full scale, dark
  Image.fromarray(grey).save(tmp_path / "g16.png")
  array, scale = sources.read_image_file(str(tmp_path / "g16.png"), 1)
  np.testing.assert_allclose(array / scale, 16384 / 65535)
  # Through a source: a dark 16-bit image is dark, not clipped to white.
  src = sources.image_folder_source(str(tmp_path), 4, channels=3)
  images, _ = src.get(np.arange(1))
  np.testing.assert_allclose(images, 2 * 16384 / 65535 - 1, atol=1e-6)

  rgb = np.stack([np.full((3, 3), v, np.uint16) for v in (30000, 60000, 1000)], -1)
  _png16_rgb(str(tmp_path / "c16.png"), rgb)
  array, scale = sources.read_image_file(str(tmp_path / "c16.png"), 3)
  np.testing.assert_allclose(array[0, 0] / scale, np.array([30000, 60000, 1000]) / 65535,
                             atol=1 / 255)


@pytest.mark.parametrize("content", [b"", b"not an image at all", None])
def test_unreadable_files_are_named(tmp_path, content):
  path = tmp_path / "bad.png"
  if content is None:  # a truncated PNG
    Image.fromarray(np.zeros((64, 64, 3), np.uint8) + 7).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
  else:
    path.write_bytes(content)
  with pytest.raises(ValueError, match=r"Cannot read image file .*bad\.png"):
    sources.read_image_file(str(path), 3)
  with pytest.raises(ValueError, match=r"Cannot read image file .*missing\.png.*does not "
                                       "exist"):
    sources.read_image_file(str(tmp_path / "missing.png"), 3)


def test_holdout_is_stratified_and_never_a_whole_class():
  # Class folders list class by class: the last 10 files are all of class 2.
  labels = np.repeat([0, 1, 2], [50, 30, 10])
  train, held = sources.holdout_split(90, 18, labels=labels, seed=0)
  assert len(held) == 18 and len(train) == 72
  assert np.bincount(labels[held], minlength=3).tolist() == [10, 6, 2]
  assert set(np.unique(labels[train])) == {0, 1, 2}
  assert not np.array_equal(held, np.arange(72, 90))
  assert np.array_equal(np.sort(np.concatenate([train, held])), np.arange(90))
  # Seeded: the same seed, the same split; another seed, another one.
  assert np.array_equal(held, sources.holdout_split(90, 18, labels=labels, seed=0)[1])
  assert not np.array_equal(held, sources.holdout_split(90, 18, labels=labels, seed=1)[1])
  # A tiny class keeps one training example even when its share rounds up.
  t, h = sources.holdout_split(6, 4, labels=np.array([0, 0, 0, 0, 1, 1]), seed=0)
  assert set(np.asarray([0, 0, 0, 0, 1, 1])[t]) == {0, 1}
  with pytest.raises(ValueError, match=r"would hold out every example of a class"):
    sources.holdout_split(4, 3, labels=np.array([0, 0, 1, 1]))
  with pytest.raises(ValueError, match=r"data.holdout=90 leaves no training examples"):
    sources.holdout_split(90, 90)


def test_split_holdout_on_a_folder_and_in_memory(tmp_path):
  for cls, n in (("a", 6), ("b", 3)):
    for i in range(n):
      _save(str(tmp_path / cls / f"{i}.png"), np.full((4, 4, 3), 40 * i, np.uint8))
  src = sources.image_folder_source(str(tmp_path), 4)
  train, held = sources.split_holdout(src, 3, seed=0)
  assert isinstance(train, sources.Subset) and len(train) == 6 and held.shape == (3, 4, 4, 3)
  _, labels = train.get(np.arange(len(train)))
  assert set(labels.tolist()) == {0, 1}
  ds = sources.to_dataset(src)
  train_ds, held_ds = sources.split_holdout(ds, 3, seed=0)
  assert isinstance(train_ds, sources.Dataset) and len(train_ds) == 6
  np.testing.assert_array_equal(held_ds, held)
  assert sources.split_holdout(ds, 0) == (ds, None)
