"""The generic training loop: start from a work directory, step, and run hooks at boundaries.

A training run is an init function, a jitted step `step_fn(state, batch) -> (state,
metrics)`, a source of device-ready batches and hooks: functions run at step
boundaries (every `every` steps and/or at the last step), e.g. logging, checkpoints,
sample grids and evaluation (the pattern of clu's periodic actions and big_vision's
loop). `edmjax.train.loop.train` (images and labels, the EDM / VP / VE / DDPM step)
and `edmjax.sr.train.train_sr` (HR patches, the SR step) are both this loop, each
with its own step, batches and hooks:

  state, manager, at = runner.start(workdir, init, keep=3)    # init, or the newest checkpoint
  state, step = runner.run(state, step_fn, next_batch, end=total_steps,
                           hooks=[runner.Hook(log, every=50),
                                  runner.checkpoint_hook(manager, every=1000)])

The state carries its own step counter and data position, so a resumed run sees the
same batches and keys as an uninterrupted one; nothing here adds state.

Example:
  >>> from edmjax.train import runner
  >>> seen = []
  >>> state, step = runner.run({"step": 0}, lambda s, b: ({"step": s["step"] + b}, b),
  ...                          lambda: 1, end=5, start_step=0,
  ...                          hooks=[runner.Hook(lambda b: seen.append(b.step), every=2)])
  >>> step, seen                                   # every 2 steps, and at the end
  (5, [2, 4, 5])
"""

from __future__ import annotations

import dataclasses
import errno
import os
import sys
import tempfile
from typing import Any, Callable, NamedTuple, Sequence

from tqdm.auto import tqdm

from edmjax.train import checkpoint

__all__ = ["Hook", "Boundary", "run", "start", "checkpoint_hook", "progress_bar",
           "write_text", "check_writable"]


class Boundary(NamedTuple):
  """What a hook sees: the step just taken (1-based), the state after it, that step's
  metrics (on device), whether it is the loop's last step, and the progress bar (or
  None)."""
  step: int
  state: Any
  metrics: Any
  last: bool
  progress: Any


@dataclasses.dataclass(frozen=True)
class Hook:
  """`fn(boundary)` run after every `every`-th step (0: never periodically) and, when
  `at_end`, after the loop's last step."""
  fn: Callable[[Boundary], None]
  every: int = 0
  at_end: bool = True

  def due(self, step: int, last: bool) -> bool:
    return (self.every > 0 and step % self.every == 0) or (last and self.at_end)


def progress_bar(total: int, initial: int, enabled: bool = True):
  """A tqdm bar over steps on stderr, or None."""
  if not enabled:
    return None
  return tqdm(total=total, initial=initial, unit="step", dynamic_ncols=True,
              file=sys.stderr, mininterval=1.0)


def write_text(path: str, text: str) -> None:
  """Writes `text` to `path` atomically (a temporary file, then a rename)."""
  with open(path + ".tmp", "w", encoding="utf-8") as f:
    f.write(text)
  os.replace(path + ".tmp", path)


def check_writable(folder: str, *, create: bool = True) -> None:
  """Checks that a file can be written in `folder` (created when `create`; otherwise in
  its nearest existing parent, leaving nothing behind), so that a read-only or full
  folder is an error before the data loads and the step compiles.

  Raises:
    OSError: (PermissionError for a read-only folder) naming the folder.
  """
  target = os.path.abspath(folder)
  if create:
    os.makedirs(target, exist_ok=True)
  else:
    while not os.path.exists(target) and os.path.dirname(target) != target:
      target = os.path.dirname(target)
  if not os.path.isdir(target):
    raise NotADirectoryError(errno.ENOTDIR, "Not a directory", target)
  with tempfile.TemporaryFile(dir=target):
    pass


def start(workdir: str, init: Callable[[], Any], *, keep: int):
  """(state, manager, restored_step): `init()`, or the newest checkpoint of `workdir`.

  The manager (orbax, `edmjax.train.checkpoint`) keeps the last `keep` checkpoints;
  close it with `checkpoint.close` when the run ends. `restored_step` is None for a
  new run. `init()` gives the restore target (shapes, dtypes and shardings).
  """
  os.makedirs(workdir, exist_ok=True)
  state = init()
  manager = checkpoint.make_manager(workdir, keep=keep)
  restored, at = checkpoint.restore_latest(manager, state)
  return (state if restored is None else restored), manager, at


def checkpoint_hook(manager, every: int) -> Hook:
  """Saves the state every `every` steps and at the end (`checkpoint.save`)."""
  return Hook(lambda b: checkpoint.save(manager, b.step, b.state), every=every)


def run(state, step_fn: Callable, next_batch: Callable[[], Any], *, end: int,
        start_step: int | None = None, hooks: Sequence[Hook] = (),
        on_step: Callable[[int, Any], None] | None = None,
        stop: Callable[[int], bool] | None = None, progress=None):
  """Steps `state` until step `end` (or `stop`), running the hooks at boundaries.

  Args:
    state: the state to continue from (its step count is `start_step`, default
      `int(state.step)`).
    step_fn: `step_fn(state, batch) -> (state, metrics)` (jitted by the caller).
    next_batch: `() -> batch`, the next device-ready batch.
    end: the step to stop after.
    start_step: the step count of `state` (default `int(state.step)`).
    hooks: run in order after each step for which `hook.due(step, last)`.
    on_step: `on_step(step, metrics)` after every step, before the hooks.
    stop: `stop(step) -> bool`, checked after every step: True ends the loop
      there (the hooks see it as the last step).
    progress: a tqdm bar (`progress_bar`) advanced per step and closed at the end.

  Returns:
    (state, step): the state after the last step and its step count.
  """
  step = int(state.step) if start_step is None else int(start_step)
  try:
    while step < end:
      state, metrics = step_fn(state, next_batch())
      step += 1
      if on_step is not None:
        on_step(step, metrics)
      stopping = stop is not None and stop(step)
      last = step == end or stopping
      boundary = Boundary(step, state, metrics, last, progress)
      for hook in hooks:
        if hook.due(step, last):
          hook.fn(boundary)
      if progress is not None:
        progress.update(1)
      if stopping:
        break
  finally:
    if progress is not None:
      progress.close()
  return state, step
