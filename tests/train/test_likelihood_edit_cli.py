"""experiments/likelihood.py and experiments/edit.py on a tiny run, through main(argv).

Facts: likelihood.py reports the mean, standard error and NFE of what
`likelihood.bits_per_dim` gives for the run's held-out images with per-image keys, in
one batch, to the solves' tolerance (so --batch does not change a value); edit.py returns the kept pixels of IN.png
bit for bit and edits only the masked ones, and SDEdit at a small σ_start stays near
the input; bad input exits with status 2 and a message naming the option, before
anything is loaded.
"""

import fcntl
import json
import os
import sys
import tempfile

import jax
import numpy as np
import pytest
from PIL import Image

from edmjax import editing, likelihood
from edmjax.data import sources
from edmjax.train import checkpoint, loop
from edmjax.train import config as C

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "experiments"))
import edit  # noqa: E402  pylint: disable=wrong-import-position
import likelihood as likelihood_cli  # noqa: E402  pylint: disable=wrong-import-position

CACHE = os.path.join(tempfile.gettempdir(), "edmjax-test-jax-cache")
jax.config.update("jax_compilation_cache_dir", CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)

TOL = 1e-3
FAST = ["--rtol", str(TOL), "--atol", str(TOL), "--no-progress", "--cpu-devices", "0"]


def _make_run(workdir):
  """An EDM run on the digits with 6 images held out, stopped before its first step,
  its initial weights saved as the checkpoint of step 0: the scripts read any
  checkpoint, and no train step is compiled."""
  cfg = C.TrainConfig(
      net=C.NetConfig(model_channels=8, channel_mult=(1, 2), num_blocks=1,
                      attn_resolutions=(), dropout=0.0),
      data=C.DataConfig(name="digits", holdout=6),
      loss=C.LossConfig(objective="edm", sigma_data=0.75),
      sample=C.SampleConfig(num_images=0), batch_size=16, total_steps=1)
  result = loop.train(cfg, workdir, stop_at_step=0, progress=False, log=None)
  manager = checkpoint.make_manager(workdir, keep=1)
  checkpoint.save(manager, 0, result.state)
  checkpoint.close(manager)


@pytest.fixture(scope="module")
def run(tmp_path_factory, worker_id):
  """The run's work directory, made once per session and shared by xdist's workers."""
  if worker_id == "master":
    workdir = tmp_path_factory.mktemp("run") / "digits"
    _make_run(str(workdir))
    return str(workdir)
  shared = tmp_path_factory.getbasetemp().parent      # this session's, all workers
  workdir = shared / "likelihood_edit_run"
  with open(shared / "likelihood_edit_run.lock", "w", encoding="utf-8") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)                  # the other worker waits here
    if not (shared / "likelihood_edit_run.done").exists():
      _make_run(str(workdir))
      (shared / "likelihood_edit_run.done").touch()
  return str(workdir)


def _report(run, tmp_path, *extra):
  out = str(tmp_path / "report.json")
  assert likelihood_cli.main(["--workdir", run, "--out", out, *FAST, *extra]) == 0
  with open(out, encoding="utf-8") as f:
    return json.load(f)


def test_likelihood_report_is_bits_per_dim_of_the_heldout_images(run, tmp_path):
  # Batches of 2 (the last one padded); the library below takes all 5 at once.
  report = _report(run, tmp_path, "--num-images", "5", "--batch", "2")
  per_image = np.asarray(report["per_image"]["bits_per_dim"])
  assert report["num_images"] == 5 and per_image.shape == (5,)
  assert report["bits_per_dim"]["mean"] == pytest.approx(per_image.mean(), rel=1e-12)
  assert report["bits_per_dim"]["stderr"] == pytest.approx(
      per_image.std(ddof=1) / np.sqrt(5), rel=1e-9)
  assert report["nfe"]["min"] >= 2 and report["nfe"]["mean"] <= report["nfe"]["max"]
  # The same numbers from the library in one batch of 5, image i keyed by
  # fold_in(key(seed), i): the batch size does not change a value.
  cfg, model, _ = loop.load_run(run)
  images = editing.to_uint8(loop.load_data(cfg).heldout[:5])
  keys = jax.vmap(lambda i: jax.random.fold_in(jax.random.key(0), i))(np.arange(5))
  want = likelihood.bits_per_dim(model, images, keys, divergence="hutchinson", rtol=TOL,
                                 atol=TOL)
  # To the solves' tolerance: the script's device split (one image per device here)
  # rounds the net's convolutions differently, which can move an adaptive step
  # (measured: 3 of 5 equal to 1e-6, 2 off by 1.9e-5 relative at rtol 1e-2).
  np.testing.assert_allclose(per_image, np.asarray(want), rtol=TOL)


