"""Facts about the power-function EMA and its post-hoc reconstruction (EDM2, Sec. 3).

Reference numbers come from NVlabs/edm2's `training/phema.py` (commit 4bf8162), written
by tests/fixtures/make_edm2_fixture.py; everything else is a closed form.
"""

import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from edmjax.train import phema, snapshots

FIXTURE = os.path.join(os.path.dirname(__file__), "..", "fixtures", "edm2_reference.npz")


@pytest.fixture(scope="module")
def ref():
  return np.load(FIXTURE)


def test_functions_equal_nvlabs(ref):
  np.testing.assert_allclose(phema.std_to_exp(ref["phema/std"]), ref["phema/std_to_exp"],
                             rtol=1e-12)
  np.testing.assert_allclose(phema.exp_to_std(ref["phema/exp"]), ref["phema/exp_to_std"],
                             rtol=1e-12)
  resp = phema.power_function_response(np.array([7.0, 15.0, 20.0]),
                                       np.array([0.05, 0.1, 0.2]), 24, axis=1)
  np.testing.assert_allclose(resp, ref["phema/response"], rtol=1e-12)
  corr = phema.power_function_correlation(ref["phema/corr_a_ofs"], 0.05,
                                          ref["phema/corr_b_ofs"],
                                          np.array([[0.1, 0.05, 0.2]]))
  np.testing.assert_allclose(corr, ref["phema/corr"], rtol=1e-12)
  beta = [phema.power_function_beta(s, t_next=t, t_delta=64)
          for s in (0.05, 0.1) for t in (64, 128, 6400, 64 * 10**5)]
  np.testing.assert_allclose(beta, ref["phema/beta"], rtol=1e-12, atol=0)
  coefs = phema.solve_posthoc_coefficients(ref["phema/in_ofs"], ref["phema/in_std"],
                                           8 * 4096, ref["phema/out_std"])
  assert coefs.dtype == np.float64
  np.testing.assert_allclose(coefs, ref["phema/coefs"], rtol=1e-9, atol=1e-12)


def test_tracks_equal_nvlabs_power_function_ema(ref):
  traj, batch = ref["pfema/traj"], int(ref["pfema/batch"])
  update = jax.jit(lambda tr, p, n: phema.update_tracks(tr, p, stds=(0.05, 0.1), nimg=n,
                                                        batch_size=batch))
  tracks = phema.init_tracks(jnp.zeros(6), (0.05, 0.1))
  for i, row in enumerate(traj):
    tracks = update(tracks, jnp.asarray(row), (i + 1) * batch)
  np.testing.assert_allclose(np.stack(tracks), ref["pfema/ema"], rtol=0, atol=1e-6)


def test_std_and_exp_are_inverse_closed_forms():
  exps = np.array([0.01, 0.5, 1.0, 3.0, 6.94, 16.97, 100.0, 1e4])
  std = phema.exp_to_std(exps)
  np.testing.assert_allclose(phema.std_to_exp(std), exps, rtol=1e-9)
  # σ_rel² of p(τ) = (γ+1) τ^γ on [0, 1] is its variance, E[τ²] − E[τ]² (evaluated
  # up to γ = 100, where the difference still keeps 12 digits).
  mean, second = (exps + 1) / (exps + 2), (exps + 1) / (exps + 3)
  np.testing.assert_allclose(std[:-1]**2, (second - mean**2)[:-1], rtol=1e-12)
  assert phema.exp_to_std(0.0) == pytest.approx(phema.MAX_STD)


def test_correlation_is_the_integral_of_the_profiles():
  # ⟨p_a, p_b⟩ = ∫ p_a p_b dτ by the midpoint rule on a fine grid, p = (γ+1)/t (τ/t)^γ.
  def profile(t_end, std, tau):
    g = phema.std_to_exp(std)
    return np.where(tau <= t_end, (g + 1) / t_end * (tau / t_end)**g, 0.0)
  n = 400_000
  tau = (np.arange(n) + 0.5) / n * 1000.0
  for a, b in [((1000.0, 0.05), (600.0, 0.1)), ((300.0, 0.2), (1000.0, 0.05)),
               ((700.0, 0.1), (700.0, 0.1))]:
    numeric = np.sum(profile(*a, tau) * profile(*b, tau)) * (1000.0 / n)
    assert phema.power_function_correlation(*a, *b) == pytest.approx(numeric, rel=1e-6)


