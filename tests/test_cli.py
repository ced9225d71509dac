"""edmjax.cli: a user error is one paragraph and exit status 2; a bug keeps its traceback."""

import errno

import numpy as np
import pytest

from edmjax import cli
from edmjax.train import config as C


def _script(exc_factory):
  @cli.entry_point
  def main(argv=None):
    del argv
    raise exc_factory()
  return main


def _user_error(capsys, main, argv=()):
  with pytest.raises(SystemExit) as info:
    main(list(argv))
  assert info.value.code == 2
  err = capsys.readouterr().err
  assert "Traceback" not in err and err.count("error:") == 1
  return " ".join(err.split())


def test_usage_error_is_one_paragraph_and_exit_2(capsys):
  err = _user_error(capsys, _script(lambda: cli.UsageError("--seeds=5-2 is an empty range; "
                                                           "write LO-HI with LO <= HI.")))
  assert err.endswith("error: --seeds=5-2 is an empty range; write LO-HI with LO <= HI.")


def test_a_library_value_error_is_a_user_error(capsys):
  @cli.entry_point
  def main(argv=None):
    C.apply_overrides(C.TrainConfig(), argv)

  err = _user_error(capsys, main, ["net.dropout=1.5"])
  assert "net.dropout=1.5 is not allowed; it must be in [0, 1)" in err


@pytest.mark.parametrize("exc, match", [
    (OSError(errno.ENOSPC, "No space left on device", "/runs/a/metrics.jsonl"),
     r"no space left on the device while writing '/runs/a/metrics.jsonl'"),
    (OSError(errno.EROFS, "Read-only file system", "/runs/a/config.json"),
     r"cannot write '/runs/a/config.json': Read-only file system"),
    (PermissionError(errno.EACCES, "Permission denied", "/runs/a"),
     r"cannot write '/runs/a': Permission denied"),
    (FileNotFoundError(errno.ENOENT, "No such file", "/runs/none/config.json"),
     r"'/runs/none/config.json' does not exist"),
])
def test_file_system_errors_say_which_path_and_what_to_do(capsys, exc, match):
  err = _user_error(capsys, _script(lambda: exc))
  assert __import__("re").search(match, err), err


@pytest.mark.parametrize("bug", [
    lambda: TypeError("unsupported operand"),
    lambda: AssertionError("invariant"),
    lambda: RuntimeError("XLA"),
])
def test_internal_errors_keep_their_traceback(bug):
  with pytest.raises(type(bug())):
    _script(bug)([])


def test_a_value_error_from_another_library_is_not_explained_away():
  @cli.entry_point
  def main(argv=None):
    np.zeros(6).reshape(4, 4)  # numpy raises ValueError: a bug in the caller

  with pytest.raises(ValueError, match="cannot reshape"):
    main([])


def test_debug_shows_the_traceback_and_is_removed_from_argv():
  seen = []

  @cli.entry_point
  def main(argv=None):
    seen.append(list(argv))
    raise cli.UsageError("bad")

  with pytest.raises(cli.UsageError, match="bad"):
    main(["--x", "1", "--debug"])
  assert seen == [["--x", "1"]]


def test_exit_status_of_a_normal_run():
  assert cli.entry_point(lambda argv=None: None)([]) == 0
  assert cli.entry_point(lambda argv=None: 3)([]) == 3
