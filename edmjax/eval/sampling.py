"""One entry point to draw images from an EDM denoiser or a DDPM ε-model with any sampler.

Evaluation compares samplers at a given number of network evaluations (NFE), for
models trained with either objective. `SamplerSpec` names a sampler and its step
count; `sample_images` runs it on a denoiser `denoise(x, sigma)` or an ε-model
`eps_fn(x_t, t)`:

=================  ==========================================  =====================
name               sampler                                     NFE
=================  ==========================================  =====================
'edm'              Heun, Karras σ steps (EDM Algorithm 1/2)    2·num_steps − 1
'euler'            Euler on the same steps                     num_steps
'dpmpp_2m'         DPM-Solver++(2M) on the same steps          num_steps
'ddpm'             ancestral sampling (Ho et al. 2020), all T  T
'ddim'             DDIM, η = 0 (Song et al. 2021)              num_steps
=================  ==========================================  =====================

A DDPM ε-model given to 'edm', 'euler' or 'dpmpp_2m' is bridged to a denoiser with
`ddpm.ddpm_as_denoiser` (Karras et al. 2022, Appendix C.3.4: the pre-trained model
with the paper's sampler): the Karras σ steps are clipped to the model's σ table
(σ_min ≥ σ_0, σ_max ≤ σ_{T−1}, as NVlabs/edm clips to `net.sigma_min/max`) and
rounded to it with `ddpm.ddpm_round_sigma`, so the ε-model is only queried at the
noise levels it was trained on. 'ddpm' and 'ddim' need an ε-model.

Latents are unit Gaussian NHWC. Nothing is jitted here: jit the caller with the
`SamplerSpec` static (it is a frozen dataclass, hashable).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from edmjax import _checks
from edmjax import ddpm
from edmjax import samplers

Array = jax.Array

__all__ = ["SAMPLER_NAMES", "SamplerSpec", "sample_images", "bridge_sigma_range",
           "steps_for_nfe"]

SAMPLER_NAMES = ("edm", "euler", "dpmpp_2m", "ddpm", "ddim")
_EPS_ONLY = ("ddpm", "ddim")


@dataclasses.dataclass(frozen=True)
class SamplerSpec:
  """A sampler and its settings (hashable: usable as a jit static argument).

  Attributes:
    name: one of `SAMPLER_NAMES`.
    num_steps: solver steps N ('edm', 'euler', 'dpmpp_2m', 'ddim'); ignored by 'ddpm'.
    sigma_min, sigma_max, rho: the Karras σ steps (Eq. 5) of the EDM-family samplers.
    S_churn: stochasticity of 'edm' (Algorithm 2); needs a key when > 0.
  """
  name: str = "edm"
  num_steps: int = 18
  sigma_min: float = 0.002
  sigma_max: float = 80.0
  rho: float = 7.0
  S_churn: float = 0.0

  def __post_init__(self):
    _checks.check_choice("name", self.name, SAMPLER_NAMES)
    _checks.check_int_at_least("num_steps", self.num_steps, 1)

  def nfe(self, T: int = 1000) -> int:
    """Network evaluations per sample (T: the DDPM model's number of steps)."""
    if self.name == "edm":
      return 2 * self.num_steps - 1
    if self.name == "ddpm":
      return T
    return self.num_steps

  @property
  def label(self) -> str:
    """A short human-readable name, e.g. 'edm-heun-18 (35 NFE)'."""
    if self.name == "ddpm":
      return "ddpm-ancestral"
    solver = {"edm": "heun"}.get(self.name, self.name)
    return f"{solver}-{self.num_steps}"


def steps_for_nfe(name: str, nfe: int) -> int:
  """The `num_steps` of sampler `name` that spends `nfe` evaluations (Heun: (nfe+1)/2)."""
  _checks.check_choice("name", name, SAMPLER_NAMES)
  _checks.check_int_at_least("nfe", nfe, 1)
  if name == "edm":
    if nfe % 2 == 0:
      raise ValueError(f"Heun ('edm') spends 2·num_steps − 1 evaluations, an odd number; "
                       f"got nfe={nfe}. Use {nfe - 1} or {nfe + 1}.")
    return (nfe + 1) // 2
  if name == "ddpm":
    raise ValueError("'ddpm' always takes all T steps; its NFE is T.")
  return nfe


def bridge_sigma_range(betas: Any, sigma_min: float, sigma_max: float
                       ) -> tuple[float, float]:
  """(σ_min, σ_max) clipped to the σ table of a DDPM β schedule (float, host).

  Raises:
    ValueError: if the clipped range is empty.
  """
  table = np.asarray(ddpm.ddpm_tables(betas).sigmas, np.float64)
  lo = max(float(sigma_min), float(table[0]))
  hi = min(float(sigma_max), float(table[-1]))
  if not lo < hi:
    raise ValueError(f"The σ range [{sigma_min}, {sigma_max}] does not overlap the DDPM "
                     f"table [{table[0]:.4g}, {table[-1]:.4g}].")
  return lo, hi


def sample_images(spec: SamplerSpec, latents: Array, key: Array | None = None, *,
                  denoise: Callable[[Array, Array], Array] | None = None,
                  eps_fn: Callable[[Array, Array], Array] | None = None,
                  betas: Any = None, return_trajectory: bool = False):
  """Draws images with the sampler `spec` from a denoiser or a DDPM ε-model.

  Give exactly one of `denoise` (an EDM denoiser D(x; σ)) or `eps_fn` with `betas`
  (a DDPM ε-model and its β table).

  Args:
    spec: the sampler.
    latents: NHWC unit Gaussian latents (B, H, W, C).
    key: one jax.random key or one per sample; needed by 'ddpm', by 'edm' with
      S_churn > 0; ignored otherwise.
    denoise: `denoise(x, sigma)`.
    eps_fn: `eps_fn(x_t, t)` with integer `t` of shape `(batch,)`.
    betas: the ε-model's β table (or `ddpm.DDPMTables`).
    return_trajectory: also return what the sampler records per step (a
      `samplers.Trajectory` for the EDM family, the stacked states for 'ddpm'/'ddim').

  Returns:
    Images shaped like `latents` (not clipped), or `(images, trajectory)`.

  Raises:
    ValueError: for a missing / doubled model, 'ddpm'/'ddim' without an ε-model, or
      a missing key.

  Example:
    >>> from edmjax import oracle
    >>> spec = SamplerSpec("edm", num_steps=8)
    >>> z = jax.random.normal(jax.random.key(0), (4, 8, 8, 1))
    >>> x = sample_images(spec, z, denoise=oracle.gaussian_denoiser(0.0, 0.5))
  """
  if (denoise is None) == (eps_fn is None):
    raise ValueError("Give exactly one model: denoise=D(x, sigma) for an EDM denoiser, or "
                     "eps_fn=eps(x_t, t) with betas for a DDPM ε-model.")
  if eps_fn is not None and betas is None:
    raise ValueError("eps_fn needs its β table: pass betas=... (e.g. "
                     "ddpm.linear_beta_schedule()).")
  if spec.name in _EPS_ONLY and eps_fn is None:
    raise ValueError(f"Sampler {spec.name!r} samples a DDPM ε-model (eps_fn, betas); for an "
                     "EDM denoiser use 'edm', 'euler' or 'dpmpp_2m'.")
  if spec.name == "ddpm":
    if key is None:
      raise ValueError("Sampler 'ddpm' (ancestral) adds noise at every step; pass a key.")
    return ddpm.ddpm_sampler(eps_fn, latents, key, betas, return_trajectory=return_trajectory)
  if spec.name == "ddim":
    return ddpm.ddim_sampler(eps_fn, latents, betas, num_steps=spec.num_steps,
                             return_trajectory=return_trajectory)

  sigma_min, sigma_max = spec.sigma_min, spec.sigma_max
  round_sigma = None
  if eps_fn is not None:
    tables = ddpm.ddpm_tables(betas)
    denoise = ddpm.ddpm_as_denoiser(eps_fn, tables)
    sigma_min, sigma_max = bridge_sigma_range(tables, sigma_min, sigma_max)
    round_sigma = functools.partial(_round_to_table, tables=tables)
  if spec.name == "edm":
    return samplers.edm_sampler(denoise, latents, key, num_steps=spec.num_steps,
                                sigma_min=sigma_min, sigma_max=sigma_max, rho=spec.rho,
                                S_churn=spec.S_churn, round_sigma=round_sigma,
                                return_trajectory=return_trajectory)
  sigmas = _karras_levels(spec.num_steps, sigma_min, sigma_max, spec.rho, round_sigma)
  if spec.name == "euler":
    x0 = latents * jnp.asarray(sigmas[0], latents.dtype)
    return samplers.solve_from(denoise, x0, sigmas, solver="euler",
                               return_trajectory=return_trajectory)
  return samplers.dpmpp_2m_sampler(denoise, latents, key, sigmas=sigmas,
                                   return_trajectory=return_trajectory)


def _round_to_table(sigma, tables):
  """σ ↦ nearest level of a DDPM table; the host table stays NumPy when σ is."""
  if isinstance(sigma, np.ndarray):
    table = np.asarray(tables.sigmas, np.float64)
    idx = np.argmin(np.abs(sigma.reshape(-1, 1) - table[None, :]), axis=1)
    return table[idx].reshape(sigma.shape)
  return ddpm.ddpm_round_sigma(sigma, tables)


def _karras_levels(num_steps, sigma_min, sigma_max, rho, round_sigma) -> np.ndarray:
  """Karras levels (Eq. 5) with a trailing 0, optionally rounded, float64 host."""
  from edmjax import schedules  # pylint: disable=g-import-not-at-top
  steps = np.asarray(schedules.edm_sigma_steps(num_steps, float(sigma_min),
                                               float(sigma_max), float(rho)), np.float64)
  if round_sigma is not None:
    steps = np.asarray(round_sigma(steps), np.float64)
    if np.any(np.diff(steps) >= 0):
      raise ValueError(f"Rounding {num_steps} Karras steps to the DDPM table gives repeated "
                       "levels; use fewer steps.")
  return np.append(steps, 0.0)
