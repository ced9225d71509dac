"""Checkpoints on a hostile disk: broken folders are skipped (and said so), a mismatch or
a missing step is a clear error that changes nothing, no checkpoint holds NaN/inf."""

import glob
import os
import subprocess
import sys
import textwrap
import warnings

import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from edmjax.train import checkpoint
from edmjax.train import config as C


# pytest swaps sys.unraisablehook per test, so the hook with which the module drops
# orbax's echoes of a failed read is not in place here; the subprocess test below
# checks what a user sees.
pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


def _state(scale=1.0):
  return {"a": jnp.arange(20000.0) * scale, "b": {"c": jnp.ones((3, 2)) * scale}}


TARGET = _state(0.0)


def _run(tmp_path, steps=(1, 2, 3), keep=5):
  workdir = str(tmp_path / "run")
  mgr = checkpoint.make_manager(workdir, keep=keep)
  for s in steps:
    checkpoint.save(mgr, s, _state(s))
  checkpoint.close(mgr)
  return workdir


def _snapshot(workdir):
  """Every path under the work directory with its size and mtime."""
  out = {}
  for root, dirs, files in os.walk(workdir):
    for name in dirs + files:
      p = os.path.join(root, name)
      st = os.stat(p)
      out[os.path.relpath(p, workdir)] = (st.st_size, st.st_mtime_ns)
  return out


