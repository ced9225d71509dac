"""Cascaded generation: a base generator followed by super-resolution stages, one call.

Cascaded diffusion models (Ho et al. 2021, arXiv 2106.15282; SR3, Saharia et al.
2021, Sec. 4.3) generate a small image and upsample it by conditional diffusion, one
stage at a time:

.. math::
  x^{(0)} \\sim p_θ(x),\\qquad x^{(k)} \\sim p_{θ_k}\\big(x \\mid
  \\mathrm{up}_{s_k}(\\mathrm{clip}(x^{(k-1)})) + σ^{(k)}_{aug} ε\\big),

with an optional noise augmentation σ_aug of each stage's condition (the stage's
network must have been trained with it, `SRConfig.aug_sigma_max` > 0), which
makes a stage robust to the artefacts of the one before.

Images are NHWC in [-1, 1]; not jitted here (jit `cascade` with the stages closed
over, or pass them as static arguments).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp

from edmjax._arrays import Array
from edmjax import _checks
from edmjax.sr import inference
from edmjax.sr import model as model_lib


__all__ = ["SRStage", "trained_stage", "cascade"]


@dataclasses.dataclass(frozen=True)
class SRStage:
  """One super-resolution stage of a cascade.

  Attributes:
    make_denoiser: `make_denoiser(lr, key) -> (denoise, u)`: the stage's conditional
      denoiser for the LR images and its upsampled condition (for a trained net:
      `functools.partial(edmjax.sr.inference.sr_denoiser, model, variables, cfg=...,
      sigma_data=..., sigma_aug=...)` called with `lr` and `key=`).
    mode: 'headstart', 'full' or 'bicubic' (see `inference.super_resolve`).
    sigma_start, num_steps, sigma_max, solver, S_churn: the stage's sampler (`solver`
      is headstart's; full sampling is EDM's Heun).
  """
  make_denoiser: Callable[..., tuple[Callable, Array]]
  mode: str = "headstart"
  sigma_start: float = 0.5
  num_steps: int = 2
  sigma_max: float = 80.0
  solver: str = "euler"
  S_churn: float = 0.0

  def __post_init__(self):
    _checks.check_choice("mode", self.mode, inference.MODES)
    _checks.check_int_at_least("num_steps", self.num_steps, 1)
    _checks.check_positive("sigma_start", self.sigma_start)


def trained_stage(model, variables, cfg: model_lib.SRConfig, sigma_data: float, *,
                  sigma_aug=None, tile=None, overlap=16, **sampler) -> SRStage:
  """An `SRStage` of a trained `SR3UNet` (see `inference.sr_denoiser`)."""

  def make(lr, key):
    return inference.sr_denoiser(model, variables, lr, cfg, sigma_data, tile=tile,
                                 overlap=overlap, sigma_aug=sigma_aug, key=key)

  return SRStage(make_denoiser=make, **sampler)


def cascade(base: Callable[[Any], Array], stages: Sequence[SRStage], key, *,
            clip: bool = True) -> tuple[Array, ...]:
  """Generates with `base` and upsamples through every stage in turn.

  Args:
    base: `base(key) -> images` (B, h, w, C), NHWC in [-1, 1] (e.g. `edm_sampler`
      of an unconditional net, closed over its latents' shape).
    stages: the SR stages, applied in order.
    key: one jax.random key; stage k uses fold_in(key, k + 1) (split inside for the
      condition's augmentation noise and the sampler).
    clip: clip each level to [-1, 1] before it conditions the next stage.

  Returns:
    The images of every level: (x⁽⁰⁾, x⁽¹⁾, ..., x⁽ᴷ⁾), each NHWC.

  Example:
    >>> from edmjax import oracle, sampling
    >>> from edmjax.sr import degrade
    >>> z = jax.random.normal(jax.random.key(0), (2, 4, 4, 1))
    >>> def base(key):                        # a stand-in for an unconditional model
    ...   return sampling.sample(oracle.gaussian_denoiser(0.0, 0.5), z, key, "euler")
    >>> def make(lr, key):                    # a stand-in for a trained SR net
    ...   u = degrade.upsample(lr, 2)
    ...   return oracle.gaussian_denoiser(u, 0.1), u
    >>> levels = cascade(base, [SRStage(make), SRStage(make)], jax.random.key(1))
    >>> [x.shape for x in levels]             # 4× the base resolution with two 2× stages
    [(2, 4, 4, 1), (2, 8, 8, 1), (2, 16, 16, 1)]
  """
  if not stages:
    raise ValueError("cascade needs at least one SR stage.")
  levels = [base(jax.random.fold_in(key, 0))]
  for k, stage in enumerate(stages):
    k_cond, k_sample = jax.random.split(jax.random.fold_in(key, k + 1))
    lr = levels[-1]
    if clip:
      lr = jnp.clip(lr, -1.0, 1.0)
    denoise, u = stage.make_denoiser(lr, k_cond)
    levels.append(inference.super_resolve(
        denoise, u, k_sample, mode=stage.mode, sigma_start=stage.sigma_start,
        num_steps=stage.num_steps, sigma_max=stage.sigma_max, solver=stage.solver,
        S_churn=stage.S_churn))
  return tuple(levels)
