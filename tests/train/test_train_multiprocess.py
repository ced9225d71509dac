"""Two processes (jax.distributed, gloo CPU collectives) train like one process."""

import os
import socket
import subprocess
import sys
import tempfile
import textwrap

import jax
import numpy as np

from edmjax.data import pipeline, sources
from edmjax.train import loop, parallel
from edmjax.train import config as C

CACHE = os.path.join(tempfile.gettempdir(), "edmjax-test-jax-cache")
jax.config.update("jax_compilation_cache_dir", CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)

BATCH, STEPS = 16, 3
CFG = C.TrainConfig(
    net=C.NetConfig(model_channels=8, channel_mult=(1, 2), num_blocks=1,
                    attn_resolutions=(), dropout=0.0),
    data=C.DataConfig(name="digits"), loss=C.LossConfig(sigma_data=0.75),
    optim=C.OptimConfig(lr=1e-3, lr_rampup_kimg=0.02, ema_halflife_kimg=0.1),
    batch_size=BATCH)

_WORKER = textwrap.dedent("""
    import sys, numpy as np, jax
    jax.config.update("jax_compilation_cache_dir", {cache!r})
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    from edmjax.train import parallel
    port, pid, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    parallel.initialize_distributed(f"localhost:{{port}}", 2, pid)
    from edmjax.data import pipeline, sources
    from edmjax.train import config as C, loop
    cfg = C.from_json(open(sys.argv[4]).read())
    mesh = parallel.make_mesh()
    assert jax.process_count() == 2 and jax.device_count() == 2
    built = loop.build(cfg, mesh, (8, 8, 1), 10)
    state = built.init(jax.random.key_data(jax.random.key(0)))
    ds = sources.load_digits()
    for i in range({steps}):
      b = pipeline.batch_at(ds, i * cfg.batch_size, batch_size=cfg.batch_size,
                            process_index=pid, process_count=2)
      x, y = parallel.global_batch((b.images, b.labels), mesh)
      state, _ = built.step(state, x, y)
    leaves = [np.asarray(l.addressable_data(0)) for l in jax.tree.leaves(state.params)]
    if pid == 0:
      np.savez(out, *leaves)
    jax.distributed.shutdown()
""")


def _free_port():
  with socket.socket() as s:
    s.bind(("localhost", 0))
    return s.getsockname()[1]


def test_two_processes_equal_one_process(tmp_path):
  """Per-process data slices assembled into one global batch (2 processes x 1 CPU
  device) give the parameters of a single process with the whole batch: max abs
  difference <= 1e-6 after 3 steps (only the all-reduce summation order differs)."""
  script = tmp_path / "worker.py"
  script.write_text(_WORKER.format(cache=CACHE, steps=STEPS))
  cfg_path = tmp_path / "cfg.json"
  cfg_path.write_text(C.to_json(CFG))
  out = tmp_path / "params.npz"
  env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1",
             JAX_PLATFORMS="cpu")
  port = str(_free_port())
  procs = [subprocess.Popen([sys.executable, str(script), port, str(i), str(out),
                             str(cfg_path)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT) for i in range(2)]
  try:
    logs = [p.communicate(timeout=600)[0].decode() for p in procs]
  finally:
    for p in procs:
      if p.poll() is None:
        p.kill()
  for p, log in zip(procs, logs):
    assert p.returncode == 0, log[-3000:]

  mesh1 = parallel.make_mesh(jax.devices()[:1])
  built = loop.build(CFG, mesh1, (8, 8, 1), 10)
  state = built.init(jax.random.key_data(jax.random.key(0)))
  ds = sources.load_digits()
  for i in range(STEPS):
    b = pipeline.batch_at(ds, i * BATCH, batch_size=BATCH)
    x, y = parallel.global_batch((b.images, b.labels), mesh1)
    state, _ = built.step(state, x, y)
  ref = [np.asarray(l) for l in jax.tree.leaves(jax.device_get(state.params))]
  got = np.load(out)
  got = [got[f"arr_{i}"] for i in range(len(ref))]
  diff = max(float(np.max(np.abs(a - b))) for a, b in zip(ref, got))
  assert diff <= 1e-6, diff
  init = jax.tree.leaves(jax.device_get(built.init(jax.random.key_data(jax.random.key(0))).params))
  assert max(float(np.max(np.abs(a - b))) for a, b in zip(init, got)) > 1e-4
