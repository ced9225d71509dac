"""The one sampling entry point: `sampling.sample(model, latents, key, spec)`.

Facts: each name runs exactly the sampler function it names (bitwise); the model's
noise range is applied once, by NVlabs' rule (clip, then round); a DDPM ε-model is
only queried on its own levels; bad specs fail when they are made, naming the option.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from edmjax import ddpm, keys, oracle, sampling, samplers, schedules
from edmjax.model import Denoiser, EpsModel

DEN = oracle.gaussian_denoiser(0.1, 0.5)
Z = jax.random.normal(jax.random.key(0), (3, 4, 4, 1))
KEY = jax.random.key(7)


def _eq(a, b):
  np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_each_name_is_the_function_it_names_bitwise():
  table = schedules.karras_sigmas(6, 0.002, 80.0, 7.0)
  x0 = Z * jnp.asarray(table[0], Z.dtype)
  cases = {
      "edm": samplers.edm_sampler(DEN, Z, KEY, num_steps=6, S_churn=5.0),
      "ablation": samplers.ablation_sampler(DEN, Z, num_steps=6, discretization="vp",
                                            schedule="vp", scaling="vp"),
      "heun": samplers.solve_from(DEN, x0, table, solver="heun"),
      "euler": samplers.solve_from(DEN, x0, table, solver="euler"),
      "euler_ancestral": samplers.euler_ancestral_sampler(DEN, Z, KEY, sigmas=table),
      "dpmpp_2m": samplers.dpmpp_2m_sampler(DEN, Z, sigmas=table),
  }
  specs = {
      "edm": sampling.SamplerSpec("edm", num_steps=6, S_churn=5.0),
      "ablation": sampling.SamplerSpec("ablation", num_steps=6, discretization="vp",
                                       schedule="vp", scaling="vp"),
  }
  for name, want in cases.items():
    spec = specs.get(name, sampling.SamplerSpec(name, num_steps=6))
    _eq(sampling.sample(DEN, Z, KEY, spec), want)


def test_ddpm_and_ddim_names_run_the_eps_model():
  betas = ddpm.linear_beta_schedule(200)
  eps = ddpm.ddpm_eps_from_denoiser(DEN, betas)
  m = EpsModel(eps, betas)
  _eq(sampling.sample(m, Z, KEY, sampling.SamplerSpec("ddim", num_steps=7)),
      ddpm.ddim_sampler(eps, Z, betas, num_steps=7))
  _eq(sampling.sample(m, Z, KEY, "ddpm"), ddpm.ddpm_sampler(eps, Z, KEY, betas))
  assert sampling.SamplerSpec("ddpm").nfe(T=200) == 200
  # The β̃ variance and the DDIM spacings reach the functions they name.
  _eq(sampling.sample(m, Z, KEY, sampling.SamplerSpec("ddpm", variance="beta_tilde")),
      ddpm.ddpm_sampler(eps, Z, KEY, betas, variance="posterior"))
  _eq(sampling.sample(m, Z, KEY, sampling.SamplerSpec("ddim", num_steps=7,
                                                      spacing="leading")),
      ddpm.ddim_sampler(eps, Z, betas, num_steps=7, spacing="leading"))


def test_nvlabs_rule_clips_the_range_to_the_model():
  net = Denoiser(DEN, sigma_min=0.02, sigma_max=10.0)
  _, traj = sampling.sample(net, Z, None, sampling.SamplerSpec("edm", num_steps=5),
                            return_trajectory=True)
  np.testing.assert_allclose(np.asarray(traj.sigma)[[0, -1]], [10.0, 0.02], rtol=1e-6)
  table = sampling.sigma_table(net, 5, 0.002, 80.0)
  np.testing.assert_array_equal(table, schedules.karras_sigmas(5, 0.02, 10.0))
  with pytest.raises(ValueError, match="does not overlap"):
    sampling.sample(net, Z, None, sampling.SamplerSpec("edm", sigma_min=20.0,
                                                       sigma_max=80.0))


@pytest.mark.parametrize("name", ["edm", "heun", "euler", "dpmpp_2m", "euler_ancestral",
                                  "ablation"])
def test_a_ddpm_model_is_only_queried_on_its_own_levels(name):
  betas = ddpm.linear_beta_schedule(1000)
  levels = np.asarray(ddpm.ddpm_sigmas(betas), np.float64)
  seen = []

  def eps_fn(x_t, t):
    seen.append(t)
    return jnp.zeros_like(x_t)

  spec = sampling.SamplerSpec(name, num_steps=8)
  out, traj = sampling.sample(EpsModel(eps_fn, betas), Z, KEY, spec,
                              return_trajectory=True)
  assert np.all(np.isfinite(np.asarray(out)))
  sig = np.asarray(traj.sigma, np.float64)
  assert sig.min() >= levels[0] * (1 - 1e-6) and sig.max() <= levels[-1] * (1 + 1e-6)
  if name != "ablation":  # ablation records σ(t_i) of its own schedule, rounded too
    nearest = levels[np.argmin(np.abs(sig[:, None] - levels[None]), axis=1)]
    np.testing.assert_allclose(sig, nearest, rtol=1e-6)


def test_too_many_steps_for_a_discrete_table_is_a_clear_error():
  betas = ddpm.linear_beta_schedule(10)
  m = EpsModel(lambda x, t: jnp.zeros_like(x), betas)
  with pytest.raises(ValueError, match="repeated levels.*fewer steps"):
    sampling.sample(m, Z, None, sampling.SamplerSpec("dpmpp_2m", num_steps=30))


def test_bad_specs_fail_when_made_naming_the_option():
  with pytest.raises(ValueError, match="sampler='nope'.*'edm'"):
    sampling.SamplerSpec("nope")
  with pytest.raises(ValueError, match="no option 'eta'.*num_steps"):
    sampling.SamplerSpec("edm", eta=1.0)
  with pytest.raises(ValueError, match="num_steps=1 is too small"):
    sampling.SamplerSpec("edm", num_steps=1)
  with pytest.raises(ValueError, match="sigma_max=inf.*finite"):
    sampling.SamplerSpec("dpmpp_2m", sigma_max=float("inf"))
  with pytest.raises(ValueError, match="sigma_min=90.0 must be smaller than sigma_max"):
    sampling.SamplerSpec("edm", sigma_min=90.0)
  with pytest.raises(ValueError, match="solver='rk4'"):
    sampling.SamplerSpec("ablation", solver="rk4")
  with pytest.raises(ValueError, match=r"num_steps='x' is not a valid int"):
    sampling.SamplerSpec.parse("edm", ["num_steps=x"])
  spec = sampling.SamplerSpec.parse("ablation", ["solver=euler", "sigma_max=none",
                                                 "num_steps=5"])
  assert spec == sampling.SamplerSpec("ablation", solver="euler", sigma_max=None,
                                      num_steps=5)
  assert hash(spec) == hash(sampling.SamplerSpec("ablation", num_steps=5,
                                                 solver="euler", sigma_max=None))
  assert spec.nfe() == 5 and sampling.SamplerSpec("edm").nfe() == 35


def test_steps_for_nfe():
  assert sampling.steps_for_nfe("edm", 35) == 18
  assert sampling.steps_for_nfe("dpmpp_2m", 10) == 10
  with pytest.raises(ValueError, match="nearest it can are \\[33, 35\\]"):
    sampling.steps_for_nfe("heun", 34)


def test_noise_needs_a_key_and_labels_need_a_conditional_model():
  with pytest.raises(ValueError, match="adds noise; pass a jax.random key"):
    sampling.sample(DEN, Z, None, sampling.SamplerSpec("edm", S_churn=1.0))
  with pytest.raises(ValueError, match="unconditional"):
    sampling.sample(DEN, Z, None, "edm", class_labels=jnp.zeros((3,), jnp.int32))
  got = []

  def fn(x, sigma, labels):
    got.append(labels)
    return DEN(x, sigma)

  net = Denoiser(fn, label_dim=4)
  sampling.sample(net, Z, None, sampling.SamplerSpec("euler", num_steps=2),
                  class_labels=jnp.array([0, 3, 1]))
  np.testing.assert_array_equal(np.asarray(got[-1]), np.eye(4)[[0, 3, 1]])
  with pytest.raises(ValueError, match="class label 4 is not allowed.*0 to 3"):
    sampling.sample(net, Z, None, "euler", class_labels=jnp.array([0, 4, 1]))


def test_init_starts_from_an_image():
  u = jnp.full(Z.shape, 0.3)
  _, traj = sampling.sample(DEN, Z, None, sampling.SamplerSpec("dpmpp_2m", num_steps=4,
                                                               sigma_max=0.5),
                            init=u, return_trajectory=True)
  np.testing.assert_allclose(np.asarray(traj.x[0]), np.asarray(u + 0.5 * Z), rtol=1e-6)
  with pytest.raises(ValueError, match="starts from an image: pass init"):
    sampling.sample(DEN, Z, None, "headstart")
  with pytest.raises(ValueError, match="init has shape"):
    sampling.sample(DEN, Z, None, "edm", init=u[:1])
  n = keys.start_noise(KEY, u)
  _eq(sampling.sample(DEN, n, KEY, sampling.SamplerSpec("headstart", sigma_start=0.7,
                                                        num_steps=3), init=u),
      samplers.headstart(DEN, u, KEY, sigma_start=0.7, num_steps=3))


def test_no_retrace_when_latents_or_keys_change():
  spec = sampling.SamplerSpec("euler_ancestral", num_steps=4)

  @jax.jit
  @chex.assert_max_traces(n=1)
  def run(z, k):
    return sampling.sample(DEN, z, k, spec)

  a = run(Z, KEY)
  b = run(Z + 1.0, jax.random.key(3))
  assert not np.array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("name,steps", [("edm", 12), ("euler", 20), ("dpmpp_2m", 12)])
def test_bridged_eps_model_samples_like_its_denoiser_on_the_rounded_table(name, steps):
  """ε* of N(0, 0.5²) through the VP bridge = the Gaussian denoiser on the levels of
  `sigma_table` (the Karras steps clipped and rounded to the DDPM table)."""
  betas = ddpm.linear_beta_schedule(1000)
  den = oracle.gaussian_denoiser(0.0, 0.5)
  eps = EpsModel(ddpm.ddpm_eps_from_denoiser(den, betas), betas)
  spec = sampling.SamplerSpec(name, num_steps=steps)
  z = jax.random.normal(jax.random.key(1), (128, 4, 4, 1))
  levels = sampling.sigma_table(ddpm.ddpm_as_denoiser(eps), steps, 0.002, 80.0)
  table = np.asarray(ddpm.ddpm_sigmas(betas), np.float64)
  assert levels[0] == table[np.argmin(np.abs(table - 80.0))] and levels[-2] == table[0]
  if name == "dpmpp_2m":
    want = samplers.dpmpp_2m_sampler(den, z, sigmas=levels)
  else:
    want = samplers.solve_from(den, z * levels[0], levels,
                               solver="euler" if name == "euler" else "heun")
  np.testing.assert_allclose(np.asarray(sampling.sample(eps, z, None, spec)),
                             np.asarray(want), atol=2e-4)
