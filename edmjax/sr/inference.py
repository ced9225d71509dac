"""Super-resolving an image: the denoiser of a trained SR3 net, samplers, metrics.

* `sr_denoiser`: D(x; σ | x_LR) of an `SR3UNet` and its variables, optionally tiled
  (`edmjax.sr.tiling`) so that any image size runs through the training patch size.
* `super_resolve`: one call from x_LR to x_SR by headstart (σ_start, N steps) or by
  full sampling from σ_max (NVlabs' `edm_sampler`), both through
  `edmjax.sampling.sample` (`sr_spec`), with the optional LR-consistency projection.
* `sr_metrics`: PSNR and SSIM against the HR image (`edmjax.eval.image_metrics`,
  equal to scikit-image's), the LR consistency PSNR(A(SR), LR) and the mean-colour
  error against the LR input — reported with every result.

Images are NHWC in [-1, 1]; nothing is jitted here.
"""

from __future__ import annotations

import jax.numpy as jnp

from edmjax._arrays import Array
from edmjax import _checks
from edmjax import keys as keys_lib
from edmjax import sampling
from edmjax.eval import image_metrics
from edmjax.sr import degrade
from edmjax.sr import model as model_lib
from edmjax.sr import tiling


__all__ = ["MODES", "sr_denoiser", "sr_spec", "super_resolve", "sr_metrics"]

MODES = ("bicubic", "headstart", "full")


def sr_denoiser(model, variables, lr: Array, cfg: model_lib.SRConfig, sigma_data: float, *,
                tile: int | None = None, overlap: int = 16, margin: int = 0,
                tile_batch: int | None = None, progress=None, sigma_aug=None, key=None):
  """(denoise, u): the conditional denoiser for the LR images `lr` and its condition.

  Args:
    model: the `SR3UNet`.
    variables: its variables ({'params': ...}).
    lr: (B, h, w, C) low-resolution images, NHWC.
    cfg: the run's `SRConfig` (scale, residual, upsampling, noise augmentation).
    sigma_data: σ_d the net was trained with.
    tile: None runs the net on the whole image; T blends overlapping T×T tiles.
    overlap, margin, tile_batch, progress: the tiling (see
      `edmjax.sr.tiling.tiled_apply`): `tile_batch` tiles per net call bound the
      memory of any image size; `progress` is called after each call.
    sigma_aug: noise augmentation of the condition at inference (None: none).
    key: for the augmentation noise when sigma_aug > 0.
  """
  u, sa = model_lib.condition(lr, cfg, key=key, sigma_aug=sigma_aug)
  apply = model_lib.make_net_apply(model, variables, noise_aug=cfg.noise_aug)

  def tile_denoise(x, sigma, u_t, sa_t):
    return model_lib.make_sr_denoiser(apply, u_t, residual=cfg.residual,
                                      sigma_data=sigma_data, sigma_aug=sa_t)(x, sigma)

  if tile is None:
    return (lambda x, sigma: tile_denoise(x, sigma, u, sa)), u

  def denoise(x, sigma):
    sigma = jnp.broadcast_to(jnp.asarray(sigma, x.dtype), x.shape[:1])
    return tiling.tiled_apply(lambda xt, ut, st, at: tile_denoise(xt, st, ut, at), x, u,
                              tile=tile, overlap=overlap, margin=margin,
                              per_sample=(sigma, sa), tile_batch=tile_batch,
                              progress=progress)

  return denoise, u


def sr_spec(mode: str = "headstart", *, sigma_start=0.5, num_steps: int = 2,
            sigma_min=0.002, sigma_max=80.0, rho=7.0, solver: str = "euler",
            S_churn=0.0) -> sampling.SamplerSpec | None:
  """The `SamplerSpec` of an SR mode: 'headstart' (from u at σ_start), 'full' (NVlabs'
  `edm_sampler` from σ_max, NFE 2N − 1) or 'bicubic' (None: no sampler).

  `sigma_start` may be a traced JAX scalar (a σ_start sweep compiles once).
  """
  _checks.check_choice("mode", mode, MODES)
  if mode == "bicubic":
    return None
  if mode == "headstart":
    return sampling.SamplerSpec("headstart", sigma_start=sigma_start, num_steps=num_steps,
                                sigma_min=sigma_min, rho=rho, solver=solver,
                                S_churn=S_churn)
  return sampling.SamplerSpec("edm", num_steps=num_steps, sigma_min=sigma_min,
                              sigma_max=sigma_max, rho=rho, S_churn=S_churn)


def super_resolve(denoise, u: Array, key, *, mode: str = "headstart", sigma_start=0.5,
                  num_steps: int = 2, sigma_min=0.002, sigma_max=80.0, rho=7.0,
                  solver: str = "euler", S_churn=0.0, project_lr: Array | None = None,
                  scale: int | None = None):
  """x_SR from the condition u by 'headstart', 'full' sampling or 'bicubic' (= u).

  Both samplers run through `edmjax.sampling.sample` (`sr_spec`) with the starting
  noise n = `keys.start_noise(key, u)`: headstart starts from x_0 = u + σ_start n
  (`init=u`), full sampling from σ_max n.

  Args:
    denoise: `denoise(x, sigma)` with the condition closed over (`sr_denoiser`), or
      an `edmjax.model.Denoiser`.
    u: the upsampled LR image (B, H, W, C), NHWC (headstart's start, the output
      shape of full sampling).
    key: one key or one per sample.
    mode: 'headstart' (σ_start, N = num_steps, `solver` Euler by default), 'full'
      (NVlabs' `edm_sampler` from σ_max with num_steps, NFE 2N − 1) or 'bicubic'.
    sigma_start, num_steps, sigma_min, sigma_max, rho, solver, S_churn: the sampler.
    project_lr: if given (the LR images), the result is projected onto
      {x : area_downsample(x) = LR} (`degrade.project_consistent`; needs `scale`).
    scale: the SR factor (only for the projection).
  """
  spec = sr_spec(mode, sigma_start=sigma_start, num_steps=num_steps, sigma_min=sigma_min,
                 sigma_max=sigma_max, rho=rho, solver=solver, S_churn=S_churn)
  if project_lr is not None and scale is None:
    raise ValueError("project_lr needs the scale of the area downsampling.")
  if spec is None:
    out = u
  else:
    noise = keys_lib.start_noise(key, u)
    out = sampling.sample(denoise, noise, key, spec,
                          init=u if spec.name == "headstart" else None)
  if project_lr is not None:
    out = degrade.project_consistent(out, project_lr, scale)
  return out


def sr_metrics(sr: Array, hr: Array | None, lr: Array,
               degrade_cfg: degrade.DegradeConfig) -> dict:
  """Per-image metrics of a result (arrays of shape (B,) or (B, C)).

  Returns a dict with `psnr`, `ssim` (against HR, data range 2, scikit-image's
  defaults; omitted when hr is None), `consistency` = PSNR(A(SR), LR) in dB and
  `colour_error` = |mean(SR) − mean(LR)| per channel in units of 1/255.
  """
  sr = jnp.clip(sr, -1.0, 1.0)
  out = {}
  if hr is not None:
    out["psnr"] = image_metrics.psnr(hr, sr, data_range=2.0)
    out["ssim"] = image_metrics.ssim(hr, sr, data_range=2.0)
  out["consistency"] = degrade.lr_consistency(sr, lr, degrade_cfg)
  out["colour_error"] = degrade.mean_colour_error(sr, lr)
  return out