def test_likelihood_dry_run_help_and_bad_input(run, capsys):
  assert likelihood_cli.main(["--workdir", run, "--dry-run"]) == 0
  plan = json.loads(capsys.readouterr().out)
  assert plan["num_images"] == 6 and plan["divergence"] == "hutchinson"
  with pytest.raises(SystemExit) as e:
    likelihood_cli.main(["--help"])
  assert e.value.code == 0
  assert "Examples:" in capsys.readouterr().out
  for argv, message in ((["--rtol", "0"], "--rtol"), (["--num-images", "0"], "--num-images"),
                        (["--sigma-min", "90"], "--sigma-min"),
                        (["--divergence", "trace"], "--divergence")):
    with pytest.raises(SystemExit) as e:
      likelihood_cli.main(["--workdir", run, *argv])
    assert e.value.code == 2 and message in capsys.readouterr().err
  with pytest.raises(SystemExit) as e:       # checked before the run is restored
    likelihood_cli.main(["--workdir", run, "--out", "/sys/edmjax-test-out/r.json"])
  assert e.value.code == 2 and "--out: cannot write into" in capsys.readouterr().err
  with pytest.raises(SystemExit) as e:
    likelihood_cli.main(["--workdir", os.path.dirname(run)])
  assert e.value.code == 2 and "config.json" in capsys.readouterr().err


def _png(path, pixels):
  Image.fromarray(pixels).save(path)
  return str(path)


def test_edit_inpaints_only_the_white_pixels_and_sdedit_stays_near(run, tmp_path):
  digit = editing.to_uint8(sources.load_digits().images[0])[..., 0]      # (8, 8) uint8
  mask = np.zeros((8, 8), np.uint8)
  mask[:, 4:] = 255                                                        # regenerate right
  src = _png(tmp_path / "in.png", digit)
  out = str(tmp_path / "out.png")
  assert edit.main([src, out, "--workdir", run, "--mask", _png(tmp_path / "m.png", mask),
                    "--sampler", "euler", "--opt", "num_steps=4"]) == 0
  got = np.asarray(Image.open(out))
  assert got.shape == (8, 8) and got.dtype == np.uint8
  np.testing.assert_array_equal(got[:, :4], digit[:, :4])                  # kept exactly
  assert np.any(got[:, 4:] != digit[:, 4:])                                # generated
  # SDEdit at a small σ_start: within a few levels of the input everywhere.
  assert edit.main([src, out, "--workdir", run, "--sigma-start", "0.01",
                    "--sampler", "euler", "--opt", "num_steps=2"]) == 0
  near = np.asarray(Image.open(out)).astype(int)
  assert np.abs(near - digit).max() <= 8


def test_edit_help_dry_run_and_bad_input_exits_2_naming_it(run, tmp_path, capsys):
  with pytest.raises(SystemExit) as e:
    edit.main(["--help"])
  assert e.value.code == 0
  assert "Examples:" in capsys.readouterr().out
  src = _png(tmp_path / "in.png", np.zeros((8, 8), np.uint8))
  big = _png(tmp_path / "big.png", np.zeros((16, 16), np.uint8))
  out = str(tmp_path / "out.png")
  cases = (([src, out, "--workdir", run], "--sigma-start"),
           ([big, out, "--workdir", run, "--sigma-start", "1"], "16×16"),
           ([src, out, "--workdir", run, "--mask", src, "--resample", "3", "--sampler",
             "dpmpp_2m"], "--resample"),
           ([src, out, "--workdir", run, "--sigma-start", "1", "--sampler", "ddim"],
            "does not start from an image"),
           ([src, out, "--workdir", run, "--sigma-start", "1", "--class", "3"],
            "unconditional"))
  for argv, message in cases:
    with pytest.raises(SystemExit) as e:
      edit.main(argv)
    assert e.value.code == 2, argv
    assert message in capsys.readouterr().err, argv
  with pytest.raises(SystemExit) as e:
    edit.main([src, "/sys/edmjax-test-out/out.png", "--workdir", run, "--sigma-start", "1"])
  assert e.value.code == 2 and "OUT.png: cannot write into" in capsys.readouterr().err
  assert edit.main([src, out, "--workdir", run, "--sigma-start", "1", "--dry-run"]) == 0
  assert json.loads(capsys.readouterr().out)["edit"] == "sdedit"
  assert not os.path.exists(out)
