"""From a config to a network, a denoiser and a sampler (no jit here).

`build_net` turns a :class:`NetConfig` plus the data's shape into a flax module.
`make_apply` binds the module's calling convention (`model.apply(variables, x,
noise_labels, class_labels, augment_labels, train=..., rngs=...)`, NHWC);
`make_model_denoiser` / `make_eps_fn` wrap it as an EDM denoiser D(x; σ) or a DDPM
ε-model ε(x_t, t) (c_noise = t) for the objective of the config; `make_sample_fn`
gives `sample(variables, latents, key, class_labels)` for the periodic grids.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from edmjax import ddpm
from edmjax import precond
from edmjax.train.config import LossConfig, NetConfig, SampleConfig

__all__ = ["build_net", "compute_dtype", "scalings_fn", "ddpm_betas", "make_apply",
           "make_model_denoiser", "make_eps_fn", "make_sample_fn", "seed_latents_and_keys",
           "AUGMENT_DIM"]

AUGMENT_DIM = 9  # NVlabs' AugmentPipe label size


def compute_dtype(net_cfg: NetConfig):
  return jnp.bfloat16 if net_cfg.dtype == "bfloat16" else jnp.float32


def build_net(net_cfg: NetConfig, *, img_resolution: int, channels: int,
              label_dim: int = 0, augment_dim: int = 0):
  """The flax module of `net_cfg` for images (img_resolution, img_resolution, channels)."""
  from edmjax import nn  # pylint: disable=g-import-not-at-top
  common = dict(img_resolution=img_resolution, in_channels=channels, out_channels=channels,
                label_dim=label_dim, augment_dim=augment_dim,
                model_channels=net_cfg.model_channels,
                channel_mult=tuple(net_cfg.channel_mult),
                channel_mult_emb=net_cfg.channel_mult_emb, num_blocks=net_cfg.num_blocks,
                attn_resolutions=tuple(net_cfg.attn_resolutions), dropout=net_cfg.dropout,
                label_dropout=net_cfg.label_dropout, dtype=compute_dtype(net_cfg))
  if net_cfg.arch == "adm":
    return nn.DhariwalUNet(**common)
  if net_cfg.arch == "ddpmpp":
    return nn.SongUNet(embedding_type="positional", encoder_type="standard",
                       decoder_type="standard", channel_mult_noise=1,
                       resample_filter=(1, 1), **common)
  return nn.SongUNet(embedding_type="fourier", encoder_type="residual",
                     decoder_type="standard", channel_mult_noise=2,
                     resample_filter=(1, 3, 3, 1), **common)


def scalings_fn(loss_cfg: LossConfig) -> Callable:
  """σ ↦ Scalings of the objective (EDM with its σ_data; VP; VE)."""
  if loss_cfg.objective == "edm":
    if loss_cfg.sigma_data is None:
      raise ValueError("loss.sigma_data is None; resolve it from the data first "
                       "(edmjax.data.stats.estimate_sigma_data) or set a number.")
    return functools.partial(precond.edm_scalings, sigma_data=loss_cfg.sigma_data)
  if loss_cfg.objective == "vp":
    return functools.partial(precond.vp_scalings, beta_d=loss_cfg.beta_d,
                             beta_min=loss_cfg.beta_min)
  if loss_cfg.objective == "ve":
    return precond.ve_scalings
  raise ValueError(f"objective {loss_cfg.objective!r} has no EDM scalings; it is an "
                   "ε-prediction objective (use make_eps_fn).")


def ddpm_betas(loss_cfg: LossConfig) -> np.ndarray:
  """The β table (float64, host) of a DDPM objective."""
  if loss_cfg.ddpm_schedule == "cosine":
    return ddpm.cosine_beta_schedule(loss_cfg.ddpm_T)
  return ddpm.linear_beta_schedule(loss_cfg.ddpm_T, loss_cfg.ddpm_beta_start,
                                   loss_cfg.ddpm_beta_end)


def make_apply(model, variables, *, class_labels=None, augment_labels=None,
               train: bool = False, dropout_key=None):
  """F(x_in, c_noise) of `model` with `variables` ({'params': ..., 'buffers': ...})."""
  rngs = {"dropout": dropout_key} if dropout_key is not None else None

  def apply(x_in, c_noise):
    return model.apply(variables, x_in, c_noise.astype(jnp.float32), class_labels,
                       augment_labels, train=train, rngs=rngs)

  return apply


def make_model_denoiser(model, variables, loss_cfg: LossConfig, *, dtype=None, **kwargs):
  """D(x; σ) = c_skip x + c_out F(c_in x; c_noise) for an edm / vp / ve objective."""
  return precond.make_denoiser(make_apply(model, variables, **kwargs),
                               scalings_fn(loss_cfg), compute_dtype=dtype)


def make_eps_fn(model, variables, *, dtype=None, **kwargs):
  """ε(x_t, t) = F(x_t; c_noise = t) for a ddpm objective (float32 output)."""
  apply = make_apply(model, variables, **kwargs)

  def eps_fn(x_t, t):
    x_in = x_t if dtype is None else x_t.astype(dtype)
    return apply(x_in, t.astype(jnp.float32)).astype(x_t.dtype)

  return eps_fn


def make_sample_fn(model, loss_cfg: LossConfig, sample_cfg: SampleConfig, *,
                   dtype=None) -> Callable[..., Any]:
  """`sample(variables, latents, key, class_labels=None) -> images` (not jitted).

  edm / vp / ve runs use `edmjax.samplers.edm_sampler` (Heun, `num_steps`), DDPM runs
  `ddpm_sampler` (all T steps) or `ddim_sampler` (`num_steps`). `key` is one key or
  one per sample; `latents` are unit Gaussian NHWC.
  """
  is_ddpm = loss_cfg.objective == "ddpm"
  if is_ddpm and sample_cfg.sampler == "edm":
    sample_cfg = SampleConfig(**{**sample_cfg.__dict__, "sampler": "ddim"})
  if not is_ddpm and sample_cfg.sampler != "edm":
    raise ValueError(f"sample.sampler={sample_cfg.sampler!r} needs a ddpm objective; "
                     f"loss.objective={loss_cfg.objective!r} samples with 'edm'.")

  def sample(variables, latents, key, class_labels=None):
    if is_ddpm:
      eps_fn = make_eps_fn(model, variables, dtype=dtype, class_labels=class_labels)
      betas = ddpm_betas(loss_cfg)
      if sample_cfg.sampler == "ddpm":
        return ddpm.ddpm_sampler(eps_fn, latents, key, betas)
      return ddpm.ddim_sampler(eps_fn, latents, betas, num_steps=sample_cfg.num_steps,
                               key=key)
    from edmjax import samplers  # pylint: disable=g-import-not-at-top
    denoise = make_model_denoiser(model, variables, loss_cfg, dtype=dtype,
                                  class_labels=class_labels)
    sigma_max = 80.0 if sample_cfg.sigma_max is None else sample_cfg.sigma_max
    return samplers.edm_sampler(denoise, latents, key, num_steps=sample_cfg.num_steps,
                                sigma_min=sample_cfg.sigma_min, sigma_max=sigma_max,
                                rho=sample_cfg.rho, S_churn=sample_cfg.S_churn)

  return sample


def seed_latents_and_keys(seeds, image_shape):
  """Per-seed unit Gaussian latents and sampler keys (NHWC), as NVlabs' generate.py.

  Seed s gives latents normal(fold_in(key(s), 0)) and the sampler's key
  fold_in(key(s), 1), so an image depends on its seed only, not on the batch it
  is drawn in, the batch size or the device count.

  Args:
    seeds: (n,) integer array.
    image_shape: (H, W, C).

  Returns:
    (latents (n, H, W, C) float32, keys (n,) typed keys).
  """
  base = jax.vmap(jax.random.key)(jnp.asarray(seeds, jnp.uint32))
  latents = jax.vmap(lambda k: jax.random.normal(jax.random.fold_in(k, 0),
                                                 tuple(image_shape), jnp.float32))(base)
  keys = jax.vmap(lambda k: jax.random.fold_in(k, 1))(base)
  return latents, keys
