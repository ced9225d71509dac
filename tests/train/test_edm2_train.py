"""EDM2 in the training loop: presets, EMA tracks and snapshots, bitwise resume,
forced weight normalisation in the step, loading a run's tracks and reconstructions."""

import os
import sys
import tempfile

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from edmjax.train import config as C
from edmjax.train import loop, models, phema, snapshots

CACHE = os.path.join(tempfile.gettempdir(), "edmjax-test-jax-cache")
jax.config.update("jax_compilation_cache_dir", CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)

ROOT = os.path.join(os.path.dirname(__file__), "..", "..")
sys.path.insert(0, os.path.join(ROOT, "experiments"))
import configs  # noqa: E402  pylint: disable=g-import-not-at-top,wrong-import-position
import sample  # noqa: E402  pylint: disable=g-import-not-at-top,wrong-import-position

K = 3


def test_imagenet_preset_builds_nvlabs_network():
  # edm2-img64-s; the img512 counts are in tests/nn/test_edm2_unet.py.
  preset, channels, expected = "edm2_img64_s", 3, 280_209_381
  cfg = configs.get_config(preset)
  net = models.build_net(cfg.net, img_resolution=64, channels=channels, label_dim=1000)
  f32 = jnp.float32
  shapes = jax.eval_shape(net.init, jax.random.key(0),
                          jax.ShapeDtypeStruct((1, 64, 64, channels), f32),
                          jax.ShapeDtypeStruct((1,), f32), jax.ShapeDtypeStruct((1, 1000), f32))
  assert sum(int(np.prod(p.shape)) for p in jax.tree.leaves(shapes["params"])) == expected
  assert cfg.optim.beta2 == 0.99 and cfg.optim.ema_stds == (0.05, 0.1)
  assert cfg.snapshot_nimg == 8 << 20 and cfg.batch_size == 2048


def tiny_config(**kw):
  base = dict(
      # One level, no attention: the smallest net whose compilation (most of this
      # file's time) still holds every part of EDM2's step.
      net=C.NetConfig(arch="edm2", model_channels=8, channel_mult=(1,), num_blocks=1,
                      attn_resolutions=(), channels_per_head=8, dropout=0.1,
                      label_dropout=0.2, logvar_channels=8),
      data=C.DataConfig(name="digits", cond=True),
      loss=C.LossConfig(objective="edm2", sigma_data=0.75, P_mean=-0.8, P_std=1.6),
      optim=C.OptimConfig(lr=1e-2, beta2=0.99, lr_rampup_kimg=0.02, lr_decay_batches=2,
                          ema_halflife_kimg=0.1, ema_stds=(0.05, 0.1)),
      sample=C.SampleConfig(num_images=0), batch_size=16, total_steps=2 * K,
      log_every=2, checkpoint_every=K, keep_checkpoints=2, snapshot_nimg=32)
  base.update(kw)
  return C.TrainConfig(**base)


def test_edm2_runs(tmp_path):
  """One EDM2 run of 2K steps, and the same run stopped after K steps and resumed.

  One test, not a module fixture shared by several: under pytest-xdist each worker
  would train its own copy (the first run's compilation is most of this file's time).
  """
  cfg = tiny_config()
  full = loop.train(cfg, str(tmp_path / "full"), progress=False, log=None).state
  part = str(tmp_path / "part")
  first = loop.train(cfg, part, stop_at_step=K, progress=False, log=None).state
  resumed = loop.train(cfg, part, progress=False, log=None).state
  runs = cfg, tmp_path, jax.device_get(full), jax.device_get(first), jax.device_get(resumed)
  for check in (check_tracks_resume_bitwise, check_stored_weights_renormalised,
                check_snapshots_every_interval_equal_in_both_runs,
                check_load_run_gives_the_ema_a_track_or_a_reconstruction,
                check_sample_script_guidance_flags):
    check(runs)


def check_tracks_resume_bitwise(runs):
  cfg, _, full, first, resumed = runs
  assert int(first.step) == K
  assert len(full.ema_tracks) == 2
  chex.assert_trees_all_equal(full, resumed)
  # The tracks are the power-function EMAs, not copies of the params or of each other.
  w = lambda p: np.asarray(p["unet"]["out_conv"]["weight"])
  assert not np.array_equal(w(full.ema_tracks[0]), w(full.ema_tracks[1]))
  assert not np.array_equal(w(full.ema_tracks[0]), w(full.params))


