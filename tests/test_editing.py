"""Editing through the one sampling entry point: inpainting and SDEdit (`edmjax.editing`).

Facts: the known pixels come back exactly, with every sampler; with RePaint's
resampling the generated pixels follow the exact conditional of a Gaussian mixture
(means within 2%, component shares within 3 standard errors), while plain
replacement is measurably biased on the same mixture; for independent pixels
replacement is exact; SDEdit stays near the input at small σ_start and forgets it
at σ_max; bad options fail naming them.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from edmjax import ddpm, editing, keys, oracle, sampling
from edmjax.model import EpsModel

# Components 0 and 1 share the known (left) half and differ in the masked half, so
# the exact conditional splits between them by their weights, 2/3 : 1/3; component
# 2 is excluded by the known half.
MEANS = np.zeros((3, 8, 8, 1), np.float32)
MEANS[0, :, :4], MEANS[0, :, 4:] = 0.5, 1.0
MEANS[1, :, :4], MEANS[1, :, 4:] = 0.5, 0.6
MEANS[2, :, :4], MEANS[2, :, 4:] = -0.5, 0.0
STDS = np.full((3,), 0.1, np.float32)
WEIGHTS = np.array([0.5, 0.25, 0.25], np.float32)
GMM = oracle.gmm_denoiser(MEANS, STDS, WEIGHTS)
MASK = np.zeros((8, 8), np.float32)
MASK[:, :4] = 1.0                                           # the left half is known
N = 2048


def _known_image():
  return MEANS[:1] + 0.1 * np.asarray(jax.random.normal(jax.random.key(3), (1, 8, 8, 1)))


def _exact_conditional(y):
  """Responsibilities given the known half, and the conditional mean of the masked half."""
  known = y[0, :, :4]
  logr = (np.log(WEIGHTS) - 0.5 * 32 * np.log(STDS**2)
          - np.sum((known[None] - MEANS[:, :, :4]) ** 2, axis=(1, 2, 3)) / (2 * STDS**2))
  r = np.exp(logr - logr.max())
  r /= r.sum()
  return r, float(np.sum(r * MEANS[:, 0, 4, 0]))


@pytest.fixture(scope="module")
def gmm_runs():
  y = np.broadcast_to(_known_image(), (N, 8, 8, 1))
  spec = sampling.SamplerSpec("edm", num_steps=10)
  plain, repaint = jax.jit(lambda y, k: (
      editing.inpaint(GMM, y, MASK, k, spec=spec),
      editing.inpaint(GMM, y, MASK, k, spec=spec, resample=10, jump=1)))(
          y, jax.random.key(0))
  return y, np.asarray(plain), np.asarray(repaint)


def test_repaint_follows_the_exact_conditional_of_the_mixture(gmm_runs):
  y, _, out = gmm_runs
  r, mean = _exact_conditional(y[:1])
  np.testing.assert_allclose(r, [2 / 3, 1 / 3, 0.0], atol=1e-6)
  masked = out[:, :, 4:].mean(axis=(1, 2, 3))               # per sample
  assert abs(masked.mean() / mean - 1) < 0.02, (masked.mean(), mean)
  share = np.mean(masked > 0.8)                              # component 0: 1.0, 1: 0.6
  assert abs(share - r[0]) < 3 * math.sqrt(r[0] * (1 - r[0]) / N), share
  # Within a component the masked pixels are around its mean.
  assert abs(out[masked > 0.8][:, :, 4:].mean() - 1.0) < 0.02
  assert abs(out[masked <= 0.8][:, :, 4:].mean() - 0.6) < 0.02


def test_plain_replacement_is_measurably_biased_on_the_same_mixture(gmm_runs):
  # The generated half sees the known half only through its noisy version, so it
  # settles in component 1 too often (measured: about 7% low); this is what
  # resampling is for (module docstring).
  y, out, _ = gmm_runs
  _, mean = _exact_conditional(y[:1])
  assert out[:, :, 4:].mean() / mean - 1 < -0.03


def test_known_pixels_come_back_exactly_with_every_sampler(gmm_runs):
  y = gmm_runs[0][:4]
  known = np.broadcast_to(MASK[None, :, :, None], y.shape) > 0
  eps_model = EpsModel(ddpm.ddpm_eps_from_denoiser(GMM, ddpm.linear_beta_schedule(200)),
                       ddpm.linear_beta_schedule(200))
  cases = [(GMM, "dpmpp_2m"), (GMM, "euler_ancestral"), (GMM, "ode"), (GMM, "ddim"),
           (eps_model, "ddim"), (eps_model, "edm")]
  outs = jax.jit(lambda y, k: [
      editing.inpaint(m, y, MASK, k, spec=sampling.SamplerSpec(name) if name == "ode"
                      else sampling.SamplerSpec(name, num_steps=8))
      for m, name in cases])(y, jax.random.key(1))
  for (m, name), out in zip(cases, outs):
    out = np.asarray(out)
    np.testing.assert_array_equal(out[known], y[known], err_msg=name)
    # ... and the generated half is a sample near component 0 or 1, not noise.
    assert np.all(np.abs(out[:, :, 4:].mean(axis=(1, 2, 3)) - 0.8) < 0.35), name


def test_replacement_is_exact_for_independent_pixels():
  # Gaussian data with independent pixels: the masked pixels' conditional is their
  # marginal, whatever the known ones are, and inpainting gives exactly the
  # unconditional sampler's pixels from the same noise.
  den = oracle.gaussian_denoiser(0.2, 0.3)
  y = jnp.full((4, 8, 8, 1), -0.9)                          # known pixels far from μ
  key = jax.random.key(2)
  spec = sampling.SamplerSpec("edm", num_steps=18)
  out, free = jax.jit(lambda y, k: (
      editing.inpaint(den, y, MASK, k, spec=spec),
      sampling.sample(den, keys.start_noise(k, y), k, spec)))(y, key)
  np.testing.assert_allclose(np.asarray(out)[:, :, 4:], np.asarray(free)[:, :, 4:],
                             rtol=1e-6, atol=1e-6)


def test_repaint_schedule():
  np.testing.assert_array_equal(editing.repaint_schedule(3, 1, 1),
                                [[0, 1], [1, 2], [2, 3]])
  pairs = editing.repaint_schedule(10, 3, 2)
  down = pairs[pairs[:, 1] > pairs[:, 0]]
  up = pairs[pairs[:, 1] < pairs[:, 0]]
  # Jump points 2, 4, 6, 8, each revisited twice, 2 levels back each time.
  assert len(up) == 4 * 2 and np.all(up[:, 0] - up[:, 1] == 2)
  assert len(down) == 10 + 4 * 2 * 2
  np.testing.assert_array_equal(pairs[-1], [9, 10])
  assert np.all(np.abs(np.diff(pairs, axis=0)[:, 0]) >= 0)      # a connected walk
  assert np.all(pairs[1:, 0] == pairs[:-1, 1])


def test_sdedit_stays_near_at_small_sigma_and_forgets_at_sigma_max():
  den = oracle.gaussian_denoiser(0.0, 0.5)
  a = 0.5 * jax.random.normal(jax.random.key(5), (64, 8, 8, 1))
  b = 0.5 * jax.random.normal(jax.random.key(6), (64, 8, 8, 1))
  # One batch [a; b] whose rows i and 64 + i share a key, hence their noise.
  k = keys.per_sample_keys(jax.random.key(4), 64)
  ab, k = jnp.concatenate([a, b]), jnp.concatenate([k, k])
  rms = lambda u, v: float(jnp.sqrt(jnp.mean((u - v) ** 2)))

  def edits(ab, k):
    out = {}
    for name in ("edm", "ode", "headstart"):
      spec = sampling.SamplerSpec(name) if name == "ode" else sampling.SamplerSpec(
          name, num_steps=8)
      for s in (0.05, 80.0):
        if name == "headstart" and s == 80.0:
          continue
        out[name, s] = editing.sdedit(den, ab, k, s, spec=spec)
    return out

  out = jax.jit(edits)(ab, k)
  for name in ("edm", "ode", "headstart"):
    near_a, near_b = out[name, 0.05][:64], out[name, 0.05][64:]
    # Small σ_start: about σ_start·s/√(s² + σ²) of noise is left, relative to the
    # images' spread of 0.5.
    assert rms(near_a, a) < 0.06 and rms(near_b, b) < 0.06, name
  for name in ("edm", "ode"):
    far_a, far_b = out[name, 80.0][:64], out[name, 80.0][64:]
    # σ_start = σ_max: the same noise gives (almost) the same image from either
    # input; the input's weight is s/σ_max ≈ 0.6%.
    assert rms(far_a, far_b) < 0.01 * rms(a, b), name
    assert rms(far_a, a) > 0.5, name


def test_bad_options_name_themselves():
  y = jnp.zeros((2, 8, 8, 1))
  k = jax.random.key(0)
  with pytest.raises(ValueError, match="does not start from an image"):
    editing.sdedit(GMM, y, k, 1.0, spec="ddim")
  with pytest.raises(ValueError, match="sigma_start=0.001"):
    editing.sdedit(GMM, y, k, 0.001)
  with pytest.raises(ValueError, match="mask has shape"):
    editing.inpaint(GMM, y, np.ones((4, 4)), k)
  with pytest.raises(ValueError, match="mask values"):
    editing.inpaint(GMM, y, 2 * MASK, k)
  with pytest.raises(ValueError, match="resample"):
    editing.inpaint(GMM, y, MASK, k, spec="dpmpp_2m", resample=2)
  with pytest.raises(ValueError, match="S_churn"):
    editing.inpaint(GMM, y, MASK, k, spec=sampling.SamplerSpec("edm", S_churn=1.0),
                    resample=2)
  with pytest.raises(ValueError, match="jump=20"):
    editing.inpaint(GMM, y, MASK, k, resample=2, jump=20)