def _truncate_data(workdir, step):
  """Halves the largest data file of a checkpoint (what a full disk leaves)."""
  files = [f for f in glob.glob(os.path.join(workdir, "checkpoints", str(step), "**", "*"),
                                recursive=True)
           if os.path.isfile(f) and os.sep + "d" + os.sep in f]
  biggest = max(files, key=os.path.getsize)
  os.truncate(biggest, os.path.getsize(biggest) // 2)


def test_load_skips_an_empty_newest_folder_and_says_why(tmp_path):
  workdir = _run(tmp_path)
  os.makedirs(os.path.join(workdir, "checkpoints", "999"))
  before = _snapshot(workdir)
  with pytest.warns(checkpoint.CheckpointSkippedWarning,
                    match=r"Skipped checkpoint .*999: .*incomplete.*Using step 3"):
    state, step = checkpoint.load(workdir, TARGET)
  assert step == 3
  np.testing.assert_array_equal(state["a"], np.arange(20000.0) * 3)
  assert _snapshot(workdir) == before  # load is read-only


def test_resume_skips_a_truncated_newest_checkpoint_and_sets_it_aside(tmp_path):
  workdir = _run(tmp_path, keep=3)
  _truncate_data(workdir, 3)
  logs = []
  mgr = checkpoint.make_manager(workdir, keep=3)
  state, step = checkpoint.restore_latest(mgr, TARGET, log=logs.append)
  assert step == 2 and len(logs) == 1
  assert "checkpoints/3" in logs[0] and "cannot be read" in logs[0] and "Using step 2" in logs[0]
  assert "checkpoints_broken" in logs[0]
  np.testing.assert_array_equal(state["a"], np.arange(20000.0) * 2)
  # The run goes on: orbax's retention no longer sees the broken folder, so the good
  # checkpoints are the ones kept.
  for s in (3, 4, 5):
    checkpoint.save(mgr, s, _state(s))
  checkpoint.close(mgr)
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints"))) == ["3", "4", "5"]
  assert os.listdir(os.path.join(workdir, "checkpoints_broken")) == ["3"]
  assert checkpoint.load(workdir, TARGET)[1] == 5


def test_an_empty_folder_left_in_place_would_cost_good_checkpoints(tmp_path):
  """Why restore_latest moves broken folders aside: orbax counts them as steps."""
  workdir = _run(tmp_path, keep=3)
  os.makedirs(os.path.join(workdir, "checkpoints", "999"))
  mgr = checkpoint.make_manager(workdir, keep=3)
  with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    assert checkpoint.restore_latest(mgr, TARGET)[1] == 3
  checkpoint.save(mgr, 4, _state(4))
  checkpoint.close(mgr)
  assert sorted(os.listdir(os.path.join(workdir, "checkpoints")), key=int) == ["2", "3", "4"]


def test_a_missing_step_lists_the_available_ones(tmp_path):
  workdir = _run(tmp_path)
  with pytest.raises(checkpoint.CheckpointNotFoundError,
                     match=r"no checkpoint at step 777 .*available steps: 1, 2, 3\."):
    checkpoint.load(workdir, TARGET, step=777)


def test_an_explicit_broken_step_is_an_error_not_a_fallback(tmp_path):
  workdir = _run(tmp_path)
  _truncate_data(workdir, 3)
  with pytest.raises(checkpoint.CheckpointCorruptError,
                     match=r"checkpoints/3 cannot be restored: its data cannot be read"):
    checkpoint.load(workdir, TARGET, step=3)
  assert checkpoint.load(workdir, TARGET, step=2)[1] == 2


def test_a_different_network_is_a_mismatch_that_changes_nothing(tmp_path):
  workdir = _run(tmp_path)
  before = _snapshot(workdir)
  other = {"a": jnp.zeros(32), "b": {"c": jnp.zeros((3, 2)), "d": jnp.zeros(2)}}
  with pytest.raises(checkpoint.CheckpointMismatchError) as err:
    mgr = checkpoint.make_manager(workdir)
    try:
      checkpoint.restore_latest(mgr, other)
    finally:
      checkpoint.close(mgr)
  text = str(err.value)
  assert "checkpoints/3" in text and "a is (20000,) float32 in the checkpoint, (32,)" in text
  assert "b.d is expected but not in the checkpoint" in text and "Nothing was changed" in text
  assert _snapshot(workdir) == before


def test_every_checkpoint_broken_is_an_error_not_a_new_run(tmp_path):
  workdir = _run(tmp_path, steps=(1, 2))
  for s in (1, 2):
    _truncate_data(workdir, s)
  with pytest.raises(checkpoint.CheckpointCorruptError,
                     match=r"No checkpoint .* can be restored: step 2: .*; step 1: "):
    checkpoint.load(workdir, TARGET)


def test_no_checkpoint_ever_holds_a_non_finite_value(tmp_path):
  workdir = str(tmp_path / "run")
  mgr = checkpoint.make_manager(workdir)
  bad = _state()
  bad["a"] = bad["a"].at[3].set(jnp.nan)
  # With no checkpoint yet, the message does not claim there are any.
  with pytest.raises(checkpoint.NonFiniteStateError, match=r"No checkpoint exists in .*yet"):
    checkpoint.save(mgr, 1, bad)
  checkpoint.save(mgr, 1, _state())
  with pytest.raises(checkpoint.NonFiniteStateError, match=r"\(steps 1\) are untouched"):
    checkpoint.save(mgr, 2, bad)
  # A non-finite state written by other means (not `save`) is skipped on restore.
  mgr.save(2, args=ocp.args.StandardSave(bad))
  checkpoint.close(mgr)
  with pytest.warns(checkpoint.CheckpointSkippedWarning, match="holds a non-finite value"):
    state, step = checkpoint.load(workdir, TARGET)
  assert step == 1 and checkpoint.is_finite(state)


@pytest.mark.parametrize("keep", [0, -1])
def test_keep_checkpoints_must_be_at_least_one(keep, tmp_path):
  with pytest.raises(ValueError, match=f"keep_checkpoints={keep} is too small; it must be >= 1"):
    checkpoint.make_manager(str(tmp_path), keep=keep)
  with pytest.raises(ValueError, match=f"keep_checkpoints={keep} is too small"):
    C.apply_overrides(C.TrainConfig(), [f"keep_checkpoints={keep}"])


def test_a_truncated_checkpoint_gives_one_message_not_hundreds_of_lines(tmp_path):
  workdir = _run(tmp_path)
  _truncate_data(workdir, 3)
  code = textwrap.dedent(f"""
      import gc, jax.numpy as jnp
      from edmjax.train import checkpoint
      target = {{"a": jnp.zeros(20000), "b": {{"c": jnp.zeros((3, 2))}}}}
      print(checkpoint.load({workdir!r}, target, log=print)[1])
      gc.collect()
      """)
  env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3")
  out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env=env, check=True, timeout=300)
  lines = out.stdout.splitlines()
  assert lines[-1] == "2" and "Skipped checkpoint" in lines[0] and len(lines) == 2
  assert "Traceback" not in out.stderr and "Event loop is closed" not in out.stderr
  assert "Exception ignored" not in out.stderr, out.stderr[:2000]


