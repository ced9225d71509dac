"""experiments/eval_fid.py with reference statistics in NVlabs/edm's format (mu, sigma).

Offline stand-in for the Inception: the embedded digits classifier (FD_digits), on a
folder of PNG digits, as generate.py writes folders.
"""

import json
import pathlib
import sys

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "experiments"))
import eval_fid  # noqa: E402  pylint: disable=wrong-import-position

from edmjax.eval import load_digits_classifier  # noqa: E402


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
  out = tmp_path_factory.mktemp("digits")
  images = load_digits().images[:40]  # 0..16
  for i, im in enumerate(images):
    sub = out / f"{i - i % 10:06d}"
    sub.mkdir(exist_ok=True)
    Image.fromarray((im * 255 / 16).astype(np.uint8), "L").save(sub / f"{i:06d}.png")
  return out


def _fd(folder, tmp_path, *extra):
  out = tmp_path / f"fd{len(extra)}.json"
  code = eval_fid.main(["fd", "--images", str(folder), "--resolution", "8", "--channels",
                        "1", "--features", "digits", "--json", str(out), *extra])
  return code, (json.loads(out.read_text())["value"] if code == 0 else None)


def test_nvlabs_format_reference_gives_the_same_fd(folder, tmp_path):
  ref = load_digits_classifier().reference
  np.savez(tmp_path / "nvlabs.npz", mu=ref.mu, sigma=ref.sigma)  # NVlabs' `fid.py ref`
  code_a, a = _fd(folder, tmp_path)
  code_b, b = _fd(folder, tmp_path, "--ref", str(tmp_path / "nvlabs.npz"))
  assert code_a == code_b == 0
  assert a == b and a > 0


def test_reference_of_another_dimension_is_refused_before_any_work(folder, tmp_path, capsys):
  rng = np.random.default_rng(0)
  np.savez(tmp_path / "fid2048.npz", mu=rng.normal(size=2048), sigma=np.eye(2048))
  code, _ = _fd(folder, tmp_path, "--ref", str(tmp_path / "fid2048.npz"))
  assert code == 2
  err = capsys.readouterr().err
  assert "holds 2048-d statistics; --features digits gives" in err