def check_stored_weights_renormalised(runs):
  _, _, full, _, _ = runs
  flat = jax.tree_util.tree_flatten_with_path(full.params)[0]
  weights = [np.asarray(v) for p, v in flat if p[-1].key == "weight"]
  assert len(weights) > 10
  for w in weights:
    rms = np.sqrt(np.mean(w**2, axis=tuple(range(w.ndim - 1))))
    assert np.all((rms > 1 - 1e-3) & (rms <= 1 + 1e-6))


def check_snapshots_every_interval_equal_in_both_runs(runs):
  cfg, root, full, _, _ = runs
  found = {name: snapshots.list_snapshots(str(root / name / snapshots.SNAPSHOT_DIR))
           for name in ("full", "part")}
  # snapshot_nimg 32 = every 2 steps of 16: images 32, 64, 96; two σ_rel each.
  assert [(s.nimg, s.std) for s in found["full"]] == [
      (n, s) for n in (32, 64, 96) for s in (0.05, 0.1)]
  for a, b in zip(found["full"], found["part"]):
    pa, pb = snapshots.load(a.path)[0], snapshots.load(b.path)[0]
    chex.assert_trees_all_equal(pa, pb)
  last = snapshots.load(found["full"][-1].path)[0]
  chex.assert_trees_all_equal(last, jax.tree.map(np.asarray, full.ema_tracks[1]))


def check_load_run_gives_the_ema_a_track_or_a_reconstruction(runs):
  cfg, root, full, _, _ = runs
  workdir = str(root / "full")
  _, model, info = loop.load_run(workdir)
  chex.assert_trees_all_equal(jax.device_get(info.variables["params"]), full.ema_params)
  assert model.label_dim == 10
  _, _, info = loop.load_run(workdir, ema=0.1)
  chex.assert_trees_all_equal(jax.device_get(info.variables["params"]), full.ema_tracks[1])
  found = snapshots.list_snapshots(os.path.join(workdir, snapshots.SNAPSHOT_DIR))
  out = phema.reconstruct([s.nimg for s in found], [s.std for s in found],
                          lambda i: snapshots.load(found[i].path)[0], [0.07])
  path = snapshots.save(os.path.join(workdir, "phema"), 96, 0.07, out[0], prefix="phema")
  _, model, info = loop.load_run(workdir, ema=path)
  assert info.position == 96
  chex.assert_trees_all_close(jax.device_get(info.variables["params"]), out[0])
  x = jnp.zeros((2, 8, 8, 1))
  assert jax.eval_shape(model, x, jnp.ones(2), jnp.array([1, 2])).shape == x.shape
  with pytest.raises(ValueError, match="tracked power-function EMAs"):
    loop.load_run(workdir, ema=0.2)


def test_config_errors_name_the_mismatch():
  with pytest.raises(ValueError, match="go together"):
    tiny_config(loss=C.LossConfig(objective="edm"))
  with pytest.raises(ValueError, match="multiple of batch_size"):
    tiny_config(snapshot_nimg=40)
  with pytest.raises(ValueError, match="augment"):
    tiny_config(data=C.DataConfig(name="digits", augment_p=0.1))
  with pytest.raises(ValueError, match="σ_rel"):
    C.OptimConfig(ema_stds=(0.3,))


def check_sample_script_guidance_flags(runs):
  _, root, _, _, _ = runs
  tmp_path = root / "samples"
  tmp_path.mkdir()
  base = ["--workdir", str(root / "full"), "--seeds", "0-3", "--batch", "4",
          "--cpu-devices", "0", "--no-progress", "--sampler", "euler", "--opt",
          "num_steps=3", "--ema", "0.1"]

  def run(name, *extra):
    assert sample.main(base + ["--out", str(tmp_path / name)] + list(extra)) == 0
    return np.load(tmp_path / f"{name}.npz")["images"]

  plain = run("plain")
  np.testing.assert_array_equal(run("w1", "--guidance", "1"), plain)
  cfg_guided = run("cfg", "--guidance", "3", "--guidance-interval", "0.3,100")
  auto = run("auto", "--guidance", "3", "--guide-workdir", str(root / "part"),
             "--guide-ema", "0.05")
  assert not np.allclose(cfg_guided, plain) and not np.allclose(auto, plain)
  # (An interval that holds none of the steps' σ: tests/test_guidance.py.)
  for bad in (["--guide-ema", "0.05"], ["--guidance", "2", "--guidance-interval", "5,1"],
              ["--guidance", "nan"]):
    with pytest.raises(SystemExit) as e:
      sample.main(base + bad)
    assert e.value.code == 2
