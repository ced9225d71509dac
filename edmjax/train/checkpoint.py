"""Checkpoints of a `TrainState`: the one module that calls orbax.

A run's work directory holds `checkpoints/<step>/` written by an orbax
`CheckpointManager`: saves are atomic (written to a temporary directory, then
renamed), so a process killed while saving leaves the previous checkpoints intact
and `restore_latest` picks the newest complete one. Only the last `keep` are kept.
A state with a non-finite floating value is never written (`NonFiniteStateError`).
"""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp

__all__ = ["NonFiniteStateError", "make_manager", "save", "restore_latest", "restore",
           "latest_step", "all_steps", "wait", "close", "abstract_like", "is_finite", "load",
           "load_fields"]

CHECKPOINT_DIR = "checkpoints"


class NonFiniteStateError(ValueError):
  """Raised instead of writing a checkpoint that holds NaN or ±inf."""


def make_manager(workdir: str, *, keep: int = 3, async_save: bool = True,
                 save_interval_steps: int = 1) -> ocp.CheckpointManager:
  """An orbax CheckpointManager for `workdir/checkpoints` (created if missing)."""
  path = os.path.abspath(os.path.join(workdir, CHECKPOINT_DIR))
  options = ocp.CheckpointManagerOptions(
      max_to_keep=keep, create=True, enable_async_checkpointing=async_save,
      save_interval_steps=save_interval_steps, cleanup_tmp_directories=True)
  return ocp.CheckpointManager(path, options=options)


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
    NonFiniteStateError: when a floating leaf holds NaN or ±inf; nothing is written.
  """
  if not is_finite(state):
    raise NonFiniteStateError(
        f"Refusing to checkpoint step {step}: the state holds a non-finite value. "
        "The previous checkpoints are intact; resume from them.")
  return manager.save(int(step), args=ocp.args.StandardSave(state), force=force)


def abstract_like(state):
  """ShapeDtypeStructs (with shardings) of `state`: the target of a restore."""
  return jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)),
      state)


def latest_step(manager: ocp.CheckpointManager) -> int | None:
  """The newest complete checkpoint's step, or None."""
  return manager.latest_step()


def all_steps(manager: ocp.CheckpointManager) -> list[int]:
  return list(manager.all_steps())


def restore(manager: ocp.CheckpointManager, step: int, target):
  """Restores checkpoint `step` into the structure, dtypes and shardings of `target`."""
  return manager.restore(int(step), args=ocp.args.StandardRestore(abstract_like(target)))


def restore_latest(manager: ocp.CheckpointManager, target):
  """(state, step) of the newest checkpoint, or (None, None) when there is none."""
  step = manager.latest_step()
  if step is None:
    return None, None
  return restore(manager, step, target), step


def wait(manager: ocp.CheckpointManager) -> None:
  """Blocks until an asynchronous save has been committed."""
  manager.wait_until_finished()


def close(manager: ocp.CheckpointManager) -> None:
  manager.wait_until_finished()
  manager.close()


def load(workdir: str, target, *, step: int | None = None, keep: int = 3):
  """The state saved in `workdir` at `step` (default: the newest), shaped like `target`.

  Returns `(state, step)`. Raises FileNotFoundError naming the folder when it holds no
  checkpoint yet.
  """
  mgr = make_manager(workdir, keep=keep)
  try:
    if step is None:
      state, step = restore_latest(mgr, target)
    else:
      state = restore(mgr, step, target)
  finally:
    close(mgr)
  if state is None:
    raise FileNotFoundError(f"{workdir!r} has no checkpoint yet.")
  return state, step


def load_fields(workdir: str, target: dict, *, step: int | None = None):
  """Some fields of the state saved in `workdir` (e.g. {'ema_params': ..., 'buffers': ...}).

  Reads only the named fields of the checkpoint (a partial restore), shaped like
  `target` (arrays or ShapeDtypeStructs with shardings); the rest of the state
  (optimizer moments, ...) is never read. Returns `(fields, step)`.

  Raises:
    FileNotFoundError: naming the folder when it holds no checkpoint (or not `step`).
  """
  mgr = make_manager(workdir, keep=1 << 30, async_save=False)
  try:
    steps = all_steps(mgr)
    if step is None:
      step = max(steps) if steps else None
    if step is None or step not in steps:
      raise FileNotFoundError(
          f"{workdir!r} has no checkpoint" + (" yet." if step is None else
                                              f" at step {step}; it has {steps}."))
    item = abstract_like(target)
    fields = mgr.restore(int(step), args=ocp.args.PyTreeRestore(
        item=item, restore_args=ocp.checkpoint_utils.construct_restore_args(item),
        partial_restore=True))
  finally:
    close(mgr)
  return fields, int(step)
