"""Checkpoints of a `TrainState`: the one module that calls orbax.

A run's work directory holds `checkpoints/<step>/` written by an orbax
`CheckpointManager`: saves are atomic (written to a temporary directory, then
renamed), and only the last `keep` (>= 1) are kept. A state with a non-finite
floating value is never written (`NonFiniteStateError`), so every checkpoint on disk
holds a finite state.

Restoring trusts nothing on disk. A checkpoint folder can still be broken: an empty
`checkpoints/999/` (a copy or a sync interrupted), or a data file truncated by a full
disk or a crash of the file system. Before a checkpoint is read, its metadata is
compared with the target (tree structure, every leaf's shape and dtype):

* broken (no metadata, unreadable data, a non-finite value): `restore_latest` and
  `load` say which one is skipped and why (through `log`, or a
  `CheckpointSkippedWarning`) and take the next newest, down to the oldest;
  `restore_latest`, the resume path, also moves the broken folder to
  `checkpoints_broken/<step>` (orbax's retention would otherwise keep it and delete
  good checkpoints as the run goes on). If every checkpoint is broken,
  `CheckpointCorruptError` lists them all — it never silently starts a new run over
  them;
* complete but made by a different network or configuration:
  `CheckpointMismatchError` names the step and the first leaves that differ, and
  nothing is skipped, moved or written;
* a step that is not there (`load(..., step=777)`): `CheckpointNotFoundError`
  listing the steps that are.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import sys
import warnings
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from edmjax import _checks

__all__ = ["NonFiniteStateError", "DiskFullError", "CheckpointNotFoundError", "CheckpointMismatchError",
           "CheckpointCorruptError", "CheckpointSkippedWarning", "make_manager", "save",
           "restore_latest", "restore", "load", "latest_step", "all_steps", "wait",
           "close", "abstract_like", "is_finite", "checkpoint_problem", "load_fields",
           "CHECKPOINT_DIR", "BROKEN_DIR"]

CHECKPOINT_DIR = "checkpoints"
BROKEN_DIR = "checkpoints_broken"


class NonFiniteStateError(ValueError):
  """Raised instead of writing a checkpoint that holds NaN or ±inf."""


class DiskFullError(OSError):
  """No room for a checkpoint (errno ENOSPC): one message naming the folder, the space
  needed and free, and the checkpoints that are intact."""


class CheckpointNotFoundError(FileNotFoundError):
  """A requested checkpoint step does not exist (the message lists those that do)."""


class CheckpointMismatchError(ValueError):
  """A complete checkpoint does not match the state it is restored into."""


class CheckpointCorruptError(ValueError):
  """A checkpoint (or every checkpoint of a folder) cannot be read."""


class CheckpointSkippedWarning(UserWarning):
  """A broken checkpoint was skipped in favour of an older complete one."""


def make_manager(workdir: str, *, keep: int = 3, async_save: bool = True,
                 save_interval_steps: int = 1, read_only: bool = False
                 ) -> ocp.CheckpointManager:
  """An orbax CheckpointManager for `workdir/checkpoints` (created if missing).

  `read_only=True` (what `load` uses) neither creates the folder nor removes the
  temporary folders of saves in progress, so reading a run that is still training
  is safe.

  Raises:
    ValueError: `keep` is not an int >= 1 (named `keep_checkpoints`, the config field).
  """
  _checks.check_int_at_least("keep_checkpoints", keep, 1)
  path = os.path.abspath(os.path.join(workdir, CHECKPOINT_DIR))
  options = ocp.CheckpointManagerOptions(
      max_to_keep=None if read_only else keep, create=not read_only,
      enable_async_checkpointing=async_save,
      save_interval_steps=0 if read_only else save_interval_steps,
      cleanup_tmp_directories=not read_only, read_only=read_only)
  with _quiet_orbax():
    return ocp.CheckpointManager(path, options=options,
                                 item_handlers=ocp.StandardCheckpointHandler())


def _directory(manager) -> str:
  return os.fspath(manager.directory)


def is_finite(tree) -> bool:
  """True when every floating leaf of `tree` is finite (computed on device, one bool)."""
  leaves = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)]
  if not leaves:
    return True
  return bool(jax.device_get(jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))))


def save(manager: ocp.CheckpointManager, step: int, state, *, force: bool = True) -> bool:
  """Saves `state` as checkpoint `step` after checking that it is finite.

  Returns:
    Whether orbax wrote (or started writing, when asynchronous) the checkpoint.

  Raises:
    NonFiniteStateError: when a floating leaf holds NaN or ±inf; nothing is written,
      and the message says which checkpoints exist (or that none does).
  """
  if not is_finite(state):
    steps = all_steps(manager)
    where = (f"The checkpoints already in {_directory(manager)} (steps "
             f"{', '.join(map(str, steps))}) are untouched; resume from them."
             if steps else f"No checkpoint exists in {_directory(manager)} yet.")
    raise NonFiniteStateError(
        f"Refusing to checkpoint step {step}: the state holds a non-finite value. {where}")
  _check_room(manager, step, state)
  try:
    return manager.save(int(step), args=ocp.args.StandardSave(state), force=force)
  except OSError as e:  # this save, or an earlier asynchronous one, ran out of space
    if e.errno == errno.ENOSPC and not isinstance(e, DiskFullError):
      raise _disk_full(manager, f"writing checkpoint step {step} (or the one before it)",
                       None, e) from None
    raise


def state_bytes(tree) -> int:
  """The bytes of a checkpoint's data: every array leaf's global size times itemsize."""
  return int(sum(int(np.prod(x.shape)) * np.dtype(x.dtype).itemsize
                 for x in jax.tree.leaves(tree) if hasattr(x, "dtype")))


def _disk_full(manager, what: str, need: int | None, cause=None) -> DiskFullError:
  path = _directory(manager)
  try:
    free = shutil.disk_usage(path).free
  except OSError:
    free = None
  steps = all_steps(manager)
  kept = (f"the checkpoints already there (steps {', '.join(map(str, steps))}) are "
          "intact, so rerunning after freeing space resumes from the newest"
          if steps else "no checkpoint exists yet, so rerunning after freeing space "
          "starts again")
  room = (f"it needs about {need / 2**20:.1f} MiB and " if need is not None else "")
  room += f"{free / 2**20:.1f} MiB are free" if free is not None else "the free space is unknown"
  detail = f" ({cause.strerror or cause})" if cause is not None else ""
  return DiskFullError(errno.ENOSPC,
                       f"Not enough disk space in {path} for {what}{detail}: {room}; "
                       f"{kept}.")


def _check_room(manager, step: int, state) -> None:
  """Refuses a save that cannot fit, before anything is written (with a 5% margin)."""
  need = state_bytes(state)
  try:
    free = shutil.disk_usage(_directory(manager)).free
  except OSError:
    return  # an unreadable folder is reported by the save itself
  if free < need * 1.05 + 2**20:
    raise _disk_full(manager, f"checkpoint step {step}; nothing was written", need)


def abstract_like(state):
  """ShapeDtypeStructs (with shardings) of `state`: the target of a restore."""
  return jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)),
      state)


def latest_step(manager: ocp.CheckpointManager) -> int | None:
  """The newest checkpoint folder's step, or None (see `restore_latest` for one that
  is also complete)."""
  return manager.latest_step()


def all_steps(manager: ocp.CheckpointManager) -> list[int]:
  """Every checkpoint folder's step, oldest first."""
  return sorted(int(s) for s in manager.all_steps())


