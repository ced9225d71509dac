"""Facts about the photograph patches: splits, the extra photographs, augmentation."""

import os
import subprocess
import sys

import numpy as np
import pytest

from edmjax.data import patches
from edmjax.sr import train as sr_train

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_photo_sets_hold_out_the_evaluation_photograph():
  colour, held = patches.photo_split("chelsea")
  assert held == "chelsea" and "chelsea" not in colour
  assert set(colour) == set(patches.PHOTOGRAPHS) - {"chelsea"}
  every, _ = patches.photo_split("chelsea", "all")
  assert set(every) == set(colour) | set(patches.EXTRA_PHOTOGRAPHS)
  natural, _ = patches.photo_split("flower", "natural")
  assert "flower" not in natural and "chelsea" in natural
  assert not {"immunohistochemistry", "hubble_deep_field", "retina"} & set(natural)


@pytest.mark.parametrize("call, match", [
    (lambda: patches.photo_split("chelsea", "everything"), "photo_set='everything'"),
    (lambda: patches.photo_split("lena"), "holdout='lena'"),
    (lambda: patches.load_photograph("lena"), "photograph='lena'"),
    (lambda: patches.PatchSource([np.zeros((8, 8, 3))], 4, augment="rot45"), "augment"),
    (lambda: sr_train.SRDataConfig(augment="rot45"), "data.augment='rot45'"),
    (lambda: sr_train.SRDataConfig(photo_set="x"), "data.photo_set='x'"),
])
def test_bad_choices_are_named(call, match):
  with pytest.raises(ValueError, match=match):
    call()


@pytest.mark.parametrize("name, shape", [("china", (1, 427, 640, 3)),
                                         ("camera", (1, 512, 512, 3))])
def test_extra_photographs_load_offline_as_rgb_in_range(name, shape):
  img = patches.load_photograph(name)
  assert img.shape == shape and img.dtype == np.float32
  assert -1.0 <= img.min() < img.max() <= 1.0
  if name == "camera":  # greyscale: three equal channels
    np.testing.assert_array_equal(img[..., 0], img[..., 2])


def _dihedral(img):
  out = []
  for t in (img, img.transpose(1, 0, 2)):
    for f in (t, t[::-1], t[:, ::-1], t[::-1, ::-1]):
      out.append(f)
  return out


@pytest.mark.parametrize("augment, distinct", [("hflip", 2), ("dihedral", 8)])
def test_augmentation_draws_the_flips_and_quarter_turns(augment, distinct):
  rng = np.random.default_rng(0)
  img = rng.uniform(-1, 1, (6, 6, 3)).astype(np.float32)
  src = patches.PatchSource([img], 6, seed=3, augment=augment)
  crops, labels = src.get(np.arange(64))
  assert crops.shape == (64, 6, 6, 3) and not labels.any()
  transforms = _dihedral(img)
  index = [[np.array_equal(c, t) for t in transforms].index(True) for c in crops]
  assert len(set(index)) == distinct
  np.testing.assert_array_equal(src.get(np.arange(64))[0], crops)  # a pure function of i


def test_sweep_cli_parses_variants_and_has_help():
  sys.path.insert(0, os.path.join(ROOT, "experiments"))
  import sr_sweep  # pylint: disable=g-import-not-at-top
  assert sr_sweep.parse_variant("base=") == ("base", [])
  assert sr_sweep.parse_variant("deep=net.channel_mult=1:2:2:2,optim.lr=1e-3") == (
      "deep", ["net.channel_mult=1,2,2,2", "optim.lr=1e-3"])
  with pytest.raises(ValueError, match="NAME=field=value"):
    sr_sweep.parse_variant("nameonly")
  out = subprocess.run([sys.executable, os.path.join(ROOT, "experiments", "sr_sweep.py"),
                        "--help"], capture_output=True, text=True, check=True,
                       timeout=120).stdout
  assert "--eval-at" in out and "--variant" in out


def test_linear_baseline_beats_bicubic_on_the_held_out_photograph():
  sys.path.insert(0, os.path.join(ROOT, "experiments"))
  import sr_sweep  # pylint: disable=g-import-not-at-top
  import train_sr3  # pylint: disable=g-import-not-at-top
  lin = sr_sweep.linear_baseline(train_sr3.photos_4x(), 3)
  # Measured: bicubic 30.12 dB, the 3x3 linear filter 30.44 dB on chelsea (4x, area).
  assert abs(lin["bicubic"] - 30.12) < 0.01
  assert 0.25 < lin["linear"] - lin["bicubic"] < 0.45
