"""Facts about guidance (classifier-free, autoguidance, guidance interval)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from edmjax import guidance, model, oracle, sampling

SHAPE = (2, 4, 4, 1)


def _counted(fn, counter):
  """`fn` that counts its Python calls (traces) in counter['trace'] and its runtime
  executions in counter['run'] (a debug callback runs only when the code does)."""
  def wrapped(x, sigma, *labels):
    counter["trace"] += 1
    jax.debug.callback(lambda: counter.__setitem__("run", counter["run"] + 1))
    return fn(x, sigma, *labels)
  return wrapped


def _pair():
  counts = {"trace": 0, "run": 0}
  main = model.Denoiser(oracle.gaussian_denoiser(0.1, 0.5))
  guide = model.Denoiser(_counted(oracle.gaussian_denoiser(0.0, 0.9), counts))
  return main, guide, counts


SPECS = {
    "edm": sampling.SamplerSpec("edm", num_steps=6, S_churn=5.0),
    "ablation": sampling.SamplerSpec("ablation", num_steps=6, discretization="vp",
                                     schedule="vp", scaling="vp"),
    "heun": sampling.SamplerSpec("heun", num_steps=6),
    "euler": sampling.SamplerSpec("euler", num_steps=6),
    "euler_ancestral": sampling.SamplerSpec("euler_ancestral", num_steps=6),
    "dpmpp_2m": sampling.SamplerSpec("dpmpp_2m", num_steps=6),
    **{name: sampling.SamplerSpec(name, num_steps=4) for name in (
        "dpm_2", "dpm_2_ancestral", "lms", "dpmpp_2s_ancestral", "dpmpp_sde",
        "dpmpp_2m_sde", "dpmpp_3m_sde")},
    "dpm_fast": sampling.SamplerSpec("dpm_fast", nfe=6),
    "dpm_adaptive": sampling.SamplerSpec("dpm_adaptive", rtol=0.2, max_steps=50),
    "headstart": sampling.SamplerSpec("headstart", num_steps=3, sigma_start=2.0),
    "ddpm": sampling.SamplerSpec("ddpm", T=20),
    "ddim": sampling.SamplerSpec("ddim", num_steps=5, T=20),
    "ode": sampling.SamplerSpec("ode", rtol=1e-3, atol=1e-3),
}


def test_every_sampler_is_covered():
  assert set(SPECS) == set(sampling.SAMPLER_NAMES)


@pytest.mark.parametrize("name", sorted(SPECS))
def test_w_one_is_exactly_the_main_model_and_never_calls_the_guide(name):
  main, guide, counts = _pair()
  spec = SPECS[name]
  z = jax.random.normal(jax.random.key(0), SHAPE)
  init = jnp.zeros(SHAPE) if name == "headstart" else None
  run = jax.jit(lambda net, z: sampling.sample(net, z, jax.random.key(1), spec, init=init),
                static_argnums=0)
  expected = run(main, z)
  got = run(guidance.guided(main, guide, 1.0, interval=(0.5, 3.0)), z)
  np.testing.assert_array_equal(got, expected)
  assert counts == {"trace": 0, "run": 0}
  # w ≠ 1 does use the guide, and changes the samples.
  guided = run(guidance.guided(main, guide, 2.0), z)
  assert counts["run"] > 0 and not np.array_equal(guided, expected)


def test_guided_denoiser_is_the_extrapolation_of_main_from_guide():
  main, guide, _ = _pair()
  x = jax.random.normal(jax.random.key(2), SHAPE)
  sigma = jnp.array([0.7, 1.5])
  d_main, d_guide = main(x, sigma), guide(x, sigma)
  for w in (0.0, 1.5, 3.0):
    np.testing.assert_allclose(guidance.guided(main, guide, w)(x, sigma),
                               d_guide + w * (d_main - d_guide), rtol=1e-6, atol=1e-7)


def test_outside_the_interval_the_main_model_alone_and_no_guide_call():
  main, guide, counts = _pair()
  x = jax.random.normal(jax.random.key(3), SHAPE)
  net = guidance.guided(main, guide, 2.0, interval=(0.5, 3.0))
  for sigma in ([0.2, 0.5], [3.5, 80.0]):        # σ_lo itself is outside: (σ_lo, σ_hi]
    sigma = jnp.array(sigma)
    np.testing.assert_array_equal(net(x, sigma), main(x, sigma))
  assert counts == {"trace": 0, "run": 0}
  # A batch that straddles the interval: the outside sample keeps D_main exactly.
  sigma = jnp.array([3.0, 4.0])
  out = net(x, sigma)
  np.testing.assert_array_equal(out[1], main(x, sigma)[1])
  d_guide = guide(x, sigma)
  np.testing.assert_allclose(out[0], (d_guide + 2.0 * (main(x, sigma) - d_guide))[0],
                             rtol=1e-6, atol=1e-7)


def test_inside_a_jitted_sampler_the_guide_runs_only_for_levels_in_the_interval():
  main, guide, counts = _pair()
  spec = sampling.SamplerSpec("heun", num_steps=8)
  interval = (0.3, 5.0)
  z = jax.random.normal(jax.random.key(4), SHAPE)
  net = guidance.guided(main, guide, 2.0, interval=interval)
  jax.block_until_ready(jax.jit(lambda z: sampling.sample(net, z, spec=spec))(z))
  # Heun evaluates D at t_i (i < N) and at t_{i+1} (i < N − 1).
  t = sampling.sigma_table(net, 8, 0.002, 80.0)
  levels = np.concatenate([t[:-1], t[1:-1]])
  expected = int(np.sum((levels > interval[0]) & (levels <= interval[1])))
  assert 0 < expected < levels.size
  assert counts["run"] == expected
  # An interval above every level: traced into the program, never run.
  counts.update(trace=0, run=0)
  far = guidance.guided(main, guide, 2.0, interval=(100.0, 200.0))
  jax.block_until_ready(jax.jit(lambda z: sampling.sample(far, z, spec=spec))(z))
  assert counts["trace"] > 0 and counts["run"] == 0


def test_traced_w_sweeps_without_recompiling_and_w_one_skips_the_guide():
  main, guide, counts = _pair()
  x = jax.random.normal(jax.random.key(5), SHAPE)
  sigma = jnp.array([1.0, 2.0])

  @jax.jit
  def apply(w):
    return guidance.guided(main, guide, w)(x, sigma)

  np.testing.assert_array_equal(apply(jnp.float32(1.0)), main(x, sigma))
  assert counts["run"] == 0
  d_guide = guide(x, sigma)
  counts.update(run=0)
  np.testing.assert_allclose(apply(jnp.float32(2.5)), d_guide + 2.5 * (main(x, sigma) - d_guide),
                             rtol=1e-6, atol=1e-7)
  assert counts["run"] == 1 and apply._cache_size() == 1  # pylint: disable=protected-access


def _conditional(counts=None):
  """D(x; σ, y) of Gaussian classes: class k has mean k/4, no labels mean 0."""
  def fn(x, sigma, labels):
    if counts is not None:
      counts.append(labels is None)
    mean = jnp.zeros((x.shape[0],)) if labels is None else labels @ jnp.arange(3.0) / 4
    s2 = 0.25
    return mean[:, None, None, None] + (s2 / (s2 + sigma**2))[:, None, None, None] * (
        x - mean[:, None, None, None])
  return model.Denoiser(fn, label_dim=3)


def test_classifier_free_guidance_guides_with_the_same_network_without_labels():
  calls = []
  net = _conditional(calls)
  x = jax.random.normal(jax.random.key(6), SHAPE)
  sigma, labels = jnp.array([1.0, 2.0]), jnp.array([2, 1])
  cfg = guidance.classifier_free(net, 3.0)
  assert cfg.label_dim == 3
  out = cfg(x, sigma, labels)
  assert calls == [False, True]       # main with the labels, then the guide without
  cond, uncond = net(x, sigma, labels), net(x, sigma)
  np.testing.assert_allclose(out, uncond + 3.0 * (cond - uncond), rtol=1e-6, atol=1e-6)
  # Through the sampling entry point, labels reach the main model.
  z = jax.random.normal(jax.random.key(7), SHAPE)
  spec = sampling.SamplerSpec("euler", num_steps=4)
  a = sampling.sample(cfg, z, spec=spec, class_labels=labels)
  b = sampling.sample(cfg, z, spec=spec, class_labels=jnp.array([0, 0]))
  assert not np.allclose(a, b)


def test_autoguidance_with_a_conditional_guide_passes_it_the_labels():
  calls = []
  main, guide = _conditional(), _conditional(calls)
  x = jax.random.normal(jax.random.key(8), SHAPE)
  guidance.guided(main, guide, 2.0)(x, jnp.array([1.0, 1.0]), jnp.array([0, 2]))
  assert calls == [False]


def test_sigma_range_is_the_intersection_and_rounding_is_kept():
  rounding = functools.partial(np.round, decimals=1)
  main = model.Denoiser(oracle.gaussian_denoiser(0.0, 0.5), sigma_min=0.01, sigma_max=50.0,
                        round_sigma=rounding)
  guide = model.Denoiser(oracle.gaussian_denoiser(0.0, 0.5), sigma_min=0.05, sigma_max=80.0)
  net = guidance.guided(main, guide, 2.0)
  assert (net.sigma_min, net.sigma_max) == (0.05, 50.0)
  assert net.round_sigma is rounding


def test_errors_name_the_problem():
  main, guide, _ = _pair()
  with pytest.raises(ValueError, match="interval"):
    guidance.guided(main, guide, 2.0, interval=(3.0, 1.0))
  with pytest.raises(ValueError, match="finite"):
    guidance.guided(main, guide, float("nan"))
  with pytest.raises(ValueError, match="do not overlap"):
    guidance.guided(model.Denoiser(main.fn, sigma_max=1.0),
                    model.Denoiser(guide.fn, sigma_min=2.0), 2.0)
  with pytest.raises(ValueError, match="label_dim=3"):
    guidance.guided(main, _conditional(), 2.0)
  with pytest.raises(ValueError, match="class-conditional"):
    guidance.classifier_free(main, 2.0)
  with pytest.raises(ValueError, match="round σ to different tables"):
    guidance.guided(model.Denoiser(main.fn, round_sigma=np.round),
                    model.Denoiser(guide.fn, round_sigma=np.floor), 2.0)
