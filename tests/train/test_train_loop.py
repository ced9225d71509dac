"""The loop: exact resume, a SIGKILL mid-run, a clear stop on non-finite losses."""

import dataclasses
import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time

import chex
import jax
import numpy as np
import pytest

from edmjax.data import sources
from edmjax.train import checkpoint, loop
from edmjax.train import config as C

CACHE = os.path.join(tempfile.gettempdir(), "edmjax-test-jax-cache")
jax.config.update("jax_compilation_cache_dir", CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)

K = 3


def tiny_config(**kw):
  base = dict(
      net=C.NetConfig(model_channels=8, channel_mult=(1, 2), num_blocks=1,
                      attn_resolutions=(), dropout=0.1),
      data=C.DataConfig(name="digits"), loss=C.LossConfig(sigma_data=0.75),
      optim=C.OptimConfig(lr=1e-3, lr_rampup_kimg=0.02, ema_halflife_kimg=0.1),
      sample=C.SampleConfig(num_images=0), batch_size=16, total_steps=2 * K,
      log_every=2, checkpoint_every=K, keep_checkpoints=2)
  base.update(kw)
  return C.TrainConfig(**base)


def test_resume_is_bitwise_identical(tmp_path):
  """2K steps in one go == K steps, a fresh restore from the workdir, K more steps.

  Params, EMA, Adam state, RNG key, data position and counters are bitwise equal on
  CPU (dropout on, so the RNG state matters).
  """
  cfg = tiny_config()
  full = loop.train(cfg, str(tmp_path / "full"), progress=False, log=None).state
  part = str(tmp_path / "part")
  first = loop.train(cfg, part, stop_at_step=K, progress=False, log=None).state
  assert int(first.step) == K
  resumed = loop.train(cfg, part, progress=False, log=None).state
  chex.assert_trees_all_equal(jax.device_get(full), jax.device_get(resumed))
  assert int(resumed.position) == 2 * K * cfg.batch_size
  # The metrics log has one record per log interval of both halves.
  steps = [r["step"] for r in loop.monitor.read_metrics(os.path.join(part, "metrics.jsonl"))]
  assert steps == [2, 3, 4, 6]
  # ... and the same records as CSV (loss and loss per σ bin), one row each.
  with open(os.path.join(part, "loss_per_sigma.csv")) as f:
    rows = f.read().splitlines()
  assert rows[0].startswith("step,kimg,loss,loss ") and len(rows) == 1 + len(steps)
  assert [int(r.split(",")[0]) for r in rows[1:]] == steps


_KILL_SCRIPT = textwrap.dedent("""
    import jax, sys
    jax.config.update("jax_compilation_cache_dir", {cache!r})
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    from edmjax.train import config as C, loop
    cfg = C.from_json(open(sys.argv[1]).read())
    loop.train(cfg, sys.argv[2], progress=False)
""")


def test_sigkill_while_saving_then_resume(tmp_path):
  """A run killed with SIGKILL (checkpointing every step) resumes from its newest
  complete checkpoint: the restore succeeds, values are finite, the run finishes."""
  cfg = tiny_config(total_steps=20, checkpoint_every=1, log_every=1, keep_checkpoints=3)
  workdir = str(tmp_path / "run")
  cfg_path = tmp_path / "cfg.json"
  cfg_path.write_text(C.to_json(cfg))
  script = tmp_path / "run.py"
  script.write_text(_KILL_SCRIPT.format(cache=CACHE))
  proc = subprocess.Popen([sys.executable, str(script), str(cfg_path), workdir],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
  ckpt_dir = os.path.join(workdir, "checkpoints")
  deadline = time.time() + 240
  try:
    while time.time() < deadline and proc.poll() is None:
      done = [d for d in os.listdir(ckpt_dir) if d.isdigit()] if os.path.isdir(ckpt_dir) else []
      if len(done) >= 2:
        break
      time.sleep(0.05)
    assert proc.poll() is None, proc.stdout.read().decode()[-3000:]
    proc.send_signal(signal.SIGKILL)
  finally:
    if proc.poll() is None:
      proc.kill()
    proc.wait(timeout=60)
  assert proc.returncode == -signal.SIGKILL
  mgr = checkpoint.make_manager(workdir)
  killed_at = checkpoint.latest_step(mgr)
  checkpoint.close(mgr)
  assert killed_at is not None and killed_at < cfg.total_steps
  result = loop.train(cfg, workdir, progress=False, log=None)
  assert int(result.state.step) == cfg.total_steps
  assert checkpoint.is_finite(result.state)
  mgr = checkpoint.make_manager(workdir)
  assert checkpoint.latest_step(mgr) == cfg.total_steps
  checkpoint.close(mgr)
  # One metrics row per step: the rows the killed run logged after its newest
  # complete checkpoint were dropped and logged again by the resumed run.
  steps = [r["step"] for r in loop.monitor.read_metrics(os.path.join(workdir, "metrics.jsonl"))]
  assert steps == list(range(1, cfg.total_steps + 1))


def test_loop_stops_after_consecutive_non_finite_steps(tmp_path):
  ds = sources.load_digits()
  images = ds.images.copy()
  images[:, 0, 0, 0] = np.nan  # every batch is bad
  bad = dataclasses.replace(ds, images=images)
  cfg = tiny_config(total_steps=20, max_consecutive_bad_steps=3, checkpoint_every=1)
  with pytest.raises(loop.TrainingDivergedError, match="3 consecutive steps had a non-finite"
                     ) as info:
    loop.train(cfg, str(tmp_path / "nan"), source=bad, progress=False, log=None)
  # What is on disk, truthfully: the skipped steps kept the finite initial state.
  assert f"{tmp_path / 'nan'}/checkpoints (steps 1" in str(info.value)
  mgr = checkpoint.make_manager(str(tmp_path / "nan"))
  for s in checkpoint.all_steps(mgr):  # whatever was saved is finite
    target = loop.build(cfg, loop.parallel.make_mesh(), (8, 8, 1), 10).init(
        jax.random.key_data(jax.random.key(0)))
    assert checkpoint.is_finite(checkpoint.restore(mgr, s, target))
  checkpoint.close(mgr)
