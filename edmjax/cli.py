"""What the experiment scripts share on the command line: user errors as one paragraph.

A script's `main(argv)` is decorated with `entry_point`:

* a user error — a bad option or config field, a missing or broken file, a full disk,
  a read-only folder — is printed as one paragraph `<script>: error: <message>` on
  stderr, and the script exits with status 2 (as argparse does for a bad option),
  without a traceback;
* anything else is a bug and keeps its traceback (exit status 1);
* `--debug` (anywhere in argv; `add_debug_option` lists it in `--help`) shows the
  traceback of user errors too.

What is a user error: `UsageError` (a script's own check of its options), every
`OSError` (the file system: missing file, permission, read-only folder, full disk), and
a `ValueError` raised by edmjax or a script — the library raises ValueError, naming the
value and what is allowed, exactly for bad input. A ValueError raised inside another
library (JAX, NumPy, orbax) is not ours to explain, so it keeps its traceback.

Example:

  >>> from edmjax import cli
  >>> @cli.entry_point
  ... def main(argv=None):
  ...   raise cli.UsageError("--batch=0 must be >= 1.")
  >>> try:
  ...   main([])
  ... except SystemExit as e:
  ...   print("exit status", e.code)
  exit status 2
"""

from __future__ import annotations

import argparse
import errno
import functools
import os
import sys
import textwrap
import traceback
from typing import Callable

__all__ = ["HelpFormatter", "UsageError", "entry_point", "add_debug_option",
           "is_user_error", "user_message", "EXIT_USER_ERROR"]


class HelpFormatter(argparse.RawDescriptionHelpFormatter,
                    argparse.ArgumentDefaultsHelpFormatter):
  """The scripts' `--help` layout: the description as written, defaults shown."""


EXIT_USER_ERROR = 2
DEBUG_FLAG = "--debug"
_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__))
_REPO_DIR = os.path.dirname(_PACKAGE_DIR)
_OURS = (_PACKAGE_DIR + os.sep, os.path.join(_REPO_DIR, "experiments") + os.sep,
         os.path.join(_REPO_DIR, "benchmarks") + os.sep)


class UsageError(ValueError):
  """A bad command-line option; the message names it, its value and what is allowed."""


def add_debug_option(parser) -> None:
  """Lists `--debug` in an argparse parser's help (`entry_point` reads and removes the
  flag before the parser sees argv, so parsing it is a formality)."""
  parser.add_argument(DEBUG_FLAG, action="store_true",
                      help="show the traceback of a user error (a bad option or file)")


def _raised_by_us(exc: BaseException) -> bool:
  """True when the innermost frame of `exc`'s traceback is in edmjax or the scripts."""
  tb = exc.__traceback__
  if tb is None:
    return False
  last = traceback.extract_tb(tb)[-1].filename
  return os.path.abspath(last).startswith(_OURS)


def is_user_error(exc: BaseException) -> bool:
  """Whether `exc` is a user error (see the module docstring) rather than a bug."""
  if isinstance(exc, UsageError):
    return True
  if isinstance(exc, OSError):
    return True
  return isinstance(exc, ValueError) and _raised_by_us(exc)


def user_message(exc: BaseException) -> str:
  """One paragraph for a user error: the exception's own text, or for the file system
  what happened to which path and what to do."""
  if isinstance(exc, OSError) and not str(exc).startswith(("Cannot", "There is no")):
    path = exc.filename or ""
    where = f" {path!r}" if path else ""
    if exc.errno == errno.ENOSPC:
      return (f"no space left on the device while writing{where}. Free some space (or use "
              "another folder) and rerun: the run resumes from its last checkpoint.")
    if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
      return (f"cannot write{where}: {exc.strerror or 'permission denied'}. Use a folder "
              "you can write to (e.g. another --workdir).")
    if isinstance(exc, FileNotFoundError) and path:
      return f"{path!r} does not exist."
  text = " ".join(str(exc).split()) or type(exc).__name__
  return text


def _print(prog: str, message: str) -> None:
  lines = textwrap.wrap(f"{prog}: error: {message}", width=100,
                        break_long_words=False, break_on_hyphens=False)
  print("\n".join(lines), file=sys.stderr)


def entry_point(main: Callable[..., int | None]) -> Callable[..., int]:
  """Wraps a script's `main(argv)` so that user errors exit with status 2 and a message.

  The wrapped `main(argv=None)` strips `--debug` from argv (None: `sys.argv[1:]`) before
  calling the script's own, returns its exit status (None counts as 0), and raises
  `SystemExit(2)` after printing one paragraph for a user error. With `--debug` (or for
  any other exception) the exception propagates with its traceback.
  """

  @functools.wraps(main)
  def wrapped(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = DEBUG_FLAG in argv
    inner = [a for a in argv if a != DEBUG_FLAG]
    try:
      status = main(inner)
    except (SystemExit, KeyboardInterrupt):
      raise
    except Exception as exc:  # pylint: disable=broad-except
      if debug or not is_user_error(exc):
        raise
      _print(_prog(main), user_message(exc))
      raise SystemExit(EXIT_USER_ERROR) from None
    return 0 if status is None else int(status)

  return wrapped


def _prog(main) -> str:
  module = sys.modules.get(getattr(main, "__module__", ""), None)
  path = getattr(module, "__file__", None)
  return os.path.basename(path) if path else os.path.basename(sys.argv[0] or "edmjax")
