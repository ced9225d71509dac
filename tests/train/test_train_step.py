"""The jitted train step: device-count independence, accumulation, non-finite skips."""

import os
import tempfile

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from edmjax.data import pipeline, sources
from edmjax.train import checkpoint, loop, parallel, step as step_lib
from edmjax.train import config as C

jax.config.update("jax_compilation_cache_dir",
                  os.path.join(tempfile.gettempdir(), "edmjax-test-jax-cache"))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)

BATCH = 16
STEPS = 3


def tiny_config(**kw):
  return C.TrainConfig(
      net=C.NetConfig(model_channels=8, channel_mult=(1, 2), num_blocks=1,
                      attn_resolutions=(), dropout=0.0),
      data=C.DataConfig(name="digits"), loss=C.LossConfig(sigma_data=0.75),
      optim=C.OptimConfig(lr=1e-3, lr_rampup_kimg=0.02, ema_halflife_kimg=0.1),
      batch_size=BATCH, **kw)


@pytest.fixture(scope="module")
def data():
  ds = sources.load_digits()
  return [pipeline.batch_at(ds, i * BATCH, batch_size=BATCH) for i in range(STEPS)]


def _run(built, mesh, batches, key_seed=0):
  state = built.init(jax.random.key_data(jax.random.key(key_seed)))
  metrics = []
  for b in batches:
    images, labels = parallel.global_batch((b.images, b.labels), mesh)
    state, m = built.step(state, images, labels)
    metrics.append(m)
  return jax.device_get(state), jax.device_get(metrics)


@pytest.fixture(scope="module")
def mesh8():
  assert jax.device_count() == 8, "tests/conftest.py forces 8 CPU devices"
  return parallel.make_mesh()


@pytest.fixture(scope="module")
def built8(mesh8):
  return loop.build(tiny_config(), mesh8, (8, 8, 1), 10)


@pytest.fixture(scope="module")
def run8(built8, mesh8, data):
  return _run(built8, mesh8, data)


def _max_abs_diff(a, b):
  return max(float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64))))
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_one_device_equals_eight_devices_and_never_retraces(run8, data):
  """Same global batch on 1 and on 8 devices: parameters agree to 1e-6 after 3 steps.

  The random numbers (σ, noise) are drawn for the global batch with partitionable
  threefry, so they are identical; only the order of the cross-device gradient sum
  differs (float32 rounding). The 1-device step is traced once for 3 different
  batches and keys (chex.assert_max_traces).
  """
  cfg = tiny_config()
  mesh1 = parallel.make_mesh(jax.devices()[:1])
  built = loop.build(cfg, mesh1, (8, 8, 1), 10)
  step = jax.jit(chex.assert_max_traces(
      step_lib.make_train_step(built.model, cfg, optimizer=built.optimizer), n=1))
  state = built.init(jax.random.key_data(jax.random.key(0)))
  for b in data:
    images, labels = parallel.global_batch((b.images, b.labels), mesh1)
    state, _ = step(state, images, labels)
  state8, _ = run8
  assert int(state.step) == STEPS and int(state.position) == STEPS * BATCH
  assert _max_abs_diff(state.params, state8.params) <= 1e-6
  assert _max_abs_diff(state.ema_params, state8.ema_params) <= 1e-6
  np.testing.assert_array_equal(np.asarray(state.key), np.asarray(state8.key))
  # Params moved: the comparison is not vacuous.
  init = built.init(jax.random.key_data(jax.random.key(0)))
  assert _max_abs_diff(init.params, state.params) > 1e-4


def test_gradient_accumulation_equals_one_big_batch(run8, mesh8, data):
  """accum_steps=2 (two microbatches in a lax.scan) = the plain step, to 1e-6.

  σ and noise are drawn for the global batch before splitting; the only difference
  is the summation order of the per-microbatch gradients.
  """
  built = loop.build(tiny_config(accum_steps=2), mesh8, (8, 8, 1), 10)
  state, metrics = _run(built, mesh8, data)
  state8, metrics8 = run8
  assert _max_abs_diff(state.params, state8.params) <= 1e-6
  assert _max_abs_diff(state.opt_state, state8.opt_state) <= 1e-6
  np.testing.assert_allclose(metrics[-1]["loss"], metrics8[-1]["loss"], rtol=1e-5)


