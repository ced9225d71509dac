"""Data sources: real embedded sets, TFDS through mock_data, image folders."""

import os

import numpy as np
import pytest

from edmjax import data


def test_digits_are_the_1797_real_digits_in_unit_range():
  ds = data.load_digits()
  assert len(ds) == 1797
  assert ds.images.shape == (1797, 8, 8, 1) and ds.images.dtype == np.float32
  assert ds.images.min() == -1.0 and ds.images.max() == 1.0
  assert ds.num_classes == 10
  np.testing.assert_array_equal(np.unique(ds.labels), np.arange(10))
  # 16 grey levels map linearly onto [-1, 1]: values are multiples of 1/8.
  np.testing.assert_allclose(ds.images * 8, np.round(ds.images * 8), atol=1e-6)


def test_digits_resized_keep_range_labels_and_channels():
  ds = data.load_digits(resolution=16, channels=3)
  assert ds.images.shape == (1797, 16, 16, 3)
  assert ds.images.min() >= -1.0 and ds.images.max() <= 1.0
  np.testing.assert_array_equal(ds.images[..., 0], ds.images[..., 2])
  np.testing.assert_array_equal(ds.labels, data.load_digits().labels)


def test_lfw_subset_has_100_faces_then_100_non_faces():
  ds = data.load_lfw_subset(resolution=16)
  assert ds.images.shape == (200, 16, 16, 1)
  assert ds.images.min() >= -1.0 and ds.images.max() <= 1.0
  np.testing.assert_array_equal(ds.labels[:100], 0)
  np.testing.assert_array_equal(ds.labels[100:], 1)
  assert ds.class_names == ("face", "non-face") and ds.num_classes == 2


@pytest.mark.parametrize("call, words", [
    (lambda: data.load_dataset("imagenet_typo"),
     ["'imagenet_typo'", "'digits'", "'tfds:<name>'"]),
    (lambda: data.load_digits(resolution=0), ["resolution=0", ">= 1"]),
    (lambda: data.load_dataset("digits", resolution=-4), ["resolution=-4"]),
    (lambda: data.load_digits(channels=2), ["channels=2", "1, 3"]),
    (lambda: data.load_digits(resample="cubic"), ["'cubic'", "'lanczos'"]),
])
def test_bad_input_raises_value_error_naming_value_and_allowed(call, words):
  with pytest.raises(ValueError) as err:
    call()
  for word in words:
    assert word in str(err.value)


# ------------------------------------------------------------------------------
# TFDS (offline, through tfds.testing.mock_data).


@pytest.fixture
def tfds_mock():
  tfds = pytest.importorskip("tensorflow_datasets")
  with tfds.testing.mock_data(num_examples=12,
                              policy=tfds.testing.MockPolicy.USE_CODE):
    yield tfds


def test_tfds_mnist_decodes_to_nhwc_unit_range_with_labels(tfds_mock):
  src = data.load_dataset("mnist", split="train")
  raw = tfds_mock.data_source("mnist", split="train")
  assert len(src) == 12 and src.num_classes == 10
  images, labels = src.get(np.arange(12))
  assert images.shape == (12, 28, 28, 1) and images.dtype == np.float32
  expected = np.stack([raw[i]["image"] for i in range(12)]) / 127.5 - 1
  np.testing.assert_allclose(images, expected, atol=1e-6)
  np.testing.assert_array_equal(labels, [raw[i]["label"] for i in range(12)])


def test_tfds_resize_channels_and_centre_crop(tfds_mock):
  src = data.tfds_source("cifar10", split="test", resolution=16, channels=1)
  images, labels = src.get(np.array([3, 0, 5]))
  assert images.shape == (3, 16, 16, 1)
  assert images.min() >= -1 and images.max() <= 1
  assert labels.dtype == np.int32 and np.all((labels >= 0) & (labels < 10))
  # celeb_a is 218 x 178 with no `label`: centre crop to 178 x 178, no classes.
  celeb = data.tfds_source("celeb_a")
  raw = tfds_mock.data_source("celeb_a", split="train")[2]["image"]
  image, label = celeb.get(np.array([2]))
  assert celeb.num_classes == 0 and label[0] == 0
  np.testing.assert_allclose(image[0], raw[20:198] / 127.5 - 1, atol=1e-6)