def test_tracked_ema_is_the_profile_weighted_average_of_the_history():
  # With t = i·batch, β_i = (1 − 1/i)^(γ+1): θ̂_n = Σ_i (i^(γ+1) − (i−1)^(γ+1))/n^(γ+1) θ_i.
  stds, batch, n = (0.05, 0.1, 0.2), 32, 300
  rng = np.random.default_rng(0)
  history = np.cumsum(rng.standard_normal((n, 4)), axis=0) / np.sqrt(n) + 1.0
  update = jax.jit(lambda tr, p, i: phema.update_tracks(tr, p, stds=stds, nimg=i * batch,
                                                        batch_size=batch))
  tracks = phema.init_tracks(jnp.zeros(4), stds)
  for i in range(1, n + 1):
    tracks = update(tracks, jnp.asarray(history[i - 1], jnp.float32), i)
  idx = np.arange(1, n + 1, dtype=np.float64)
  for k, g in enumerate(phema.std_to_exp(np.array(stds))):
    weights = (idx**(g + 1) - (idx - 1)**(g + 1)) / n**(g + 1)
    np.testing.assert_allclose(np.asarray(tracks[k]), weights @ history, rtol=0, atol=1e-6)


def test_tracked_std_at_a_snapshot_time_has_weight_one_on_that_snapshot():
  in_ofs = np.repeat(np.arange(1, 11) * 1000, 2)
  in_std = np.tile([0.05, 0.1], 10)
  for k in (0, 7, 19):
    x = phema.solve_posthoc_coefficients(in_ofs, in_std, in_ofs[k], in_std[k])
    expected = np.zeros((20, 1))
    expected[k] = 1.0
    np.testing.assert_allclose(x, expected, rtol=0, atol=1e-8)


def _trajectory(steps, dim, seed):
  """A smooth parameter trajectory (drift and slow oscillations) with a little noise."""
  rng = np.random.default_rng(seed)
  t = np.linspace(0.0, 1.0, steps)[:, None]
  freqs, phases = rng.uniform(0.5, 4.0, dim), rng.uniform(0.0, 6.0, dim)
  return (np.sin(2 * np.pi * freqs * t + phases) + t
          + 0.05 * rng.standard_normal((steps, dim)))


def test_untracked_std_reconstructed_from_snapshots_matches_a_directly_tracked_ema():
  # 4096 steps of batch 8; tracks 0.05 and 0.10 snapshotted every 64 steps (64 each);
  # tracks of the reconstructed σ_rel run directly beside them (float64, on the host).
  steps, batch, every = 4096, 8, 64
  tracked, wanted = (0.05, 0.1), (0.03, 0.07, 0.15)
  traj = _trajectory(steps, 16, seed=0)
  exps = phema.std_to_exp(np.array(tracked + wanted))
  ema = np.repeat(traj[:1], exps.size, axis=0)
  snaps, nimg, std = [], [], []
  for i in range(steps):
    n = (i + 1) * batch
    beta = phema.power_function_beta(np.array(tracked + wanted), t_next=n, t_delta=batch)
    ema = traj[i] + beta[:, None] * (ema - traj[i])
    if (i + 1) % every == 0:
      for k, s in enumerate(tracked):
        snaps.append(ema[k].copy())
        nimg.append(n)
        std.append(s)
  loads = []
  out = phema.reconstruct(nimg, std, lambda i: (loads.append(i), snaps[i])[1], wanted)
  assert loads == list(range(len(snaps)))          # streamed: each snapshot read once
  assert all(o.dtype == np.float32 for o in out)   # float32 accumulation
  # Measured max |error| on values of size ~2, over trajectory seeds 0-3: 2.2-3.0e-5
  # for 0.03 (narrower than both tracked profiles: extrapolated), 1.1-1.5e-6 for
  # 0.07, 4.1-5.0e-6 for 0.15, while those EMAs differ from the 0.05 track by 0.2-0.7.
  # Bounds: about twice the largest measured.
  for j, tol in enumerate((5e-5, 3e-6, 1e-5)):
    err = np.abs(out[j] - ema[len(tracked) + j]).max()
    assert err < tol, (wanted[j], err)
    assert np.abs(ema[len(tracked) + j] - ema[0]).max() > 100 * tol   # not trivially close


def test_reconstruct_uses_snapshots_up_to_the_output_time():
  nimg, std = [1000, 1000, 2000, 2000, 3000, 3000], [0.05, 0.1] * 3
  snaps = [{"w": np.full(3, float(i))} for i in range(6)]
  loads = []
  out = phema.reconstruct(nimg, std, lambda i: (loads.append(i), snaps[i])[1], [0.1],
                          out_nimg=2000)
  assert loads == [0, 1, 2, 3]
  np.testing.assert_allclose(out[0]["w"], 3.0, atol=1e-5)   # snapshot 3 is (2000, 0.1)