def test_non_finite_batch_is_skipped_and_counted(built8, mesh8, data):
  state = built8.init(jax.random.key_data(jax.random.key(0)))
  b = data[0]
  images, labels = parallel.global_batch((b.images, b.labels), mesh8)
  state, _ = built8.step(state, images, labels)
  before = jax.device_get(state)
  bad = b.images.copy()
  bad[3, 2, 2, 0] = np.nan
  for k in range(2):
    images, labels = parallel.global_batch((bad, b.labels), mesh8)
    state, m = built8.step(state, images, labels)
    assert not bool(m["finite"])
    assert int(m["skipped_consecutive"]) == k + 1
  after = jax.device_get(state)
  for name in ("params", "ema_params", "opt_state"):
    chex.assert_trees_all_equal(getattr(before, name), getattr(after, name))
  assert int(after.skipped_total) == 2 and int(after.step) == 3
  assert int(after.position) == 3 * BATCH  # the bad batches were consumed
  images, labels = parallel.global_batch((b.images, b.labels), mesh8)
  state, m = built8.step(state, images, labels)
  assert bool(m["finite"]) and int(m["skipped_consecutive"]) == 0
  assert int(m["skipped_total"]) == 2


def test_checkpoint_refuses_non_finite_state(run8, tmp_path):
  state, _ = run8
  bad = state._replace(params=jax.tree.map(lambda x: jnp.asarray(x).at[(0,) * x.ndim].set(np.inf),
                                           state.params))
  mgr = checkpoint.make_manager(str(tmp_path), keep=2, async_save=False)
  with pytest.raises(checkpoint.NonFiniteStateError, match="non-finite"):
    checkpoint.save(mgr, 1, bad)
  checkpoint.close(mgr)
  assert checkpoint.latest_step(checkpoint.make_manager(str(tmp_path))) is None


def test_split_cpu_into_devices_picks_a_divisor_of_the_microbatch_and_is_safe_late():
  import subprocess, sys  # pylint: disable=g-import-not-at-top,multiple-imports
  code = ("from edmjax.train import parallel; import jax; "
          "n = parallel.split_cpu_into_devices(30, accum_steps=2, max_devices=4); "
          "print(n, jax.device_count(), parallel.split_cpu_into_devices(8))")
  env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
  run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                       text=True, check=True, timeout=120)
  # microbatch 15: 4 does not divide it, 3 does; a second call after JAX started is a no-op.
  assert run.stdout.split() == ["3", "3", "0"]
  # Fewer devices than asked for is said, not silent.
  assert "using 3 of 4 CPU devices: batch_size=30 (microbatch 15)" in run.stderr
  # Here XLA_FLAGS already forces 8 devices (conftest): left alone.
  assert parallel.split_cpu_into_devices(16) == 0 and jax.device_count() == 8


def test_an_explicit_device_count_that_does_not_divide_the_batch_is_an_error():
  # batch 7 on 2 devices used to fall back to 1 device silently.
  with pytest.raises(ValueError, match=r"devices=2 \(--cpu-devices\) does not divide the "
                                       r"microbatch \(batch_size=7\)"):
    parallel.split_cpu_into_devices(7, devices=2)
  with pytest.raises(ValueError, match=r"batch_size=12 / accum_steps=2 = 6"):
    parallel.split_cpu_into_devices(12, accum_steps=2, devices=4)
  with pytest.raises(ValueError, match=r"devices \(--cpu-devices\)=0 is too small"):
    parallel.split_cpu_into_devices(8, devices=0)
  # A count that divides is accepted (here JAX has started: nothing changes).
  assert parallel.split_cpu_into_devices(8, devices=2) == 0
