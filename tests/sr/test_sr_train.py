"""SR training: headstart examples, data parallelism and exact resume (edmjax.sr.train)."""

import dataclasses
import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from edmjax.data import sources
from edmjax.sr import train as sr_train
from edmjax.train import config as config_lib

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "experiments"))
import train_sr3  # noqa: E402  pylint: disable=wrong-import-position

# The three train_sr calls below build the same programs: compile them once.
jax.config.update("jax_compilation_cache_dir",
                  os.path.join(__import__("tempfile").gettempdir(), "edmjax-test-jax-cache"))
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)


def _cfg(**kw):
  return dataclasses.replace(train_sr3.tiny(), loss=dataclasses.replace(
      train_sr3.tiny().loss, sigma_data=0.1), **kw)


def test_training_noise_builds_headstart_inputs_from_the_condition():
  rng = np.random.default_rng(0)
  hr = jnp.asarray(rng.uniform(-1, 1, (4096, 2, 2, 1)), jnp.float32)
  u = jnp.asarray(rng.uniform(-1, 1, (4096, 2, 2, 1)), jnp.float32)
  key = jax.random.key(3)

  sigma, noise = sr_train.training_noise(key, hr, u, _cfg(headstart_prob=1.0,
                                                          headstart_sigma=(0.1, 1.0)))
  # Every input hr + σ n' is u + σ n with n standard normal and ln σ ~ U(ln 0.1, ln 1).
  n = (hr + sigma[:, None, None, None] * noise - u) / sigma[:, None, None, None]
  assert abs(float(n.mean())) < 0.03 and abs(float(n.std()) - 1) < 0.03
  assert float(sigma.min()) >= 0.1 and float(sigma.max()) <= 1.0
  np.testing.assert_allclose(float(jnp.log(sigma).mean()), np.log(0.1) / 2, atol=0.03)

  sigma0, noise0 = sr_train.training_noise(key, hr, u, _cfg(headstart_prob=0.0))
  # Plain EDM examples: y + σ n with ln σ ~ N(P_mean, P_std²).
  assert abs(float(noise0.std()) - 1) < 0.03
  lc = _cfg().loss
  np.testing.assert_allclose(float(jnp.log(sigma0).mean()), lc.P_mean, atol=0.1)
  np.testing.assert_allclose(float(jnp.log(sigma0).std()), lc.P_std, rtol=0.05)

  sigma_h, noise_h = sr_train.training_noise(key, hr, u, _cfg(headstart_prob=0.5))
  from_u = np.asarray(jnp.any(jnp.abs(noise_h - noise0) > 0, axis=(1, 2, 3)))
  assert 0.45 < from_u.mean() < 0.55


@pytest.mark.parametrize("bad, match", [
    (dict(headstart_prob=1.5), "headstart_prob=1.5 must be in"),
    (dict(headstart_sigma=(0.5, 0.1)), r"headstart_sigma=\(0.5, 0.1\) must be"),
    (dict(headstart_sigma=(0.0, 1.0)), "0 < low <= high"),
])
def test_bad_headstart_settings_are_named(bad, match):
  with pytest.raises(ValueError, match=match):
    _cfg(**bad)


def test_sharded_training_resumes_bitwise(tmp_path):
  # batch 4 over the 8 test devices: the SR mesh takes the 4 devices that divide it.
  cfg = _cfg(headstart_prob=0.5, total_steps=2, log_every=1, checkpoint_every=0,
             sample_every=2)
  assert sr_train.sr_mesh(cfg.batch_size).devices.size == 4
  full, _ = sr_train.train_sr(cfg, str(tmp_path / "full"), progress=False, log=None)
  once = dataclasses.replace(cfg, sample_every=-1)
  half, _ = sr_train.train_sr(dataclasses.replace(once, total_steps=1),
                              str(tmp_path / "resumed"), progress=False, log=None)
  assert int(half.step) == 1
  resumed, _ = sr_train.train_sr(once, str(tmp_path / "resumed"), progress=False, log=None)
  assert int(resumed.step) == 2 and int(resumed.position) == 8
  for a, b in zip(jax.tree.leaves((full.params, full.ema_params, full.opt_state)),
                  jax.tree.leaves((resumed.params, resumed.ema_params, resumed.opt_state))):
    np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
  saved = config_lib.from_json(open(tmp_path / "full" / "config.json").read(),
                               sr_train.SRTrainConfig)
  assert saved.headstart_prob == 0.5 and tuple(saved.headstart_sigma) == (0.1, 1.0)
  rows = [json.loads(line) for line in open(tmp_path / "full" / "metrics.jsonl")]
  assert [r["step"] for r in rows] == [1, 2] and all(np.isfinite(r["loss"]) for r in rows)
  assert os.path.exists(tmp_path / "full" / "strips" / "step_0000002.png")
  assert not os.path.exists(tmp_path / "resumed" / "strips")


def test_cli_help_and_dry_run_show_the_headstart_fields():
  script = os.path.join(ROOT, "experiments", "train_sr3.py")
  out = subprocess.run([sys.executable, script, "--config", "tiny", "--workdir", "/tmp/x",
                        "--dry-run", "--set", "headstart_prob=0.25"], capture_output=True,
                       text=True, check=True, timeout=120).stdout
  assert '"headstart_prob": 0.25' in out


def test_load_sr_data_holds_out_a_stratified_seeded_sample_not_the_last_images():
  base = sr_train.SRTrainConfig()
  cfg = dataclasses.replace(base, data=dataclasses.replace(
      base.data, name="digits", holdout="50", resolution=16))
  train, held = sr_train.load_sr_data(cfg)
  full = sources.load_dataset("digits", resolution=16)
  assert len(train) + len(held) == len(full) and held.shape == (50, 16, 16, 1)
  flat = full.images.reshape(len(full), -1)
  rows = {r.tobytes(): i for i, r in enumerate(flat)}
  held_idx = np.array(sorted(rows[h.tobytes()] for h in held.reshape(50, -1)))
  assert held_idx.tolist() != list(range(len(full) - 50, len(full)))  # not the last 50
  held_classes = np.bincount(full.labels[held_idx], minlength=10)
  assert np.all(held_classes >= 4) and np.all(held_classes <= 6)  # 5 per class, ±1
  assert set(np.unique(train.labels)) == set(range(10))
  again, held2 = sr_train.load_sr_data(cfg)
  np.testing.assert_array_equal(held, held2)  # seeded
