"""Every experiment script through its main(argv): a bad option is one paragraph naming
the option, its value and what is allowed, exit status 2, no traceback, before anything
slow (no run, network or data is read for these)."""

import os
import sys

import pytest

from edmjax import cli

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "experiments"))
# pylint: disable=wrong-import-position
import diagnose  # noqa: E402
import edm_vs_ddpm  # noqa: E402
import eval_fid  # noqa: E402
import generate  # noqa: E402
import sample  # noqa: E402
import train_sr3  # noqa: E402
# pylint: enable=wrong-import-position

UNWRITABLE = "/sys/edmjax-test-out"  # /sys refuses new folders even to root


def _error(capsys, main, argv):
  with pytest.raises(SystemExit) as info:
    main(argv)
  assert info.value.code == 2
  err = capsys.readouterr().err
  assert "Traceback" not in err
  return " ".join(err.split())


@pytest.fixture(scope="module")
def fake_run(tmp_path_factory):
  """A folder with a config.json: enough for the checks that come before the restore."""
  workdir = tmp_path_factory.mktemp("run")
  (workdir / "config.json").write_text("{}")
  return str(workdir)


@pytest.mark.parametrize("seeds, named", [
    ("5-2", "--seeds='5-2': the range 5-2 is empty; write LO-HI with LO <= HI."),
    ("0-x", "--seeds='0-x': 'x' is not a seed"),
    ("-3", "--seeds='-3': seed -3 is not allowed"),
    ("0-4294967296", "seed 4294967296 is not allowed; seeds lie in [0, 2**32 - 1]"),
    (",", "--seeds=',' names no seed"),
])
def test_sample_and_generate_refuse_bad_seeds_before_the_restore(capsys, seeds, named):
  # No --workdir / --network file exists: the seeds are checked first.
  assert named in _error(capsys, sample.main, ["--workdir", "/no/such/run", "--seeds", seeds])
  assert named in _error(capsys, generate.main, ["--network", "/no/such.pkl",
                                                 "--outdir", "/no/out", "--seeds", seeds])


def test_parse_seeds_reads_ranges_and_lists():
  assert sample.parse_seeds("0-3,10, 12") == [0, 1, 2, 3, 10, 12]


def test_batch_zero(capsys):
  assert "--batch=0 is not allowed; it must be >= 1" in _error(
      capsys, sample.main, ["--workdir", "/no/such/run", "--batch", "0"])
  assert "--batch=0 is not allowed; it must be >= 1" in _error(
      capsys, generate.main, ["--network", "/no/such.pkl", "--outdir", "/no", "--batch", "0"])


def test_an_output_folder_that_cannot_be_written_is_refused_before_the_restore(
    capsys, fake_run):
  err = _error(capsys, sample.main, ["--workdir", fake_run, "--out", UNWRITABLE + "/grid"])
  assert f"--out: cannot write into '{UNWRITABLE}'" in err


@pytest.mark.parametrize("argv, named", [
    (["--num-images", "1"], "--num-images=1 is not allowed; a Fréchet distance needs"),
    (["--num-images", "0"], "--num-images=0 is not allowed"),
    (["--batch", "0"], "--batch=0 is not allowed"),
    (["--ref", "/no/such/ref.npz"], "--ref='/no/such/ref.npz' does not exist"),
])
def test_eval_fid_checks_its_options_before_sampling(capsys, fake_run, argv, named):
  for dry in ([], ["--dry-run"]):
    assert named in _error(capsys, eval_fid.main, ["fd", "--checkpoint", fake_run] + argv + dry)


@pytest.mark.parametrize("argv, named", [
    (["--sigma-min", "80", "--sigma-max", "1"],
     "--sigma-min=80.0 must be smaller than --sigma-max=1.0"),
    (["--sigma-max", "inf"], "--sigma-max=inf is not allowed; it must be a finite number > 0"),
    (["--sigma-min", "0"], "--sigma-min=0.0 is not allowed"),
    (["--num-sigmas", "1"], "--num-sigmas=1 is not allowed; it must be >= 2"),
    (["--num-images", "0"], "--num-images=0 is not allowed"),
])
def test_diagnose_checks_sigma_ranges_before_reading_the_run(capsys, argv, named):
  assert named in _error(capsys, diagnose.main, ["/no/such/run", "--dry-run"] + argv)


@pytest.mark.parametrize("argv, named", [
    (["--eval-only"], "--eval-only: --workdir="),
    (["--set", "data.patch=10", "--dry-run"],
     "data.patch=10 is not allowed: it must be a multiple of sr.degrade.scale=4"),
    (["--set", "sr.degrade.scale=3", "--dry-run"], "scale=3 is not supported; allowed values: 2, 4, 8"),
    (["--set", "sr.foo=1", "--dry-run"], "sr.foo"),
    (["--sigma-starts", "0,x", "--dry-run"], "--sigma-starts='0,x' is not allowed"),
])
def test_train_sr3_cases(capsys, tmp_path, argv, named):
  err = _error(capsys, train_sr3.main, ["--config", "tiny", "--workdir",
                                        str(tmp_path / "empty")] + argv)
  assert named in err
  assert not os.path.exists(tmp_path / "empty")


@pytest.mark.parametrize("argv, named", [
    (["--models", "edm,foo"], "--models='edm,foo': 'foo' is not a model"),
    (["--budget-minutes", "0"], "--budget-minutes=0.0 is not allowed"),
    (["--num-images", "1"], "--num-images=1 is not allowed; it must be >= 2"),
    (["--set", "net.dropout=1.5"], "net.dropout=1.5 is not allowed"),
])
def test_edm_vs_ddpm_checks_everything_before_training(capsys, argv, named):
  assert named in _error(capsys, edm_vs_ddpm.main, argv + ["--dry-run"])


def test_debug_shows_the_traceback_of_a_user_error():
  with pytest.raises(cli.UsageError, match="the range 5-2 is empty"):
    sample.main(["--workdir", "/no/such/run", "--seeds", "5-2", "--debug"])


def test_every_script_main_goes_through_the_entry_point():
  import importlib  # pylint: disable=g-import-not-at-top
  scripts = sorted(f[:-3] for f in os.listdir(os.path.join(ROOT, "experiments"))
                   if f.endswith(".py"))
  wired = []
  for name in scripts:
    module = importlib.import_module(name)
    if hasattr(module, "main"):
      assert getattr(module.main, "__wrapped__", None) is not None, name
      wired.append(name)
  assert {"sample", "generate", "eval_fid", "diagnose", "train", "train_sr3", "upscale",
          "edm_vs_ddpm", "edm2_study", "reconstruct_phema"} <= set(wired)


def test_reconstruct_phema_without_snapshots(capsys, tmp_path):
  import reconstruct_phema  # pylint: disable=g-import-not-at-top
  err = _error(capsys, reconstruct_phema.main, ["--workdir", str(tmp_path), "--std", "0"])
  assert "--std 0.0 is not allowed" in err


def test_cpu_devices_that_do_not_divide_the_batch_are_an_error_not_one_device(capsys):
  import train  # pylint: disable=g-import-not-at-top
  err = _error(capsys, train.main, ["--cpu-devices", "2", "--set", "batch_size=7",
                                    "--dry-run"])
  assert "devices=2 (--cpu-devices) does not divide the microbatch (batch_size=7)" in err
  err = _error(capsys, train_sr3.main, ["--config", "tiny", "--workdir", "/no/such/run",
                                        "--cpu-devices", "3", "--dry-run"])
  assert "devices=3 (--cpu-devices) does not divide the microbatch (batch_size=4)" in err
