"""DDPM and EDM solve the same VP probability-flow ODE (the paper's Appendix C.3.4).

A DDPM ε-model wrapped by `ddpm_as_denoiser` is an EDM denoiser in x = x_t/sqrt(ᾱ_t),
σ_t = sqrt(1/ᾱ_t − 1). DDIM with η = 0 is Euler's method for that ODE on the DDPM
table, so at many steps it must agree with EDM's Heun solve on the same table, and
both with the closed-form solution for Gaussian data.
"""

import jax
import jax.numpy as jnp
import numpy as np

from edmjax import ddpm, oracle, samplers, schedules

STD = 0.5


def _setup():
  betas = ddpm.linear_beta_schedule()
  eps_fn = ddpm.ddpm_eps_from_denoiser(oracle.gaussian_denoiser(0.0, STD), betas)
  latents = jnp.asarray(np.random.default_rng(0).standard_normal((64, 4, 4, 1)))
  return betas, eps_fn, latents


def test_ddim_eta0_agrees_with_edm_heun_on_the_same_vp_ode():
  with jax.enable_x64(True):
    betas, eps_fn, latents = _setup()
    T = len(betas)
    sigmas_table = ddpm.ddpm_sigmas(betas)                      # σ_t, t = 0..T−1
    sigma_start = float(sigmas_table[T - 1])

    x_ddim = jax.jit(lambda z: ddpm.ddim_sampler(eps_fn, z, betas, num_steps=T))(latents)

    # EDM Heun on 100 levels of the same table, from the same start: x = x_T/sqrt(ᾱ_T).
    levels = schedules.append_zero(sigmas_table[ddpm.ddim_timesteps(100, T)])
    denoise = ddpm.ddpm_as_denoiser(eps_fn, betas)
    x_start = latents * np.sqrt(1 + sigma_start**2)
    x_heun = jax.jit(lambda x: samplers.solve_from(denoise, x, jnp.asarray(levels),
                                                   solver="heun"))(x_start)

    exact = oracle.gaussian_ode_solution(x_start, sigma_start, 0.0, 0.0, STD)
    scale = float(jnp.sqrt(jnp.mean(exact**2)))
    err_heun = float(jnp.sqrt(jnp.mean((x_heun - exact)**2))) / scale
    err_ddim = float(jnp.sqrt(jnp.mean((x_ddim - exact)**2))) / scale
    gap = float(jnp.sqrt(jnp.mean((x_ddim - x_heun)**2))) / scale
    # Measured: Heun on 100 table levels (199 NFE) 5.5e-4; DDIM at 1,000 NFE 3.0e-3
    # (its first-order error); the two differ by about the DDIM error.
    assert err_heun < 1e-3, err_heun
    assert err_ddim < 5e-3, err_ddim
    assert gap < 5e-3, gap
    assert err_heun < err_ddim / 3


def test_edm_heun_on_the_ddpm_table_is_second_order():
  # Error at the last nonzero level σ_0 ≈ 0.01 (the step to 0 is Euler by design),
  # for 50, 100, 200 levels of the DDPM table: slope of log error on log N ≈ −2.
  with jax.enable_x64(True):
    betas, eps_fn, latents = _setup()
    T = len(betas)
    table = ddpm.ddpm_sigmas(betas)
    denoise = ddpm.ddpm_as_denoiser(eps_fn, betas)
    x_start = latents * np.sqrt(1 + float(table[-1])**2)
    errors, ns = [], (50, 100, 200)
    for n in ns:
      levels = jnp.asarray(schedules.append_zero(table[ddpm.ddim_timesteps(n, T)]))
      _, traj = samplers.solve_from(denoise, x_start, levels, solver="heun",
                                    return_trajectory=True)
      exact = oracle.gaussian_ode_solution(x_start, float(table[-1]), float(levels[-2]),
                                           0.0, STD)
      errors.append(float(jnp.sqrt(jnp.mean((traj.x[-1] - exact)**2))))
    slope = np.polyfit(np.log(ns), np.log(errors), 1)[0]
    assert -2.3 < slope < -1.8, (slope, errors)


def test_ddim_eta0_is_euler_on_the_ddpm_table():
  with jax.enable_x64(True):
    betas, eps_fn, latents = _setup()
    T = len(betas)
    n = 25
    taus = ddpm.ddim_timesteps(n, T)
    levels = schedules.append_zero(ddpm.ddpm_sigmas(betas)[taus])
    x_ddim = ddpm.ddim_sampler(eps_fn, latents, betas, num_steps=n)
    denoise = ddpm.ddpm_as_denoiser(eps_fn, betas)
    sigma_start = float(levels[0])
    x_euler = samplers.solve_from(denoise, latents * np.sqrt(1 + sigma_start**2),
                                  jnp.asarray(levels), solver="euler")
    np.testing.assert_allclose(np.asarray(x_ddim), np.asarray(x_euler), rtol=1e-9,
                               atol=1e-9)
