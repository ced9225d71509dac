"""edmjax.eval.sampling: one entry point for every sampler, and the DDPM→EDM bridge."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from edmjax import ddpm
from edmjax import oracle
from edmjax import samplers
from edmjax.eval import sampling

STD = 0.5
BETAS = ddpm.linear_beta_schedule(1000)


def _ideal_eps():
  return ddpm.ddpm_eps_from_denoiser(oracle.gaussian_denoiser(0.0, STD), BETAS)


def test_bridge_steps_only_on_the_ddpm_table():
  """Heun on an ε-model: every level it visits is a level of the DDPM σ table."""
  spec = sampling.SamplerSpec("edm", num_steps=18)
  z = jax.random.normal(jax.random.key(0), (64, 4, 4, 1))
  _, traj = jax.jit(lambda z: sampling.sample_images(
      spec, z, eps_fn=_ideal_eps(), betas=BETAS, return_trajectory=True))(z)
  table = np.asarray(ddpm.ddpm_sigmas(BETAS), np.float32)
  levels = np.asarray(traj.sigma)
  assert np.all(np.min(np.abs(levels[:, None] - table[None]), axis=1) <= 1e-6 * levels)
  assert np.all(np.diff(levels) < 0)
  assert levels[0] == pytest.approx(table[np.argmin(np.abs(table - 80.0))], rel=1e-6)
  assert spec.nfe() == 35 and spec.label == "heun-18"


@pytest.mark.parametrize("name,steps", [("edm", 12), ("euler", 20), ("dpmpp_2m", 12)])
def test_bridged_eps_model_samples_like_its_denoiser_on_the_rounded_table(name, steps):
  """ε* of N(0, 0.5²) through the VP bridge = the Gaussian denoiser on table levels."""
  spec = sampling.SamplerSpec(name, num_steps=steps)
  z = jax.random.normal(jax.random.key(1), (128, 4, 4, 1))
  den = oracle.gaussian_denoiser(0.0, STD)
  x_eps = sampling.sample_images(spec, z, eps_fn=_ideal_eps(), betas=BETAS)
  lo, hi = sampling.bridge_sigma_range(BETAS, spec.sigma_min, spec.sigma_max)
  levels = sampling._karras_levels(steps, lo, hi, spec.rho,  # pylint: disable=protected-access
                                   lambda s: np.asarray(ddpm.ddpm_round_sigma(s, BETAS)))
  x_ref = samplers.solve_from(den, z * levels[0], levels,
                              solver="euler" if name == "euler" else "heun")
  if name == "dpmpp_2m":
    x_ref = samplers.dpmpp_2m_sampler(den, z, sigmas=levels)
  np.testing.assert_allclose(np.asarray(x_eps), np.asarray(x_ref), atol=2e-4)


def test_eps_only_samplers_and_missing_models_give_clear_errors():
  z = jnp.zeros((2, 4, 4, 1))
  den = oracle.gaussian_denoiser(0.0, STD)
  with pytest.raises(ValueError, match="DDPM ε-model"):
    sampling.sample_images(sampling.SamplerSpec("ddim", num_steps=5), z, denoise=den)
  with pytest.raises(ValueError, match="exactly one model"):
    sampling.sample_images(sampling.SamplerSpec(), z)
  with pytest.raises(ValueError, match="betas"):
    sampling.sample_images(sampling.SamplerSpec(), z, eps_fn=_ideal_eps())
  with pytest.raises(ValueError, match="pass a key"):
    sampling.sample_images(sampling.SamplerSpec("ddpm"), z, eps_fn=_ideal_eps(), betas=BETAS)
  with pytest.raises(ValueError, match="odd"):
    sampling.steps_for_nfe("edm", 34)
  assert sampling.steps_for_nfe("edm", 35) == 18
  assert sampling.SamplerSpec("ddpm").nfe(1000) == 1000
