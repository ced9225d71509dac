"""edmjax's DDPM and DDIM samplers against diffusers 0.42.1, float64.

`DDPMScheduler` over all T steps (β and β̃ variances, clip_sample on and off,
linear and squaredcos_cap_v2 β) and `DDIMScheduler` for its three timestep
spacings (η = 0, and η = 0.5 with edmjax's noise handed as `variance_noise`), on
the ε-model of a Gaussian mixture. Agreement max|edmjax − diffusers| /
max|diffusers| <= 1e-12 with diffusers' tables built in float64.

Documented differences, tested here:

* diffusers builds β and ᾱ in float32 (`dtype=torch.float32`): its ᾱ table is off
  the float64 formula by ~1e-7 relative; edmjax's tables are float64.
* diffusers' DDIM steps from t to t − ⌊T/N⌋ whatever the spacing, not to the next
  timestep of its own sequence. For 'leading' (the DDIM paper's spacing), and for
  'trailing' when N divides T, the two coincide and edmjax equals diffusers. For
  'linspace' and 'trailing' otherwise edmjax steps to the next timestep τ_{i+1} (the
  DDIM paper's subsequence); the tests check that edmjax's timesteps are diffusers'
  and that edmjax's own step, `ddpm.ddim_step`, chained along diffusers' (t, t −
  ⌊T/N⌋) pairs reproduces diffusers exactly — the target step is the only
  difference.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import refdata
from edmjax import ddpm, keys

P_META, P = refdata.load("diffusers_ddpm")
D_META, D = refdata.load("diffusers_ddim")


def test_pinned_reference():
  assert P_META["reference"] == D_META["reference"] == "huggingface/diffusers"
  assert P_META["version"] == D_META["version"] == "0.42.1"


def _betas(schedule, T):
  return ddpm.linear_beta_schedule(T) if schedule == "linear" else ddpm.cosine_beta_schedule(T)


def _eps(arrays, betas):
  return ddpm.ddpm_eps_from_denoiser(
      refdata.numpy_denoiser(arrays["gmm_means"], arrays["gmm_stds"], arrays["gmm_weights"]),
      betas)


@pytest.mark.parametrize("case", P_META["cases"], ids=lambda c: c["name"])
def test_ddpm_matches_diffusers_ddpm_scheduler(case):
  name, T = case["name"], P_META["T"]
  betas = _betas(case["beta_schedule"], T)
  np.testing.assert_allclose(betas, P[f"{name}/betas"], rtol=1e-12, atol=0)
  # diffusers' own (float32) table is the float64 formula rounded: ~1e-7, not 1e-12.
  as_is = refdata.rel_error(np.cumprod(1 - betas), P[f"{name}/alphas_cumprod_as_is"])
  assert 1e-9 < as_is < 1e-6, as_is
  variance = "beta" if case["variance_type"] == "fixed_large" else "posterior"
  with jax.enable_x64(True), jax.disable_jit():
    z = jnp.asarray(P["latents"])
    k = keys.per_sample_keys(jax.random.key(case["noise_seed"]), z.shape[0])
    head = np.stack([keys.step_noise(k, i, z) for i in range(2)])
    np.testing.assert_array_equal(head, P[f"{name}/noise_head"])
    out = ddpm.ddpm_sampler(_eps(P, betas), z, jax.random.key(case["noise_seed"]), betas,
                            variance=variance, clip_denoised=case["clip_sample"])
  assert refdata.rel_error(out, P[f"{name}/out"]) <= 1e-12


def _consistent(steps):
  """True when each prev_t diffusers stepped to is the next timestep it evaluates."""
  return bool(np.all(steps[:-1, 1] == steps[1:, 0]))


@pytest.mark.parametrize("case", D_META["cases"], ids=lambda c: c["name"])
def test_ddim_matches_diffusers_ddim_scheduler(case):
  name, T, n = case["name"], D_META["T"], case["num_steps"]
  betas = ddpm.linear_beta_schedule(T)
  steps = D[f"{name}/steps"]
  np.testing.assert_array_equal(ddpm.ddim_timesteps(n, T, case["spacing"]), steps[:, 0])
  key = None if case["noise_seed"] is None else jax.random.key(case["noise_seed"])
  with jax.enable_x64(True), jax.disable_jit():
    z = jnp.asarray(D["latents"])
    eps_fn = _eps(D, betas)
    out = ddpm.ddim_sampler(eps_fn, z, betas, num_steps=n, eta=case["eta"], key=key,
                            spacing=case["spacing"])
    if _consistent(steps):
      assert case["spacing"] == "leading" or T % n == 0
      assert refdata.rel_error(out, D[f"{name}/out"]) <= 1e-12
      return
    assert case["spacing"] != "leading"
    assert refdata.rel_error(out, D[f"{name}/out"]) > 1e-3   # a different method
    # diffusers' rule with edmjax's step: ᾱ of t − ⌊T/N⌋ (1 below 0), same noise.
    ab = np.cumprod(1 - betas)
    np.testing.assert_allclose(ab, D["alphas_cumprod"], rtol=1e-14, atol=0)
    per_sample = None if key is None else keys.per_sample_keys(key, z.shape[0])
    x = z
    for i, (t, prev) in enumerate(steps):
      noise = None if key is None else keys.step_noise(per_sample, i, x)
      x = ddpm.ddim_step(x, eps_fn(x, jnp.full((z.shape[0],), t)), ab[t],
                         ab[prev] if prev >= 0 else 1.0, case["eta"], noise)
  assert refdata.rel_error(x, D[f"{name}/out"]) <= 1e-12
