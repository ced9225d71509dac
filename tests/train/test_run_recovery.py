"""A work directory is never left unusable: the final sampling of a finished run can be
redone, a failed resume changes nothing on disk, metrics keep one row per step, and bad
settings are refused through train.py's main(argv) before anything slow."""

import fcntl
import json
import os
import sys

import jax
import pytest

from edmjax.train import checkpoint, loop, monitor

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "experiments"))
import train  # noqa: E402  pylint: disable=wrong-import-position

CACHE = os.path.join(__import__("tempfile").gettempdir(), "edmjax-test-jax-cache")
jax.config.update("jax_compilation_cache_dir", CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)

# A class-conditional digits run of 2 steps: tiny net, 4 grid images at 2 Heun steps.
TINY = ["net.model_channels=8", "net.channel_mult=1,2", "net.num_blocks=1",
        "net.attn_resolutions=()", "net.dropout=0", "batch_size=16", "total_steps=2",
        "log_every=1", "checkpoint_every=1", "keep_checkpoints=3", "sample.num_images=4",
        "sample.num_steps=2", "data.cond=true", "data.holdout=40", "loss.sigma_data=0.5"]


def _argv(workdir, *extra):
  args = ["--workdir", workdir, "--cpu-devices", "0", "--no-progress"]
  for s in TINY + list(extra):
    args += ["--set", s]
  return args


def _snapshot(workdir):
  """Every file under `workdir` with its bytes' size and mtime."""
  out = {}
  for root, _, files in os.walk(workdir):
    for name in files:
      p = os.path.join(root, name)
      st = os.stat(p)
      out[os.path.relpath(p, workdir)] = (st.st_size, st.st_mtime_ns)
  return out


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
  """A finished tiny run whose final sampling failed once and was redone by a rerun.

  Made once per test session: pytest-xdist workers share it through a folder of the
  session, under a lock (the workers' own folders are below it).
  """
  base = tmp_path_factory.getbasetemp()
  if os.environ.get("PYTEST_XDIST_WORKER"):
    base = base.parent
  with open(base / "run_recovery.lock", "w", encoding="utf-8") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    done = base / "run_recovery.json"
    if not done.exists():
      done.write_text(json.dumps(_finish(str(base / "run_recovery"))))
    workdir, after_failure, calls = json.loads(done.read_text())
  return workdir, tuple(after_failure), calls


def _finish(workdir):
  real = loop._write_samples  # pylint: disable=protected-access
  calls = []

  def failing(built, cfg, state, wd, step, lead):
    calls.append(step)
    if step == cfg.total_steps and len(calls) == 1:
      raise RuntimeError("final sampling failed (injected)")
    return real(built, cfg, state, wd, step, lead)

  loop._write_samples = failing  # pylint: disable=protected-access
  try:
    with pytest.raises(RuntimeError, match="injected"):
      train.main(_argv(workdir))
    mgr = checkpoint.make_manager(workdir, read_only=True)
    after_failure = (checkpoint.all_steps(mgr),
                     os.path.exists(os.path.join(workdir, "samples", "step_0000002.npz")))
    checkpoint.close(mgr)
    assert train.main(_argv(workdir)) == 0  # the rerun: resumes at step 2, samples again
  finally:
    loop._write_samples = real  # pylint: disable=protected-access
  return workdir, after_failure, calls


def test_final_sampling_of_a_finished_run_can_be_redone(finished):
  workdir, (steps, had_grid), calls = finished
  assert steps == [1, 2] and not had_grid  # killed after its final checkpoint
  assert calls == [2, 2]  # sampled again by the rerun, without training again
  assert os.path.exists(os.path.join(workdir, "samples", "step_0000002.npz"))
  with open(os.path.join(workdir, "neighbours.json"), encoding="utf-8") as f:
    assert json.load(f)["num_samples"] == 4


def test_metrics_rows_are_unique_per_step_after_a_rerun(finished):
  workdir = finished[0]
  steps = [r["step"] for r in monitor.read_metrics(os.path.join(workdir, "metrics.jsonl"))]
  assert steps == [1, 2]
  with open(os.path.join(workdir, "loss_per_sigma.csv"), encoding="utf-8") as f:
    assert [int(r.split(",")[0]) for r in f.read().splitlines()[1:]] == [1, 2]


def test_truncate_metrics_keeps_records_up_to_the_checkpoint(tmp_path):
  path = str(tmp_path / "metrics.jsonl")
  with open(path, "w", encoding="utf-8") as f:
    f.write("".join(json.dumps({"step": s}) + "\n" for s in (10, 20, 30)) + '{"step": 4')
  assert monitor.truncate_metrics(path, 20) == 2  # step 30 and the torn line
  assert [r["step"] for r in monitor.read_metrics(path)] == [10, 20]
  assert monitor.truncate_metrics(path, 20) == 0
  assert monitor.truncate_metrics(str(tmp_path / "none.jsonl"), 5) == 0


def test_a_failed_resume_leaves_config_and_checkpoints_untouched(finished, capsys):
  workdir = finished[0]
  before = _snapshot(workdir)
  with open(os.path.join(workdir, "config.json"), encoding="utf-8") as f:
    config_before = f.read()
  with pytest.raises(SystemExit) as info:
    train.main(_argv(workdir, "net.model_channels=16", "total_steps=3"))
  assert info.value.code == 2
  err = capsys.readouterr().err
  assert "Traceback" not in err and "checkpoint" in err.lower() and len(err) < 2000
  assert _snapshot(workdir) == before
  with open(os.path.join(workdir, "config.json"), encoding="utf-8") as f:
    assert f.read() == config_before


