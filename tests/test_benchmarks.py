"""The prepared GPU comparison (benchmarks/gpu_compare.py) runs its CPU-safe parts.

No GPU and no torch here: the plan it would run, its option checks, the FLOP/s
arithmetic, and edmjax's training worker (with XLA's cost analysis) on a tiny net over
the test's 8 CPU devices. Speed is not asserted.
"""

import json
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

import gpu_compare  # noqa: E402  pylint: disable=g-import-not-at-top
import side_by_side  # noqa: E402  pylint: disable=g-import-not-at-top

# A net small enough to compile in seconds; batch 8: one sample per test device.
TINY = dict(model_channels=8, channel_mult=(1,), num_blocks=1, attn_resolutions=(),
            dropout=0.13, augment_p=0.0, resolution=8, channels=3, batch=8, steps=1,
            warmup=1, num_steps=2, flops=True, device="cpu")


def _plan(capsys, *argv):
  assert gpu_compare.main(["--dry-run", *argv]) == 0
  doc = json.loads(capsys.readouterr().out)
  return [(p["spec"]["framework"], p["spec"]["work"], p["spec"]["precision"],
           p["spec"]["batch"]) for p in doc["plan"]], doc


def test_dry_run_plans_edmjax_against_nvlabs_in_paired_precisions(capsys):
  plan, doc = _plan(capsys, "--nvlabs", os.path.join(ROOT, "benchmarks"), "--skip-nvlabs")
  assert plan == [("jax", "train", "bf16", 512), ("jax", "train", "fp32", 512),
                  ("jax", "sample", "bf16", 512), ("jax", "sample", "fp32", 512)]
  assert doc["config"]["model_channels"] == 128 and doc["config"]["num_blocks"] == 4


def test_dry_run_with_nvlabs_pairs_bf16_with_fp16(capsys, tmp_path):
  (tmp_path / "training").mkdir()
  (tmp_path / "training" / "networks.py").write_text("")
  plan, _ = _plan(capsys, "--nvlabs", str(tmp_path), "--work", "train")
  assert plan == [("jax", "train", "bf16", 512), ("torch", "train", "fp16", 512),
                  ("jax", "train", "fp32", 512), ("torch", "train", "fp32", 512)]


@pytest.mark.parametrize("argv, message", [
    (["--precisions", "fp16"], "--precisions 'fp16'"),
    (["--batch", "0"], "--batch 0"),
    (["--nvlabs", "/nonexistent"], "--nvlabs '/nonexistent' is not an NVlabs/edm checkout"),
])
def test_bad_options_exit_2_naming_the_option(argv, message, capsys):
  with pytest.raises(SystemExit) as e:
    gpu_compare.main(["--dry-run", *argv])
  assert e.value.code == 2
  assert message in capsys.readouterr().err


def test_peak_and_achieved_flops():
  assert gpu_compare.peak_tflops("NVIDIA H200") == 989.0
  assert gpu_compare.peak_tflops("NVIDIA H100 PCIe") == 756.0  # the longest matching name
  assert gpu_compare.peak_tflops("cpu") is None
  got = gpu_compare.achieved({"flops_per_step": 5e12, "step_s": 0.01}, 1000.0)
  assert got == pytest.approx({"achieved_tflops": 500.0, "fraction_of_bf16_peak": 0.5})
  assert gpu_compare.achieved({"error": "boom"}, 1000.0) == {}


def test_edmjax_training_worker_times_and_counts_flops_on_cpu():
  """The GPU comparison's edmjax training row, on a tiny net over the 8 test devices.

  (Its sampling row runs `sampling.sample` as `compare_nvlabs.py` does on CPU.)
  """
  row = side_by_side.run_worker(dict(TINY, framework="jax", work="train"))
  assert row["framework"] == "jax" and row["work"] == "train" and row["batch"] == 8
  assert row["devices"] == "8 x cpu"
  assert row["images_per_s"] > 0 and row["step_s"] > 0 and row["params"] > 1000
  assert row["flops_per_step"] > 0
  got = gpu_compare.achieved(row, 1.0)
  assert got["achieved_tflops"] == pytest.approx(row["flops_per_step"] / row["step_s"] / 1e12)