# ----------------------------------------------------------------------------- inspection


def _key_name(entry) -> str:
  for attr in ("key", "name", "idx"):
    if hasattr(entry, attr):
      return str(getattr(entry, attr))
  return str(entry)  # pragma: no cover


def _flat(tree, is_leaf=None) -> dict:
  """{'a.b.0': leaf} with the path spelled the same for dicts, NamedTuples, lists."""
  leaves = jax.tree_util.tree_flatten_with_path(tree, is_leaf=is_leaf)[0]
  return {".".join(_key_name(k) for k in path): leaf for path, leaf in leaves}


def _describe(x) -> str:
  return f"{tuple(x.shape)} {np.dtype(x.dtype).name}"


def _short(error: BaseException, limit: int = 240) -> str:
  """The innermost cause of `error` in one short line (tensorstore's specs cut)."""
  while (error.__cause__ or error.__context__) is not None:
    error = error.__cause__ or error.__context__
  text = " ".join(str(error).split()).split(" [tensorstore_spec")[0]
  text = text.split(" See full TensorStore details")[0]
  text = text if len(text) <= limit else text[:limit] + " ..."
  return f"{type(error).__name__}: {text}"


@contextlib.contextmanager
def _quiet_orbax():
  """Silences orbax's absl warnings (missing metadata, read-only folder) while this
  module inspects folders: it reports what matters itself."""
  logger = logging.getLogger("absl")
  level = logger.level
  logger.setLevel(logging.ERROR)
  try:
    yield
  finally:
    logger.setLevel(level)