def test_errors_name_the_value():
  with pytest.raises(ValueError, match="std=0.3"):
    phema.std_to_exp(0.3)
  with pytest.raises(ValueError, match="std=0.0"):
    phema.init_tracks({"w": jnp.zeros(2)}, (0.05, 0.0))
  with pytest.raises(ValueError, match="out_nimg=1500"):
    phema.reconstruct([1000, 2000], [0.05, 0.05], lambda i: {}, [0.1], out_nimg=1500)
  with pytest.raises(ValueError, match="2 EMA tracks but 1 stds"):
    phema.update_tracks(({}, {}), {}, stds=(0.05,), nimg=1, batch_size=1)


def test_snapshots_round_trip_list_in_time_order_and_feed_reconstruct(tmp_path):
  rng = np.random.default_rng(1)
  params = {"unet": {"w": rng.standard_normal((3, 2)).astype(np.float32)},
            "b": jnp.arange(4.0)}
  d = str(tmp_path / snapshots.SNAPSHOT_DIR)
  for nimg in (2048, 1024):
    for std in (0.1, 0.05):
      snapshots.save(d, nimg, std, jax.tree.map(lambda v, s=std, n=nimg: v + s * n, params))
  (tmp_path / snapshots.SNAPSHOT_DIR / "ema-0000001024-0.050.npz.tmp.npz").write_bytes(b"")
  snapshots.save(d, 1024, 0.07, params, prefix="phema")
  found = snapshots.list_snapshots(d)
  assert [(s.nimg, s.std) for s in found] == [(1024, 0.05), (1024, 0.1), (2048, 0.05),
                                              (2048, 0.1)]
  assert [s.std for s in snapshots.list_snapshots(d, stds=[0.1])] == [0.1, 0.1]
  loaded, nimg, std = snapshots.load(found[3].path)
  assert (nimg, std) == (2048, 0.1)
  np.testing.assert_array_equal(loaded["unet"]["w"], params["unet"]["w"] + 204.8)
  assert loaded["b"].dtype == np.float32
  # A tracked profile at its own time is that snapshot.
  out = phema.reconstruct([s.nimg for s in found], [s.std for s in found],
                          lambda i: snapshots.load(found[i].path)[0], [0.05], out_nimg=2048)
  np.testing.assert_allclose(out[0]["b"], np.arange(4.0) + 102.4, rtol=1e-6)
  with pytest.raises(FileNotFoundError, match="does not exist"):
    snapshots.list_snapshots(str(tmp_path / "nowhere"))


def _script():
  root = os.path.join(os.path.dirname(__file__), "..", "..", "experiments")
  if root not in sys.path:
    sys.path.insert(0, root)
  import reconstruct_phema  # pylint: disable=g-import-not-at-top
  return reconstruct_phema


def test_reconstruct_script_writes_phema_files_from_a_workdir(tmp_path, capsys):
  script = _script()
  assert script.parse_std_list("0.01,0.02,...,0.05,0.1") == [0.01, 0.02, 0.03, 0.04, 0.05,
                                                             0.1]
  d = str(tmp_path / snapshots.SNAPSHOT_DIR)
  for nimg in (100, 200, 300):
    for std in (0.05, 0.1):
      snapshots.save(d, nimg, std, {"w": np.full(2, nimg + std, np.float32)})
  assert script.main(["--workdir", str(tmp_path), "--std", "0.1,0.07", "--nimg", "200"]) == 0
  out = snapshots.list_snapshots(str(tmp_path / "phema"), prefix="phema")
  assert [(s.nimg, s.std) for s in out] == [(200, 0.07), (200, 0.1)]
  np.testing.assert_allclose(snapshots.load(out[1].path)[0]["w"], 200.1, rtol=1e-6)
  assert script.main(["--workdir", str(tmp_path), "--std", "0.1", "--nimg", "250"]) == 2
  assert "not the time of any snapshot" in capsys.readouterr().err
  for bad in (["--std", "0.3"], ["--std", "0.01,...,0.05"], ["--std", "0.1", "--max-batch",
                                                              "0"]):
    with pytest.raises(SystemExit) as e:
      script.parse_args(["--workdir", str(tmp_path)] + bad)
    assert e.value.code == 2