def test_tfds_unknown_name_raises_value_error(tfds_mock):
  with pytest.raises(ValueError, match="no_such_set"):
    data.load_dataset("tfds:no_such_set")


def test_tfds_batches_through_the_pipeline(tfds_mock):
  src = data.tfds_source("fashion_mnist", resolution=8)
  batch = data.batch_at(src, 10, batch_size=4, seed=1)  # wraps into epoch 1
  assert batch.images.shape == (4, 8, 8, 1) and batch.labels.shape == (4,)


# ------------------------------------------------------------------------------
# Image folders.


def _write_folder(root):
  from PIL import Image
  rng = np.random.default_rng(0)
  os.makedirs(root / "dogs")
  os.makedirs(root / "cats" / "nested")
  rgb = rng.integers(0, 256, (12, 20, 3), dtype=np.uint8)  # not square
  Image.fromarray(rgb).save(root / "dogs" / "a.png")
  Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(
      root / "dogs" / "b.jpg", quality=95)
  rgba = np.zeros((8, 8, 4), np.uint8)
  rgba[..., 0] = 255  # red, but only the left half is opaque
  rgba[:, :4, 3] = 255
  Image.fromarray(rgba).save(root / "cats" / "c.png")
  grey = np.full((8, 8), 64, np.uint8)
  Image.fromarray(grey).save(root / "cats" / "nested" / "d.png")
  return rgb


def test_image_folder_labels_from_sorted_subfolders(tmp_path):
  rgb = _write_folder(tmp_path)
  ds = data.load_image_folder(str(tmp_path), 8, channels=3)
  assert ds.class_names == ("cats", "dogs") and ds.num_classes == 2
  assert ds.images.shape == (4, 8, 8, 3) and ds.images.dtype == np.float32
  np.testing.assert_array_equal(ds.labels, [0, 0, 1, 1])
  assert ds.images.min() >= -1 and ds.images.max() <= 1
  # RGBA over white: opaque red on the left, white where transparent.
  np.testing.assert_allclose(ds.images[0, :, :4], np.broadcast_to(
      np.array([1.0, -1.0, -1.0], np.float32), (8, 4, 3)), atol=1e-6)
  np.testing.assert_allclose(ds.images[0, :, 4:], 1.0, atol=1e-6)
  # Grey repeated to RGB.
  np.testing.assert_allclose(ds.images[1], 64 / 127.5 - 1, atol=1e-6)
  # Native size: the 12 x 20 PNG is centre-cropped to its middle 12 x 12.
  native = data.load_image_folder(str(tmp_path), 12, channels=3)
  np.testing.assert_allclose(native.images[2], rgb[:, 4:16] / 127.5 - 1,
                             atol=1e-6)


def test_image_folder_grey_channels_and_flat_folder(tmp_path):
  _write_folder(tmp_path)
  grey = data.load_image_folder(str(tmp_path), 4, channels=1)
  assert grey.images.shape == (4, 4, 4, 1)
  flat = data.load_image_folder(str(tmp_path / "dogs"), 4)
  assert flat.num_classes == 0 and list(flat.labels) == [0, 0]


def test_corrupt_image_raises_error_naming_the_file(tmp_path):
  _write_folder(tmp_path)
  bad = tmp_path / "dogs" / "broken.png"
  bad.write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
  with pytest.raises(ValueError, match="broken.png"):
    data.load_image_folder(str(tmp_path), 8)


def test_image_folder_bad_input(tmp_path):
  with pytest.raises(ValueError, match="does not exist"):
    data.image_folder_source(str(tmp_path / "missing"), 8)
  with pytest.raises(ValueError, match="no image files"):
    data.image_folder_source(str(tmp_path), 8)
  with pytest.raises(ValueError, match="resolution=0"):
    data.image_folder_source(str(tmp_path), 0)
