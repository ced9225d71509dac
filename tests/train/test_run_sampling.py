"""One checkpoint, one seed, one image: the loop's grid, sample.py, eval_fid.py, generate.

Two tiny trained runs (EDM on a folder of PNGs that is deleted after training, and
DDPM with T = 100) are loaded with `loop.load_run` (no data) and sampled through
every path; for each sampler name the paths share, the images are bitwise equal.
A DDPM run sampled with every EDM-family sampler name steps only on its own σ table.
"""

import os
import shutil
import sys
import tempfile

import jax
import numpy as np
import pytest
from PIL import Image

from edmjax import ddpm, keys, sampling
from edmjax.data import sources
from edmjax.train import config as C
from edmjax.train import generate, loop

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "experiments"))
import eval_fid  # noqa: E402  pylint: disable=wrong-import-position
import sample  # noqa: E402  pylint: disable=wrong-import-position

CACHE = os.path.join(tempfile.gettempdir(), "edmjax-test-jax-cache")
jax.config.update("jax_compilation_cache_dir", CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)

N, STEPS = 8, 3  # grid images, sampler steps


def _config(objective, data):
  return C.TrainConfig(
      net=C.NetConfig(model_channels=8, channel_mult=(1, 2), num_blocks=1,
                      attn_resolutions=(), dropout=0.1),
      data=data, loss=C.LossConfig(objective=objective, sigma_data=0.75, ddpm_T=100),
      optim=C.OptimConfig(lr=1e-3, lr_rampup_kimg=0.02, ema_halflife_kimg=0.1),
      sample=C.SampleConfig(sampler="edm", num_steps=STEPS, num_images=N, seed=5),
      batch_size=16, total_steps=2, log_every=1, checkpoint_every=2)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
  """{'edm': workdir, 'ddpm': workdir}; the EDM run's image folder no longer exists."""
  base = tmp_path_factory.mktemp("runs")
  folder = base / "pngs"
  folder.mkdir()
  for i, image in enumerate(sources.load_digits().images[:64]):
    Image.fromarray(np.uint8(np.round((image[..., 0] + 1) * 127.5))).save(
        folder / f"{i:03d}.png")
  out = {}
  for objective, data in (
      ("edm", C.DataConfig(name=f"folder:{folder}", resolution=8, channels=1)),
      ("ddpm", C.DataConfig(name="digits"))):
    out[objective] = str(base / objective)
    loop.train(_config(objective, data), out[objective], progress=False, log=None)
  shutil.rmtree(folder)
  return out


def _grid(workdir):
  return np.load(os.path.join(workdir, "samples", "step_0000002.npz"))["images"]


def _sample_py(workdir, tmp_path, name, opts):
  out = str(tmp_path / f"sample_{name}")
  argv = ["--workdir", workdir, "--seeds", f"5-{5 + N - 1}", "--batch", str(N),
          "--sampler", name, "--out", out, "--no-progress"]
  assert sample.main(argv + [a for o in opts for a in ("--opt", o)]) == 0
  return np.load(out + ".npz")["images"]


def _eval_fid(workdir, name, opts):
  args = eval_fid.parse_args(["fd", "--checkpoint", workdir, "--seed", "5", "--num-images",
                              str(N), "--batch", str(N), "--sampler", name]
                             + [a for o in opts for a in ("--opt", o)])
  return eval_fid.generate_images(args, eval_fid.sampler_spec(args))[0]


@pytest.mark.parametrize("objective, names", [
    ("edm", {"edm": [f"num_steps={STEPS}"], "euler_ancestral": [f"num_steps={STEPS}"]}),
    ("ddpm", {"edm": [f"num_steps={STEPS}"], "ddim": [f"num_steps={STEPS}"],
              "ddpm": []}),
])
def test_every_path_gives_the_same_image_bitwise(runs, tmp_path, objective, names):
  workdir = runs[objective]
  cfg, _, info = loop.load_run(workdir)
  first = None
  for name, opts in names.items():
    spec = sampling.SamplerSpec.parse(name, opts)
    want = generate.generate(info.model_fn, np.arange(5, 5 + N), spec,
                             image_shape=info.image_shape, batch_size=N,
                             variables=info.variables)
    assert want.shape == (N, 8, 8, 1) and np.all(np.isfinite(want)), name
    if spec == cfg.sample.spec():
      np.testing.assert_array_equal(_grid(workdir), want)
    np.testing.assert_array_equal(_sample_py(workdir, tmp_path, name, opts), want)
    np.testing.assert_array_equal(_eval_fid(workdir, name, opts), want)
    first = first or (spec, want)
  # A seed's image does not depend on the other seeds of its batch.
  part = generate.generate(info.model_fn, [6, 7, 8], first[0], image_shape=info.image_shape,
                           batch_size=N, variables=info.variables)
  np.testing.assert_array_equal(part, first[1][1:4])


