"""Samplers for the EDM design space (Karras et al. 2022), each one `lax.scan`.

A denoiser is `denoise(x, sigma) -> D(x; sigma)` with NHWC `x` (B, H, W, C) and
`sigma` of shape (B,). Every sampler takes `(denoise, latents, key)` with unit-Gaussian
NHWC latents, follows the dtype of the latents, runs under `jax.jit` (the caller
jits; step counts and option strings static, σ values and keys traced), and gives
each sample noise from its own key only: with one key, sample b uses
`fold_in(key, b)`; step i's noise is `normal(fold_in(key_b, i), image_shape)`.

* `edm_sampler`: Algorithm 2 of the paper (NVlabs/edm's `edm_sampler`).
* `ablation_sampler`: every schedule, scaling, discretization and solver of Table 1
  (NVlabs/edm's `ablation_sampler`), with the α-trapezoid generalisation of Heun.
* `solve_from`: Algorithm 2 from a state already at σ_0 over any σ table; the
  general deterministic Euler/Heun solver and the super-resolution "headstart" entry.
* `euler_ancestral_sampler`, `dpmpp_2m_sampler`: k-diffusion's Euler-ancestral and
  DPM-Solver++(2M) (Lu et al. 2022).
* The rest of k-diffusion's set, one file each: `dpm_2_sampler`,
  `dpm_2_ancestral_sampler`, `lms_sampler`, `dpmpp_2s_ancestral_sampler`,
  `dpmpp_sde_sampler`, `dpmpp_2m_sde_sampler`, `dpmpp_3m_sde_sampler`,
  `dpm_fast_sampler`, `dpm_adaptive_sampler` (DPM-Solver's single steps in
  `dpm_steps`).
* `ode_sampler`: the probability-flow ODE solved adaptively by diffrax (Tsit5,
  Dopri5, ...), one step-size controller per sample, returning the NFE used;
  `solve_adaptive` is the per-sample solve it and `edmjax.likelihood` share.
* `headstart`: start from an image u at σ_start (u + σ_start·n) and solve down
  (super-resolution's headstart, SDEdit).

Every sampler also takes `init=`: an image to start from, x_0 = init + σ_0·latents.

`return_trajectory=True` makes each return `(samples, Trajectory)`.
"""

from edmjax.samplers._common import SOLVERS, Trajectory, initial_state
from edmjax.samplers.ablation import ablation_sampler, default_sigma_range
from edmjax.samplers.ancestral import ancestral_step, euler_ancestral_sampler
from edmjax.samplers.dpm_2 import dpm_2_sampler
from edmjax.samplers.dpm_2_ancestral import dpm_2_ancestral_sampler
from edmjax.samplers.dpm_adaptive import AdaptiveInfo, dpm_adaptive_sampler
from edmjax.samplers.dpm_fast import dpm_fast_orders, dpm_fast_sampler
from edmjax.samplers.dpm_solver import dpmpp_2m_sampler
from edmjax.samplers.dpmpp_2m_sde import SDE_SOLVER_TYPES, dpmpp_2m_sde_sampler
from edmjax.samplers.dpmpp_2s_ancestral import dpmpp_2s_ancestral_sampler
from edmjax.samplers.dpmpp_3m_sde import dpmpp_3m_sde_sampler
from edmjax.samplers.dpmpp_sde import brownian_pair, dpmpp_sde_sampler
from edmjax.samplers.lms import MAX_LMS_ORDER, lms_coefficients, lms_sampler
from edmjax.samplers.edm import edm_sampler, solve_from
from edmjax.samplers.from_image import headstart, headstart_nfe, headstart_sigmas
from edmjax.samplers.ode import (ADAPTIVE_SOLVERS, ODEStats, check_continuous,
                                 ode_sampler, per_device, solve_adaptive, solver_nfe)

__all__ = [
    "SOLVERS", "Trajectory", "initial_state", "solve_from", "edm_sampler", "ablation_sampler",
    "default_sigma_range", "ancestral_step", "euler_ancestral_sampler",
    "dpmpp_2m_sampler", "headstart", "headstart_nfe", "headstart_sigmas",
    "dpm_2_sampler", "dpm_2_ancestral_sampler", "lms_sampler", "lms_coefficients",
    "MAX_LMS_ORDER", "dpmpp_2s_ancestral_sampler", "dpmpp_sde_sampler", "brownian_pair",
    "dpmpp_2m_sde_sampler", "SDE_SOLVER_TYPES", "dpmpp_3m_sde_sampler",
    "dpm_fast_sampler", "dpm_fast_orders", "dpm_adaptive_sampler", "AdaptiveInfo",
    "ADAPTIVE_SOLVERS", "ODEStats", "check_continuous", "ode_sampler", "per_device",
    "solve_adaptive", "solver_nfe",
]
