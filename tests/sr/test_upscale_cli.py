"""experiments/upscale.py through main(argv): every bad option is refused before any work
(also with --dry-run), the tile batch fits the memory budget, EXIF and 16-bit inputs."""

import dataclasses
import json
import os
import sys

import jax
import numpy as np
import pytest
from PIL import Image

from edmjax.sr import model as model_lib
from edmjax.sr import train as sr_train
from edmjax.train import checkpoint, optim
from edmjax.train import config as config_lib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "experiments"))
import train_sr3  # noqa: E402  pylint: disable=wrong-import-position
import upscale  # noqa: E402  pylint: disable=wrong-import-position


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
  """A tiny 4x SR run (patch 16): its config and the initial state as checkpoint 1."""
  wd = str(tmp_path_factory.mktemp("sr"))
  cfg = dataclasses.replace(train_sr3.tiny(), loss=dataclasses.replace(
      train_sr3.tiny().loss, sigma_data=0.1))
  with open(os.path.join(wd, "config.json"), "w", encoding="utf-8") as f:
    f.write(config_lib.to_json(cfg))
  model = model_lib.build_sr_net(cfg.net, patch=16, channels=3, noise_aug=cfg.sr.noise_aug)
  key = jax.random.key_data(jax.random.key(0))
  init = jax.jit(lambda k: sr_train.init_sr_state(
      model, optim.make_optimizer(cfg.optim), k, (16, 16, 3), noise_aug=False))
  # Runs once: compile it without XLA's optimisation passes (as the train loop's init).
  state = init.lower(key).compile(
      compiler_options={"xla_backend_optimization_level": 0})(key)
  mgr = checkpoint.make_manager(wd, keep=2)
  checkpoint.save(mgr, 1, state)
  checkpoint.close(mgr)
  return wd


@pytest.fixture(scope="module")
def image(tmp_path_factory):
  path = str(tmp_path_factory.mktemp("img") / "in.png")
  rng = np.random.default_rng(0)
  Image.fromarray(rng.integers(0, 255, (12, 20, 3), dtype=np.uint8)).save(path)
  return path


def _error(capsys, argv):
  with pytest.raises(SystemExit) as exit_info:
    upscale.main(argv)
  assert exit_info.value.code == 2
  err = capsys.readouterr().err
  assert "Traceback" not in err
  return err


@pytest.mark.parametrize("extra, match", [
    (["--overlap", "16"], r"--overlap=16 must be smaller than the tile \(16\)"),
    (["--overlap", "-1"], r"--overlap=-1 must be >= 0"),
    (["--tile", "-8"], r"--tile=-8 must be >= 1"),
    (["--tile", "10"], r"--tile=10 must be a multiple of 2 and of the scale 4"),
    (["--steps", "0"], r"--steps=0 must be >= 1"),
    (["--sigma-start", "0"], r"--sigma-start=0.0 must be a finite number > 0"),
    (["--tile-memory", "-1"], r"--tile-memory=-1.0 must be a finite number of MiB > 0"),
    (["--tile-batch", "0"], r"--tile-batch=0 must be >= 1"),
    (["--mode", "full", "--steps", "1"], r"--mode full needs --steps >= 2"),
])
@pytest.mark.parametrize("dry", [True, False])
def test_bad_options_are_refused_before_any_work(workdir, image, tmp_path, capsys, extra,
                                                 match, dry):
  out = str(tmp_path / "out.png")
  err = _error(capsys, [image, out, "--workdir", workdir, *extra]
               + (["--dry-run"] if dry else []))
  assert __import__("re").search(match, err), err
  assert not os.path.exists(out)


@pytest.mark.parametrize("name, match", [
    ("out", r"OUT.png='.*out' has no extension"),
    ("out.xyz", r"has extension '.xyz'.*use .png"),
])
def test_an_output_path_without_a_known_extension_is_refused_at_once(workdir, image, tmp_path,
                                                                     capsys, name, match):
  err = _error(capsys, [image, str(tmp_path / name), "--workdir", workdir])
  assert __import__("re").search(match, err), err


def test_missing_input_and_unwritable_output(workdir, image, tmp_path, capsys):
  err = _error(capsys, [str(tmp_path / "nope.png"), str(tmp_path / "o.png"),
                        "--workdir", workdir])
  assert "IN.png=" in err and "does not exist" in err
  # The output's folder would be inside a file: found before the upscale, not after.
  err = _error(capsys, [image, os.path.join(image, "sub", "o.png"), "--workdir", workdir])
  assert "cannot write into" in err and "not a writable folder" in err
  err = _error(capsys, [image, str(tmp_path / "o.png"), "--workdir", str(tmp_path)])
  assert "--workdir=" in err and "has no config.json" in err


def test_dry_run_plans_tile_batches_within_the_memory_budget(workdir, image, tmp_path, capsys):
  out = str(tmp_path / "o.png")
  assert upscale.main([image, out, "--workdir", workdir, "--dry-run",
                       "--tile-memory", "2"]) == 0
  plan = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
  # 48x80 output, tiles of 16 every 8 pixels: 5 x 9 = 45 tiles.
  assert plan["output"] == [48, 80, 3] and plan["tiles"] == 45
  assert 1 <= plan["tile_batch"] < 45 and plan["tile_batch_mib"] <= 2.0
  assert plan["net_calls"] == -(-45 // plan["tile_batch"])
  assert not os.path.exists(out)


def test_exif_rotated_16_bit_input_is_upscaled_the_right_way_up(workdir, tmp_path, capsys):
  # Stored 4 x 8 sideways (EXIF 6: turn clockwise to view), 16-bit grey, top half
  # bright: viewed it is 8 x 4 with the bright half on the right.
  stored = np.full((4, 8), 8000, np.uint16)
  stored[:2] = 56000
  path = str(tmp_path / "in16.png")
  im = Image.fromarray(stored)
  exif = im.getexif()
  exif[0x0112] = 6
  im.save(path, exif=exif)
  results = []
  # Bicubic alone, then the net in batches of 2 tiles (σ_start small: close to bicubic).
  for mode in (["--mode", "bicubic"], ["--sigma-start", "0.05", "--tile-batch", "2"]):
    out = str(tmp_path / "out.png")
    assert upscale.main([path, out, "--workdir", workdir, "--no-progress", *mode]) == 0
    capsys.readouterr()
    result = np.asarray(Image.open(out).convert("L"), np.float32)
    assert result.shape == (32, 16)  # the viewed orientation, 4x
    right, left = result[:, 12:].mean(), result[:, :4].mean()
    # 16-bit levels kept: 56000/65535 -> ~218, 8000/65535 -> ~31 (not clipped to 255).
    assert abs(right - 255 * 56000 / 65535) < 25 and abs(left - 255 * 8000 / 65535) < 25
    results.append(result)
  assert np.abs(results[1] - results[0]).mean() < 10