def test_load_run_reads_no_data(runs, monkeypatch):
  """The EDM run's folder is gone; loading reads config.json and the checkpoint only."""
  def no_data(*a, **k):
    raise AssertionError("load_run read the data set")

  monkeypatch.setattr(sources, "load_dataset", no_data)
  cfg, model, info = loop.load_run(runs["edm"])
  assert cfg.data.image_shape == (8, 8, 1) and cfg.data.num_classes == 0
  assert info.image_shape == (8, 8, 1) and info.label_dim == 0 and info.step == 2
  assert info.sigma_data == 0.75 and info.position == 32
  assert (model.sigma_min, model.sigma_max, model.round_sigma) == (0.0, np.inf, None)
  x = jax.jit(lambda z: model(z, np.full((2,), 1.0, np.float32)))(np.zeros((2, 8, 8, 1),
                                                                        np.float32))
  assert x.shape == (2, 8, 8, 1)
  with pytest.raises(FileNotFoundError, match="no checkpoint at step 7"):
    loop.load_run(runs["edm"], step=7)


def test_ddpm_run_with_every_edm_sampler_stays_on_its_table(runs):
  # Samplers with a σ table (`num_steps`) step on the DDPM levels; 'dpm_fast' and
  # 'dpm_adaptive' step in λ = −log σ over the clipped range and take no table (the
  # model rounds inside its denoiser, sampling.py's docstring): their σ stay in range.
  _, model, _ = loop.load_run(runs["ddpm"])
  levels = np.asarray(ddpm.ddpm_sigmas(model.eps.betas), np.float64)
  assert model.eps.T == 100
  assert model.sigma_min == levels[0] and model.sigma_max == levels[-1]
  z = jax.random.normal(jax.random.key(0), (2, 8, 8, 1))
  init = np.full(z.shape, 0.2, np.float32)
  # 'ode' solves in continuous σ and refuses a discrete table (tests/test_ode_sampler.py).
  names = [n for n in sampling.SAMPLER_NAMES if n not in ("ddpm", "ddim", "ode")]
  assert {"edm", "ablation", "heun", "euler", "euler_ancestral", "dpmpp_2m",
          "headstart"} <= set(names)
  for name in names:
    has = sampling.SamplerSpec.options_of(name)
    opts = {"num_steps": 3} if "num_steps" in has else {}
    if name == "dpm_fast":
      opts.update(nfe=6)
    if name == "headstart":
      opts.update(sigma_start=1.0)
    spec = sampling.SamplerSpec(name, **opts)
    x, traj = sampling.sample(model, z, keys.per_sample_keys(jax.random.key(1), 2), spec,
                              init=init if name == "headstart" else None,
                              return_trajectory=True)
    assert np.all(np.isfinite(np.asarray(x))), name
    sigma = np.asarray(traj.sigma, np.float64).ravel()
    sigma = sigma[sigma > 0]
    assert sigma.min() >= levels[0] * (1 - 1e-6), name
    assert sigma.max() <= levels[-1] * (1 + 1e-6), name
    if "num_steps" not in has:
      assert name in ("dpm_fast", "dpm_adaptive"), name
      continue
    nearest = levels[np.argmin(np.abs(sigma[:, None] - levels[None]), axis=1)]
    np.testing.assert_allclose(sigma, nearest, rtol=1e-6, err_msg=name)


def test_generate_checks_its_arguments_before_compiling():
  den = lambda x, s: x  # noqa: E731
  with pytest.raises(ValueError, match="one integer label per seed"):
    generate.generate(den, [0, 1], "euler", image_shape=(4, 4, 1), batch_size=2,
                      class_labels=[0])
  with pytest.raises(ValueError, match=r"seeds must be integers in \[0, 2\*\*32 - 1\]"):
    generate.generate(den, [-1], "euler", image_shape=(4, 4, 1), batch_size=2)
  with pytest.raises(ValueError, match="batch_size=3 must be a multiple of the mesh's 2"):
    generate.generate(den, [0], "euler", image_shape=(4, 4, 1), batch_size=3,
                      mesh=generate.generation_mesh(2))