def _mismatch(saved: dict, target: dict, partial: bool = False) -> list[str]:
  """Human-readable differences between the saved and expected leaves (for a partial
  restore, leaves of the checkpoint that are not asked for are fine)."""
  out = []
  for name in sorted(set(target) - set(saved)):
    out.append(f"{name} is expected but not in the checkpoint")
  for name in [] if partial else sorted(set(saved) - set(target)):
    out.append(f"{name} is in the checkpoint but not expected")
  for name in sorted(set(saved) & set(target)):
    s, t = saved[name], target[name]
    if tuple(s.shape) != tuple(t.shape) or np.dtype(s.dtype) != np.dtype(t.dtype):
      out.append(f"{name} is {_describe(s)} in the checkpoint, {_describe(t)} expected")
  return out


def checkpoint_problem(manager: ocp.CheckpointManager, step: int, target, *,
                       partial: bool = False) -> str | None:
  """Why checkpoint `step` cannot be restored into `target`'s structure, or None.

  Reads only the checkpoint's metadata (no array data). A broken checkpoint (no or
  unreadable metadata) gives the reason as a string. `partial`: `target` holds only
  some fields of the saved state (`load_fields`).

  Raises:
    CheckpointMismatchError: the checkpoint is complete but its tree, shapes or dtypes
      differ from `target` (a different network or configuration).
  """
  folder = os.path.join(_directory(manager), str(step))
  if not os.path.isdir(folder):
    return f"{folder} is not a folder"
  if not os.path.exists(os.path.join(folder, "_CHECKPOINT_METADATA")):
    contents = sorted(os.listdir(folder))
    return (f"{folder} is incomplete (no _CHECKPOINT_METADATA; it holds "
            f"{contents if contents else 'nothing'})")
  with warnings.catch_warnings(), _quiet_orbax():
    warnings.simplefilter("ignore")
    try:
      meta = manager.item_metadata(int(step))
    except Exception as e:  # orbax raises several kinds for unreadable metadata
      return f"its metadata cannot be read ({_short(e)})"
  tree = getattr(meta, "tree", meta)
  if tree is None:
    return "it has no saved state (no item metadata)"
  saved = _flat(tree, is_leaf=lambda x: hasattr(x, "shape") and hasattr(x, "dtype"))
  if not saved:
    return "it has no saved state (empty item metadata)"
  diffs = _mismatch(saved, _flat(target), partial)
  if diffs:
    shown = "; ".join(diffs[:4]) + (f"; ... ({len(diffs)} differences)" if len(diffs) > 4
                                    else "")
    raise CheckpointMismatchError(
        f"Checkpoint {folder} does not match the state being restored: {shown}. It was "
        "written by a different network or configuration (e.g. another "
        "net.model_channels). Nothing was changed on disk; use the configuration the "
        "run was trained with (its config.json) or a new work directory.")
  return None


def _is_failed_read_echo(unraisable) -> bool:
  """An unraisable exception that only echoes a failed orbax read."""
  exc = unraisable.exc_value
  if isinstance(exc, RuntimeError) and str(exc) == "Event loop is closed":
    return True
  return "_read_array_index_and_device_put" in repr(unraisable.object)