def test_load_fields_falls_back_and_names_missing_steps_too(tmp_path):
  """The sampling path (`load_run`) reads some fields only: the same recovery."""
  workdir = _run(tmp_path)
  os.makedirs(os.path.join(workdir, "checkpoints", "999"))
  part = {"b": {"c": jnp.zeros((3, 2))}}
  with pytest.warns(checkpoint.CheckpointSkippedWarning, match=r"999: .*incomplete"):
    fields, step = checkpoint.load_fields(workdir, part)
  assert step == 3 and set(fields) == {"b"}
  np.testing.assert_array_equal(fields["b"]["c"], np.full((3, 2), 3.0))
  with pytest.raises(checkpoint.CheckpointNotFoundError, match=r"available steps: 1, 2, 3, 999"):
    checkpoint.load_fields(workdir, part, step=777)
  with pytest.raises(checkpoint.CheckpointMismatchError, match=r"a is \(20000,\) float32 in "
                                                             r"the checkpoint, \(5,\)"):
    checkpoint.load_fields(workdir, {"a": jnp.zeros(5)}, step=2)


def test_a_save_that_cannot_fit_is_refused_before_anything_is_written(tmp_path, monkeypatch):
  workdir = _run(tmp_path, steps=(1, 2))
  before = _snapshot(workdir)
  need = checkpoint.state_bytes(_state())
  assert need == 20000 * 4 + 6 * 4
  usage = checkpoint.shutil.disk_usage(workdir)
  monkeypatch.setattr(checkpoint.shutil, "disk_usage",
                      lambda p: usage._replace(free=need // 2))
  mgr = checkpoint.make_manager(workdir, keep=5)
  with pytest.raises(checkpoint.DiskFullError) as e:
    checkpoint.save(mgr, 3, _state(3.0))
  checkpoint.close(mgr)
  msg = str(e.value)
  assert e.value.errno == 28  # ENOSPC: the scripts' entry point prints it as one paragraph
  assert "checkpoint step 3; nothing was written" in msg
  assert os.path.join(workdir, "checkpoints") in msg
  assert f"{need / 2**20:.1f} MiB" in msg and "steps 1, 2" in msg and "intact" in msg
  assert _snapshot(workdir) == before


def test_a_disk_that_fills_during_a_save_is_one_message(tmp_path, monkeypatch):
  workdir = _run(tmp_path, steps=(1,))
  mgr = checkpoint.make_manager(workdir, keep=5)

  def full(*args, **kwargs):
    raise OSError(28, "No space left on device")

  monkeypatch.setattr(mgr, "save", full)
  monkeypatch.setattr(mgr, "wait_until_finished", full)
  with pytest.raises(checkpoint.DiskFullError, match=r"step 2 \(or the one before it\) "
                     r"\(No space left on device\).*steps 1\) are intact"):
    checkpoint.save(mgr, 2, _state(2.0))
  with pytest.raises(checkpoint.DiskFullError, match="the last checkpoint"):
    checkpoint.wait(mgr)