def test_sample_py_refuses_a_missing_step_and_a_class_the_run_lacks(finished, tmp_path,
                                                                    capsys):
  import sample  # pylint: disable=g-import-not-at-top
  workdir = finished[0]
  with pytest.raises(SystemExit) as info:
    sample.main(["--workdir", workdir, "--step", "777", "--cpu-devices", "0",
                 "--out", str(tmp_path / "grid")])
  assert info.value.code == 2
  err = " ".join(capsys.readouterr().err.split())
  assert "777" in err and "1, 2" in err and "Traceback" not in err
  for bad in ("99", "-1"):
    with pytest.raises(SystemExit) as info:
      sample.main(["--workdir", workdir, "--class", bad, "--cpu-devices", "0",
                   "--out", str(tmp_path / "grid")])
    assert info.value.code == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"--class {bad} is not allowed; the run has 10 classes (0 to 9)" in err


@pytest.mark.parametrize("setting, named", [
    ("total_steps=0", "total_steps=0 is not allowed"),
    ("keep_checkpoints=0", "keep_checkpoints"),
    ("keep_checkpoints=-1", "keep_checkpoints"),
    ("batch_size=abc", "batch_size"),
    ("sample.sigma_min=90", "sigma_min"),
    ("net.channel_mult=()", "net.channel_mult"),
    ("net.dropout=1.5", "net.dropout=1.5"),
])
def test_bad_settings_are_refused_before_the_data_loads(tmp_path, capsys, monkeypatch,
                                                        setting, named):
  monkeypatch.setattr(loop, "load_data", lambda *a, **k: pytest.fail("data loaded"))
  workdir = str(tmp_path / "w")
  for dry in ([], ["--dry-run"]):
    with pytest.raises(SystemExit) as info:
      train.main(_argv(workdir, setting) + dry)
    assert info.value.code == 2
    err = " ".join(capsys.readouterr().err.split())
    assert named in err and "Traceback" not in err and err.count("error:") == 1
  assert not os.path.exists(workdir)


def test_a_workdir_that_cannot_be_written_is_refused_before_the_data_loads(capsys,
                                                                          monkeypatch):
  monkeypatch.setattr(loop, "load_data", lambda *a, **k: pytest.fail("data loaded"))
  # /sys refuses new folders even to root (a chmod'ed folder does not stop root).
  with pytest.raises(SystemExit) as info:
    train.main(_argv("/sys/edmjax-test-workdir"))
  assert info.value.code == 2
  err = " ".join(capsys.readouterr().err.split())
  assert "cannot write '/sys/edmjax-test-workdir'" in err and "Traceback" not in err


def test_eval_fid_refuses_a_garbage_ref_before_sampling(finished, tmp_path, capsys,
                                                        monkeypatch):
  import eval_fid  # pylint: disable=g-import-not-at-top
  monkeypatch.setattr(eval_fid, "generate_images", lambda *a: pytest.fail("sampled"))
  garbage = tmp_path / "ref.npz"
  garbage.write_bytes(b"not an npz file at all")
  assert eval_fid.main(["fd", "--checkpoint", finished[0], "--ref", str(garbage),
                        "--num-images", "8", "--cpu-devices", "0"]) == 2
  err = " ".join(capsys.readouterr().err.split())
  assert f"--ref {garbage}" in err and "Traceback" not in err


def test_the_training_loop_holds_out_a_stratified_sample_not_the_last_class():
  import numpy as np  # pylint: disable=g-import-not-at-top
  from edmjax.data import sources  # pylint: disable=g-import-not-at-top
  from edmjax.train import config as C  # pylint: disable=g-import-not-at-top
  labels = np.repeat([0, 1], [30, 10]).astype(np.int32)  # class folders: sorted by class
  images = np.linspace(-1, 1, 40, dtype=np.float32)[:, None, None, None] * np.ones((1, 8, 8, 1),
                                                                                 np.float32)
  ds = sources.Dataset(images=images, labels=labels, num_classes=2, name="sorted")
  cfg = C.TrainConfig(data=C.DataConfig(name="digits", holdout=10))
  data = loop.load_data(cfg, source=ds)
  assert len(data.source) == 30 and data.heldout.shape == (10, 8, 8, 1)
  assert np.bincount(data.source.labels).tolist() == [22, 8]  # 3:1 in both parts
  assert not np.array_equal(data.heldout, images[30:])  # not the last files


def test_a_full_disk_while_logging_names_the_file(tmp_path):
  path = str(tmp_path / "metrics.jsonl")
  os.symlink("/dev/full", path)  # every write fails with ENOSPC, as on a full disk
  writer = monitor.MetricsWriter(path)
  with pytest.raises(OSError) as info:
    writer.write({"step": 1})
  assert info.value.errno == __import__("errno").ENOSPC and info.value.filename == path
  from edmjax import cli  # pylint: disable=g-import-not-at-top
  assert cli.is_user_error(info.value)
  assert cli.user_message(info.value).startswith(
      f"no space left on the device while writing {path!r}")