def _drop_failed_read_echoes() -> None:
  """When orbax fails to read a corrupt file, the reads still pending report it again
  as "Exception ignored in: <coroutine ...>" and, once orbax has closed its event loop,
  as "Event loop is closed" tracebacks: hundreds of lines that bury the one message
  this module gives. This hook drops exactly those echoes and passes every other
  unraisable exception to the previous hook; it is installed once, before a read."""
  previous = sys.unraisablehook
  if getattr(previous, "_edmjax_drops_read_echoes", False):
    return

  def hook(unraisable):
    if not _is_failed_read_echo(unraisable):
      previous(unraisable)

  hook._edmjax_drops_read_echoes = True  # pylint: disable=protected-access
  sys.unraisablehook = hook
  logging.getLogger("asyncio").addFilter(
      lambda record: "async_deserialize" not in record.getMessage())


def _read(manager, step: int, target, partial: bool = False):
  """(state, None) for a readable finite checkpoint, else (None, reason)."""
  problem = checkpoint_problem(manager, step, target, partial=partial)
  if problem is not None:
    return None, problem
  _drop_failed_read_echoes()
  try:
    with _quiet_orbax():
      if partial:  # only the fields of `target` are read
        item = abstract_like(target)
        state = ocp.PyTreeCheckpointer().restore(
            os.path.join(_directory(manager), str(step), "default"),
            args=ocp.args.PyTreeRestore(
                item=item, restore_args=ocp.checkpoint_utils.construct_restore_args(item),
                partial_restore=True))
      else:
        state = manager.restore(int(step),
                                args=ocp.args.StandardRestore(abstract_like(target)))
  except Exception as e:  # tensorstore / orbax errors of a corrupt data file
    return None, f"its data cannot be read ({_short(e)})"
  if not is_finite(state):
    return None, "it holds a non-finite value"
  return state, None


def _not_found(manager, step: int) -> CheckpointNotFoundError:
  steps = all_steps(manager)
  listed = ", ".join(map(str, steps)) if steps else "none"
  return CheckpointNotFoundError(
      f"There is no checkpoint at step {step} in {_directory(manager)}; available "
      f"steps: {listed}.")


def restore(manager: ocp.CheckpointManager, step: int, target, *, partial: bool = False):
  """Restores checkpoint `step` into the structure, dtypes and shardings of `target`
  (`partial`: only the fields `target` names).

  Raises:
    CheckpointNotFoundError: no checkpoint `step` (the message lists the steps).
    CheckpointMismatchError: it was written for a different structure.
    CheckpointCorruptError: it is incomplete or unreadable (the reason is given).
  """
  step = int(step)
  if step not in all_steps(manager):
    raise _not_found(manager, step)
  state, reason = _read(manager, step, target, partial)
  if state is None:
    raise CheckpointCorruptError(
        f"Checkpoint {os.path.join(_directory(manager), str(step))} cannot be restored: "
        f"{reason}. Available steps: {', '.join(map(str, all_steps(manager)))}.")
  return state


def _default_log(message: str) -> None:
  warnings.warn(message, CheckpointSkippedWarning, stacklevel=3)


def _newest_complete(manager, target, log, set_aside: bool, partial: bool = False):
  """(state, step) of the newest readable checkpoint, skipping broken newer ones."""
  steps = all_steps(manager)
  if not steps:
    return None, None
  log = log or _default_log
  skipped = []
  for step in reversed(steps):
    state, reason = _read(manager, step, target, partial)
    if state is not None:
      for bad_step, bad_reason in skipped:
        moved = _set_aside(manager, bad_step) if set_aside else None
        log(f"Skipped checkpoint {os.path.join(_directory(manager), str(bad_step))}: "
            f"{bad_reason}." + (f" Moved it to {moved}." if moved else "")
            + f" Using step {step}, the newest complete checkpoint.")
      if skipped and set_aside:
        manager.reload()
      return state, step
    skipped.append((step, reason))
  raise CheckpointCorruptError(
      f"No checkpoint in {_directory(manager)} can be restored: "
      + "; ".join(f"step {s}: {r}" for s, r in skipped)
      + ". Nothing was changed; remove the broken folders to start the run again.")


