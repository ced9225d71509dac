"""The conditional denoiser of super-resolution: D(x; σ | x_LR), EDM-preconditioned.

SR3 (Saharia et al. 2021, arXiv 2104.07636) learns p(x_HR | x_LR) with a U-Net that
sees the upsampled low-resolution image u = up_s(x_LR). We keep EDM's
preconditioning (Karras et al. 2022, Eq. 7) and optionally learn the *residual*
r = x_HR − u instead of x_HR. Learning the residual is a change of variables of the
denoiser, so the sampler, loss and headstart all work in image space unchanged:

.. math::
  D(x; σ \\mid x_{LR}) = b + c_{skip}(σ)(x − b)
     + c_{out}(σ)\\,F_θ\\big(c_{in}(σ)(x − b);\\ c_{noise}(σ),\\ u\\big),
  \\qquad b = u \\text{ (residual) or } 0,

with the EDM scalings of σ_data = std(r) (residual) or std(x_HR). Because
D(y + σn) − y = D_r(r + σn) − r for y = b + r, the EDM loss of D on x_HR *is* the
EDM loss of the residual denoiser on r; and a sample from σ_max starts from
σ_max·z, where adding b is immaterial. The residual has zero mean and no colour of
its own, which is our first guard against colour shift; `degrade.project_consistent`
is the second (optional).

Noise-conditioning augmentation: u may be replaced by u + σ_aug ε (training draws
σ_aug at random, inference passes a chosen value, 0 by default); the network is told
σ_aug (`edmjax.nn.sr3_unet.aug_labels`), and the base b is the augmented u, the
condition the sampler actually has.

Images are NHWC in [-1, 1]; nothing is jitted here.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import jax.numpy as jnp

from edmjax._arrays import Array
from edmjax import _checks
from edmjax import precond
from edmjax.nn.sr3_unet import SR3UNet
from edmjax.sr import degrade
from edmjax.train.config import NetConfig


__all__ = ["SRConfig", "build_sr_net", "condition", "make_sr_denoiser", "make_net_apply"]


@dataclasses.dataclass(frozen=True)
class SRConfig:
  """What turns a denoiser into a super-resolver (static, hashable).

  Attributes:
    degrade: the degradation that made the pairs (scale, area/bicubic, blur, noise).
    residual: learn r = x_HR − up(x_LR) (True) or x_HR itself.
    upsample: how the condition u is made: 'bicubic' (SR3), 'bilinear', 'nearest'.
    aug_sigma_max: noise-conditioning augmentation in training: with probability
      `aug_prob`, σ_aug ~ U(0, aug_sigma_max) is added to u (0 disables it and
      builds the network without the σ_aug label).
    aug_prob: the probability of augmenting a training example.
  """
  degrade: degrade.DegradeConfig = degrade.DegradeConfig()
  residual: bool = True
  upsample: str = "bicubic"
  aug_sigma_max: float = 0.0
  aug_prob: float = 0.5

  def __post_init__(self):
    _checks.check_choice("upsample", self.upsample, degrade.UPSAMPLE_METHODS)
    _checks.check_nonnegative("aug_sigma_max", self.aug_sigma_max)
    if not 0.0 <= self.aug_prob <= 1.0:
      raise ValueError(f"aug_prob={self.aug_prob} must be in [0, 1].")

  @property
  def scale(self) -> int:
    return self.degrade.scale

  @property
  def noise_aug(self) -> bool:
    return self.aug_sigma_max > 0


def build_sr_net(net_cfg: NetConfig, *, patch: int, channels: int, noise_aug: bool = False):
  """The `SR3UNet` of a `NetConfig` ('ddpmpp' or 'ncsnpp' presets of SongUNet)."""
  if net_cfg.arch not in ("ddpmpp", "ncsnpp"):
    raise ValueError(f"net.arch={net_cfg.arch!r} is not supported for SR3; allowed "
                     "values: 'ddpmpp', 'ncsnpp' (the SongUNet family).")
  preset = (dict(embedding_type="positional", encoder_type="standard",
                 decoder_type="standard", channel_mult_noise=1, resample_filter=(1, 1))
            if net_cfg.arch == "ddpmpp" else
            dict(embedding_type="fourier", encoder_type="residual", decoder_type="standard",
                 channel_mult_noise=2, resample_filter=(1, 3, 3, 1)))
  dtype = jnp.bfloat16 if net_cfg.dtype == "bfloat16" else jnp.float32
  return SR3UNet(img_resolution=patch, channels=channels, noise_aug=noise_aug,
                 model_channels=net_cfg.model_channels,
                 channel_mult=tuple(net_cfg.channel_mult),
                 channel_mult_emb=net_cfg.channel_mult_emb, num_blocks=net_cfg.num_blocks,
                 attn_resolutions=tuple(net_cfg.attn_resolutions), dropout=net_cfg.dropout,
                 dtype=dtype, **preset)


def condition(lr: Array, cfg: SRConfig, *, key=None, sigma_aug=None) -> tuple[Array, Array]:
  """The condition u = up_s(x_LR) (+ σ_aug ε) and its σ_aug (B,), NHWC.

  Args:
    lr: low-resolution images (B, h, w, C).
    cfg: the SR configuration (scale, upsampling).
    key: a key for the augmentation noise (needed when some σ_aug > 0 is traced or
      positive).
    sigma_aug: None (no augmentation, σ_aug = 0), a scalar or (B,).
  """
  _checks.check_nhwc("lr", lr)
  u = degrade.upsample(lr, cfg.scale, cfg.upsample)
  b = lr.shape[0]
  if sigma_aug is None:
    return u, jnp.zeros((b,), u.dtype)
  _checks.check_nonnegative("sigma_aug", sigma_aug)
  sigma_aug = jnp.broadcast_to(jnp.asarray(sigma_aug, u.dtype), (b,))
  if key is None:
    v = _checks.concrete_value(sigma_aug)
    if v is not None and not v.any():
      return u, sigma_aug
    raise ValueError("sigma_aug > 0 adds noise to the condition; pass a jax.random key.")
  noise = jax.random.normal(key, u.shape, u.dtype)
  return u + sigma_aug[:, None, None, None] * noise, sigma_aug


def make_net_apply(model, variables, *, noise_aug: bool, train: bool = False,
                   dropout_key=None) -> Callable[..., Array]:
  """F(x_in, c_noise, u, sigma_aug) of an `SR3UNet` with bound variables."""
  rngs = {"dropout": dropout_key} if dropout_key is not None else None

  def apply(x_in, c_noise, u, sigma_aug):
    return model.apply(variables, x_in, c_noise.astype(jnp.float32), u, None,
                       sigma_aug.astype(jnp.float32) if noise_aug else None,
                       train=train, rngs=rngs)

  return apply


def make_sr_denoiser(apply_fn: Callable[..., Array], u: Array, *, residual: bool = True,
                     sigma_data: float = 0.5, sigma_aug=None,
                     scalings: Callable | None = None,
                     compute_dtype: Any = None) -> Callable[[Array, Array], Array]:
  """D(x; σ | u) in image space (NHWC), ready for any sampler, headstart or loss.

  .. math:: D(x; σ) = b + c_{skip}(x − b) + c_{out} F(c_{in}(x − b); c_{noise}, u),
            \\quad b = u\\ \\text{if residual else}\\ 0.

  Args:
    apply_fn: `apply_fn(x_in, c_noise, u, sigma_aug) -> F` (e.g. `make_net_apply`);
      x_in and u NHWC of the output size, c_noise and sigma_aug (B,).
    u: the condition (B, H, W, C_u), the upsampled (possibly augmented) LR image,
      closed over (the sampler sees an unconditional denoiser).
    residual: denoise the residual x − u (True) or x.
    sigma_data: σ_d of the EDM scalings (std of the residual, or of the images).
    sigma_aug: σ_aug of `u`, (B,) or a scalar; None is 0.
    scalings: σ ↦ `precond.Scalings`; default EDM with `sigma_data`.
    compute_dtype: optional network compute dtype (see `precond.make_denoiser`).

  Returns:
    `denoise(x, sigma) -> D(x; σ)`, shaped and typed like x.
  """
  _checks.check_nhwc("u", u)
  if scalings is None:
    _checks.check_positive("sigma_data", sigma_data)
    scalings = lambda s: precond.edm_scalings(s, sigma_data)  # noqa: E731
  b = u.shape[0]
  sa = jnp.zeros((b,), jnp.float32) if sigma_aug is None else jnp.broadcast_to(
      jnp.asarray(sigma_aug, jnp.float32), (b,))

  def apply(x_in, c_noise, u_k, sa_k):
    return apply_fn(x_in, c_noise, u_k, sa_k)

  inner = precond.make_denoiser(apply, scalings, compute_dtype=compute_dtype)

  def denoise(x, sigma):
    if x.shape[:3] != u.shape[:3]:
      raise ValueError(f"x has shape {x.shape} but the condition u has {u.shape}; they "
                       "must agree in batch, height and width.")
    base = u.astype(x.dtype) if residual else None
    r = x - base if residual else x
    d = inner(r, sigma, u, sa)
    return d + base if residual else d

  return denoise
