"""experiments/edm_vs_ddpm.ipynb runs top to bottom (tiny setting) and writes its results;
its sampling cell gives the images experiments/sample.py gives for the same checkpoint."""

import json
import math
import os
import sys

import numpy as np
import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(ROOT, "experiments", "edm_vs_ddpm.ipynb")
FIGURES = ("preconditioning.png", "sigma_schedules.png", "training_loss.png", "samples.png",
           "fd_vs_nfe.png", "loss_per_sigma.png", "eps_per_timestep.png",
           "trajectory_hist.png")


@pytest.fixture(scope="module")
def executed(tmp_path_factory):
  out = str(tmp_path_factory.mktemp("notebook"))
  env = dict(os.environ)
  env.update(EDMJAX_NOTEBOOK_TINY="1", EDMJAX_NOTEBOOK_OUT=out, JAX_PLATFORMS="cpu",
             JAX_NUMPY_RANK_PROMOTION="raise", TF_CPP_MIN_LOG_LEVEL="3",
             PYTHONPATH=ROOT + os.pathsep + env.get("PYTHONPATH", ""))
  env.pop("XLA_FLAGS", None)  # one CPU device in the kernel, not the 8 of conftest
  nb = nbformat.read(NOTEBOOK, as_version=4)
  client = nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                   resources={"metadata": {"path": os.path.join(ROOT, "experiments")}})
  client.execute(env=env)
  return nb, out


def test_notebook_writes_its_figures(executed):
  _, out = executed
  for name in FIGURES:
    path = os.path.join(out, name)
    assert os.path.getsize(path) > 5000, name


def test_notebook_results_are_finite_numbers(executed):
  nb, out = executed
  with open(os.path.join(out, "summary.json"), encoding="utf-8") as f:
    summary = json.load(f)
  assert summary["tiny"] is True
  assert summary["ddpm_sigma_range"][0] == pytest.approx(0.01, rel=0.01)
  assert all(math.isfinite(v) for k, v in summary["fd_digits"].items()
             if k.startswith("real") or k.startswith("edm"))
  assert math.isfinite(summary["excess_loss_edm"])
  assert math.isfinite(summary["max_abs_mean_eps"])
  # Every code cell ran, and the sampler table was printed.
  code = [c for c in nb.cells if c.cell_type == "code"]
  assert all(c.get("execution_count") for c in code)
  text = "".join(o.get("text", "") for c in code for o in c.get("outputs", []))
  assert "FD_digits" in text and "edm-18" in text


@pytest.mark.parametrize("run, sampler, opts", [
    ("edm", "edm", ["num_steps=3"]), ("ddpm", "ddim", ["num_steps=35"]),
    ("ddpm", "edm", ["num_steps=18"])])
def test_notebook_sampling_cell_equals_sample_py_bitwise(executed, tmp_path, run, sampler,
                                                         opts):
  """The notebook's images of a run and sampler = sample.py's for the same checkpoint,
  seeds, batch and device count (the notebook's kernel splits its CPU cores)."""
  _, out = executed
  with open(os.path.join(out, "summary.json"), encoding="utf-8") as f:
    summary = json.load(f)
  label = f"{sampler}-{opts[0].split('=')[1]}"
  want = np.load(os.path.join(out, "images", f"{run}_{label}.npz"))["images"]
  sys.path.insert(0, os.path.join(ROOT, "experiments"))
  import sample  # pylint: disable=g-import-not-at-top
  n = summary["num_images"]
  path = str(tmp_path / "s")
  argv = ["--workdir", os.path.join(out, f"digits_{run}"), "--seeds", f"0-{n - 1}",
          "--batch", str(n), "--cpu-devices", str(summary["devices"]), "--sampler",
          sampler, "--out", path, "--no-progress"]
  assert sample.main(argv + [a for o in opts for a in ("--opt", o)]) == 0
  np.testing.assert_array_equal(np.load(path + ".npz")["images"], want)