def _set_aside(manager, step: int) -> str | None:
  """Moves a broken checkpoint folder to <workdir>/checkpoints_broken/<step> (process 0)."""
  if jax.process_index() != 0:
    return None
  src = os.path.join(_directory(manager), str(step))
  dest_dir = os.path.join(os.path.dirname(_directory(manager)), BROKEN_DIR)
  os.makedirs(dest_dir, exist_ok=True)
  dest, n = os.path.join(dest_dir, str(step)), 1
  while os.path.exists(dest):
    dest, n = os.path.join(dest_dir, f"{step}.{n}"), n + 1
  shutil.move(src, dest)
  return dest


def restore_latest(manager: ocp.CheckpointManager, target, *,
                   log: Callable[[str], None] | None = None):
  """(state, step) of the newest complete checkpoint, or (None, None) when there is none.

  This is the resume path: a newer checkpoint that is broken (see the module
  docstring) is skipped, reported through `log` (default: a
  `CheckpointSkippedWarning`) and moved to `checkpoints_broken/<step>`.

  Raises:
    CheckpointMismatchError: the newest complete checkpoint was written for a different
      structure (nothing is moved or skipped).
    CheckpointCorruptError: checkpoints exist but none can be read.
  """
  return _newest_complete(manager, target, log, set_aside=True)


def wait(manager: ocp.CheckpointManager) -> None:
  """Blocks until an asynchronous save has been committed.

  Raises:
    DiskFullError: the save ran out of space (one message, not orbax's tracebacks).
  """
  try:
    manager.wait_until_finished()
  except OSError as e:
    if e.errno == errno.ENOSPC and not isinstance(e, DiskFullError):
      raise _disk_full(manager, "the last checkpoint", None, e) from None
    raise


def close(manager: ocp.CheckpointManager) -> None:
  wait(manager)
  manager.close()


def load(workdir: str, target, *, step: int | None = None, keep: int = 3,
         log: Callable[[str], None] | None = None):
  """The state saved in `workdir` at `step` (default: the newest complete), shaped like
  `target`. Read-only: nothing on disk is moved or written.

  Returns `(state, step)`.

  Raises:
    FileNotFoundError: the folder holds no checkpoint yet (naming it).
    CheckpointNotFoundError: no checkpoint `step` (the message lists the steps).
    CheckpointMismatchError, CheckpointCorruptError: as `restore` / `restore_latest`.
  """
  return _load(workdir, target, step, keep, log, partial=False)


def load_fields(workdir: str, target: dict, *, step: int | None = None,
                log: Callable[[str], None] | None = None):
  """Some fields of the state saved in `workdir` (e.g. {'ema_params': ..., 'buffers': ...}).

  Reads only the named fields of the checkpoint (a partial restore), shaped like
  `target` (arrays or ShapeDtypeStructs with shardings); the rest of the state
  (optimizer moments, ...) is never read. Like `load`: read-only, the newest complete
  checkpoint by default (broken newer ones skipped and reported). Returns
  `(fields, step)`.

  Raises:
    FileNotFoundError: the folder holds no checkpoint yet (naming it).
    CheckpointNotFoundError: no checkpoint `step` (the message lists the steps).
    CheckpointMismatchError, CheckpointCorruptError: as `restore` / `restore_latest`.
  """
  return _load(workdir, target, step, 1, log, partial=True)


def _load(workdir, target, step, keep, log, partial):
  if not os.path.isdir(os.path.join(workdir, CHECKPOINT_DIR)):
    raise FileNotFoundError(f"{workdir!r} has no checkpoint yet (no {CHECKPOINT_DIR}/ "
                            "folder).")
  mgr = make_manager(workdir, keep=keep, read_only=True)
  try:
    if step is None:
      state, step = _newest_complete(mgr, target, log, set_aside=False, partial=partial)
    else:
      state = restore(mgr, step, target, partial=partial)
  finally:
    close(mgr)
  if state is None:
    raise FileNotFoundError(f"{workdir!r} has no checkpoint yet.")
  return state, int(step)
