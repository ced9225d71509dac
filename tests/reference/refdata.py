"""NumPy-only pieces shared by `make_fixtures.py` (run with torch) and the parity tests.

* `fixture_path`, `load`, `content_digest`: where the fixtures live, how they are read
  (every fixture has a JSON `meta` entry naming its reference and version), and a
  content hash (independent of the zip container's timestamps) for the manifest.
* `deterministic_weights`: the weights given to the NVlabs networks, a pure function
  of the PyTorch parameter name and shape (SplitMix64, no RNG library), so a fixture
  stores only inputs and outputs, and a test rebuilds the same weights and converts
  them with the documented mapping.
* `gmm_denoise`: the closed-form denoiser handed to the references (float64), the
  same function as `edmjax.oracle.gmm_denoiser`.
"""

from __future__ import annotations

import hashlib
import json
import pathlib
import zlib

import numpy as np

FIXTURES = pathlib.Path(__file__).resolve().parent / "fixtures"
MANIFEST = FIXTURES / "MANIFEST.json"


def fixture_path(name: str) -> pathlib.Path:
  return FIXTURES / f"{name}.npz"


def load(name: str) -> tuple[dict, dict]:
  """(meta, arrays) of fixture `name`; `meta` is the decoded JSON entry."""
  with np.load(fixture_path(name), allow_pickle=False) as f:
    arrays = {k: f[k] for k in f.files}
  meta = json.loads(str(arrays.pop("meta")))
  return meta, arrays


def content_digest(arrays: dict) -> str:
  """sha256 over (name, dtype, shape, bytes) of every array, in name order."""
  h = hashlib.sha256()
  for key in sorted(arrays):
    a = np.ascontiguousarray(arrays[key])
    h.update(key.encode())
    h.update(str(a.dtype).encode())
    h.update(str(a.shape).encode())
    h.update(a.tobytes())
  return h.hexdigest()


def _splitmix64_uniform(seed: int, n: int) -> np.ndarray:
  """n values in [0, 1) from SplitMix64 seeded with `seed` (exact, version-proof)."""
  with np.errstate(over="ignore"):
    z = np.arange(1, n + 1, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    z = z + np.uint64(seed)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
  return (z >> np.uint64(11)).astype(np.float64) / float(2**53)


def deterministic_weights(name: str, shape) -> np.ndarray:
  """float32 values for the PyTorch parameter or buffer `name` of `shape`.

  Uniform on [−a, a] with a = sqrt(3 / fan_in) for weights (unit-variance outputs;
  fan_in = in · kh · kw for an OIHW conv weight, `in` for a Linear (out, in)),
  a = 0.2 for biases and `freqs`; GroupNorm weights 1 ± 0.2. The seed is the CRC32
  of the name, so every parameter differs.
  """
  shape = tuple(int(s) for s in shape)
  n = int(np.prod(shape)) if shape else 1
  u = 2 * _splitmix64_uniform(zlib.crc32(name.encode()), n) - 1
  leaf = name.rsplit(".", 1)[-1]
  if leaf == "weight" and len(shape) == 1:  # GroupNorm (the only 1-D weights)
    values = 1 + 0.2 * u
  elif leaf == "weight" and len(shape) >= 2:
    fan_in = int(np.prod(shape[1:]))
    values = np.sqrt(3.0 / fan_in) * u
  else:  # biases, norm biases, freqs
    values = 0.2 * u
  return values.reshape(shape).astype(np.float32)


def gmm_denoise(x, sigma, means, stds, weights):
  """E[y | y + σn = x] for y ~ Σ_k w_k N(m_k, s_k² I), float64; x NHWC or any (B, ...)."""
  x = np.asarray(x, np.float64)
  sigma = np.broadcast_to(np.asarray(sigma, np.float64).reshape(-1), (x.shape[0],))
  means = np.asarray(means, np.float64)
  d = int(np.prod(x.shape[1:]))
  s2 = np.asarray(stds, np.float64)[None, :] ** 2
  sig2 = sigma[:, None] ** 2
  var = s2 + sig2
  axes = tuple(range(2, x.ndim + 1))
  dist2 = np.sum((x[:, None] - means[None]) ** 2, axis=axes)
  logits = np.log(np.asarray(weights, np.float64))[None, :] - 0.5 * d * np.log(var) \
      - 0.5 * dist2 / var
  logits = logits - logits.max(axis=1, keepdims=True)
  r = np.exp(logits)
  r = r / r.sum(axis=1, keepdims=True)
  coef_x = np.sum(r * s2 / var, axis=1)
  coef_m = r * sig2 / var
  mean_part = np.tensordot(coef_m, means, axes=(1, 0))
  return mean_part + coef_x.reshape((-1,) + (1,) * (x.ndim - 1)) * x


def rel_error(actual, expected) -> float:
  """max |actual − expected| / max |expected|: the relative error the parity tests bound."""
  actual = np.asarray(actual, np.float64)
  expected = np.asarray(expected, np.float64)
  if actual.shape != expected.shape:
    raise AssertionError(f"shape {actual.shape} != reference shape {expected.shape}")
  return float(np.max(np.abs(actual - expected)) / np.max(np.abs(expected)))


def numpy_denoiser(means, stds, weights):
  """`denoise(x, sigma)` of the fixtures' mixture, evaluated with NumPy.

  The parity tests run the edmjax samplers op by op (`jax.disable_jit()`, so that
  no sampler program is compiled for each of the ~100 cases), where the state is
  concrete; both sides then use the same float64 denoiser, `gmm_denoise`.
  """
  import jax.numpy as jnp

  def denoise(x, sigma):
    return jnp.asarray(gmm_denoise(np.asarray(x), np.asarray(sigma), means, stds, weights))

  return denoise
