"""experiments/generate.py: NVlabs' generate.py options over edmjax, on a tiny network.

The network is the fixture's conditional DDPM++ (EDMPrecond), written as an NVlabs
pickle by `nvlabs_format`; samplers run 2-3 steps so each program compiles quickly.
"""

import os
import pathlib
import sys

import jax
import numpy as np
import pytest
from PIL import Image

from edmjax import keys, pretrained, sampling

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "experiments"))
import generate  # noqa: E402  pylint: disable=wrong-import-position

import test_pretrained as tp  # noqa: E402  pylint: disable=wrong-import-position


@pytest.fixture(scope="module")
def network(tmp_path_factory):
  tmp = tmp_path_factory.mktemp("net")
  return tp._write(tmp, tp.CONFIGS["edm_ddpmpp_cond"], tmp / "executed.flag")  # pylint: disable=protected-access


def _pngs(outdir, seeds, subdirs=False):
  return np.stack([np.asarray(Image.open(generate.image_path(str(outdir), s, subdirs)))
                   for s in seeds])


def test_latents_reproduce_sample_exactly(network, tmp_path):
  rng = np.random.default_rng(0)
  latents = rng.standard_normal((3, 8, 8, 3)).astype(np.float32)
  seeds, labels = np.array([7, 1003, 42]), np.array([2, 0, 9])
  np.savez(tmp_path / "z.npz", latents=latents, seeds=seeds, labels=labels)
  out = tmp_path / "out"
  assert generate.main(["--network", str(network), "--outdir", str(out), "--latents",
                        str(tmp_path / "z.npz"), "--sampler", "euler", "--steps", "3",
                        "--S_churn", "2",
                        "--batch", "2", "--subdirs", "--no-progress"]) == 0
  net = pretrained.load_network(network)
  spec = sampling.SamplerSpec("euler", num_steps=3, S_churn=2.0)
  _, sampler_keys = keys.seed_latents_and_keys(seeds, (8, 8, 3))
  want = jax.jit(lambda v, z, k, y: sampling.sample(net.make_model(v), z, k, spec,
                                                    class_labels=y))(
                                                        net.variables, latents,
                                                        sampler_keys, labels)
  np.testing.assert_array_equal(_pngs(out, seeds, subdirs=True), generate.to_uint8(want))
  assert os.path.isfile(out / "001000" / "001003.png")  # NVlabs' --subdirs naming


def test_a_seed_gives_the_same_image_at_any_batch_and_device_count(network, tmp_path):
  common = ["--network", str(network), "--seeds", "0-4", "--sampler", "euler",
            "--steps", "2", "--no-progress"]
  assert generate.main(common + ["--outdir", str(tmp_path / "a"), "--batch", "4"]) == 0
  assert generate.main(common + ["--outdir", str(tmp_path / "b"), "--batch", "3",
                                 "--cpu-devices", "1"]) == 0
  a, b = _pngs(tmp_path / "a", range(5)), _pngs(tmp_path / "b", range(5))
  np.testing.assert_array_equal(a, b)
  assert a.shape == (5, 8, 8, 3) and a.dtype == np.uint8 and len(np.unique(a)) > 50


def test_nvlabs_options_select_the_sampler():
  p = generate.build_parser()
  spec = generate.sampler_spec(p.parse_args(["--steps", "7", "--S_churn", "40", "--S_max",
                                             "50"]))
  assert spec == sampling.SamplerSpec("edm", num_steps=7, S_churn=40.0, S_max=50.0)
  spec = generate.sampler_spec(p.parse_args(["--solver", "euler", "--disc", "vp",
                                             "--schedule", "vp", "--scaling", "vp"]))
  assert spec == sampling.SamplerSpec("ablation", solver="euler", discretization="vp",
                                      schedule="vp", scaling="vp")
  spec = generate.sampler_spec(p.parse_args(["--sampler", "dpmpp_2m", "--steps", "10"]))
  assert spec == sampling.SamplerSpec("dpmpp_2m", num_steps=10)
  assert generate.image_path("o", 12345, True) == os.path.join("o", "012000", "012345.png")


@pytest.mark.parametrize("argv, message", [
    (["--sampler", "dpmpp_2m", "--S_churn", "1"], "--S_churn is not an option of sampler "
                                                  "'dpmpp_2m'"),
    (["--steps", "5", "--opt", "num_steps=6"], "repeats an NVlabs option"),
    (["--seeds", "5-3"], "the range 5-3 is empty"),
    (["--class", "10"], "--class 10 is not allowed; the network has 10 classes"),
    (["--network", "https://example.org/net.pkl"], "edmjax does not download"),
    (["--guidance-interval", "0.3,5"], "--guidance-interval needs guidance"),
    (["--guidance", "2", "--guidance-interval", "5,1"], "it needs 0 <= LO < HI"),
    (["--guidance", "inf"], "--guidance inf is not allowed"),
    (["--guide-network", "missing.pkl"], "--guide-network 'missing.pkl' does not exist"),
])
def test_bad_options_exit_2_naming_them(network, tmp_path, capsys, argv, message):
  base = ["--network", str(network), "--outdir", str(tmp_path), "--dry-run"]
  with pytest.raises(SystemExit) as e:
    generate.main(base + argv)
  assert e.value.code == 2
  assert message in capsys.readouterr().err


def test_help_and_dry_run(network, tmp_path, capsys):
  with pytest.raises(SystemExit) as e:
    generate.main(["--help"])
  assert e.value.code == 0
  text = capsys.readouterr().out
  for option in ("--network", "--outdir", "--seeds", "--subdirs", "--class", "--batch",
                 "--steps", "--sigma_min", "--sigma_max", "--rho", "--S_churn", "--S_min",
                 "--S_max", "--S_noise", "--solver", "--disc", "--schedule", "--scaling",
                 "--sampler", "--latents", "--dry-run", "Examples:"):
    assert option in text, option
  assert generate.main(["--network", str(network), "--outdir", str(tmp_path / "x"),
                        "--dry-run"]) == 0
  out = capsys.readouterr().out
  assert "EDMPrecond over SongUNet" in out and "64 images" in out and "35 NFE" in out
  assert not (tmp_path / "x").exists()
  assert not (network.parent / "executed.flag").exists()  # the embedded source never ran


def test_guidance_options(network, tmp_path):
  """A guide equal to the network gives D + w (D − D) = D whatever w (--guidance 1
  is tested with sample.py in tests/train/test_edm2_train.py); classifier-free
  guidance changes the images."""
  common = ["--network", str(network), "--seeds", "0-3", "--batch", "4", "--sampler",
            "euler", "--steps", "2", "--no-progress", "--cpu-devices", "0"]

  def run(name, *extra):
    assert generate.main(common + ["--outdir", str(tmp_path / name)] + list(extra)) == 0
    return _pngs(tmp_path / name, range(4))

  plain = run("plain")
  np.testing.assert_array_equal(
      run("self", "--guidance", "3", "--guide-network", str(network)), plain)
  cfg = run("cfg", "--guidance", "3", "--guidance-interval", "0.1,100")
  assert np.abs(cfg.astype(int) - plain).max() > 10
