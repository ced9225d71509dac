"""edmjax.sr: SR3 super-resolution with EDM preconditioning, headstart sampling, cascades.

SR3 (Saharia et al. 2021, arXiv 2104.07636) as conditional diffusion in the EDM
design space (Karras et al. 2022): the low-resolution image, bicubically upsampled,
is concatenated with the noisy input of a SongUNet (`edmjax.nn.sr3_unet.SR3UNet`);
the net is trained with the EDM loss, optionally on the residual HR − bicubic(LR);
samples come from `edm_sampler` or from a *headstart* at σ_start (one-step burst SR,
arXiv 2507.13607), with the LR consistency PSNR(A(SR), LR) reported with every result.

Modules (images NHWC in [-1, 1]; nothing jitted inside). A function named like its
module (`degrade.degrade`, `cascade.cascade`) is reached
through the module, so that `from edmjax.sr import degrade` is always the module (headstart sampling
is `edmjax.samplers.headstart`):

* `degrade` (the module; its function is `edmjax.sr.degrade.degrade`): area / bicubic downsampling by 2, 4, 8, blur, noise, consistency,
  colour error, the exact LR-consistency projection.
* `model`: `SRConfig`, the conditional (residual) denoiser, the SR3 net builder.
* `tiling`: overlapping tiles with a smooth blending window (any image size).
* `inference`: `sr_denoiser`, `super_resolve`, `sr_metrics`.
* `cascade`: a base generator followed by SR stages, one call.
* `train`: SR training: its config, data pairs (HR patches of scikit-image's
  photographs, `edmjax.data.patches`), step and strip hook, on the generic loop of
  `edmjax.train.runner`.
* `evaluate`: the σ_start × NFE table on a held-out image.
"""

from edmjax.sr.cascade import SRStage, trained_stage
from edmjax.sr.degrade import (DegradeConfig, area_downsample, bicubic_downsample,
                               degrade_clean, downsample, gaussian_blur, lr_consistency,
                               mean_colour_error, nearest_upsample, project_consistent,
                               upsample)
from edmjax.sr.inference import sr_denoiser, sr_metrics, super_resolve
from edmjax.sr.model import SRConfig, build_sr_net, condition, make_net_apply, make_sr_denoiser
from edmjax.sr.tiling import make_tiled_denoiser, tile_starts, tiled_apply

__all__ = [
    "DegradeConfig", "SRConfig", "SRStage", "area_downsample", "bicubic_downsample",
    "build_sr_net", "condition", "degrade_clean", "downsample",
    "gaussian_blur", "lr_consistency",
    "make_net_apply", "make_sr_denoiser", "make_tiled_denoiser", "mean_colour_error",
    "nearest_upsample", "project_consistent", "sr_denoiser", "sr_metrics", "super_resolve",
    "tile_starts", "tiled_apply", "trained_stage", "upsample",
]
