"""From a config to a network and to the model value of a trained run (no jit here).

`build_net` turns a :class:`NetConfig` plus the data's shape into a flax module.
`make_apply` binds the module's calling convention (`model.apply(variables, x,
noise_labels, class_labels, augment_labels, train=..., rngs=...)`, NHWC);
`make_model_denoiser` / `make_eps_fn` wrap it as an EDM denoiser D(x; σ) or a DDPM
ε-model ε(x_t, t) (c_noise = t) for the objective of the config (the training
step's view, with dropout and augmentation labels).

`run_model(cfg, variables)` is the one place that turns a trained run into the
model value every sampler takes (`edmjax.model.Denoiser`), and so the one place
that branches on the training objective for sampling:

=========  ==================================================  ===================
objective  model                                               σ range (NVlabs)
=========  ==================================================  ===================
edm        EDMPrecond: c_skip x + c_out F(c_in x; ¼ ln σ)       [0, ∞)
edm2       NVlabs/edm2 Precond: the same, u(σ) unused          [0, ∞)
vp         VPPrecond: x − σ F(x/√(1+σ²); (M−1) t(σ))            [σ(ε_t), σ(1)]
ve         VEPrecond: x + σ F(x; ln(σ/2))                        [σ_min, σ_max] of
                                                               the loss (0.02, 100)
ddpm       the VP bridge of the ε-model, rounded to its table  [σ_0, σ_{T−1}]
=========  ==================================================  ===================

Example (a DDPM run; `variables` come from a checkpoint in practice, `loop.load_run`):
  >>> import jax
  >>> from edmjax import sampling
  >>> from edmjax.train import config, models, state
  >>> cfg = config.TrainConfig(
  ...     net=config.NetConfig(model_channels=8, channel_mult=(1,), num_blocks=1,
  ...                          attn_resolutions=()),
  ...     data=config.DataConfig(image_shape=(8, 8, 1), num_classes=10),
  ...     loss=config.LossConfig(objective="ddpm"))
  >>> net = models.build_run_net(cfg)
  >>> variables = jax.eval_shape(lambda k: state.init_variables(net, k, (8, 8, 1)),
  ...                            jax.random.key(0))          # (shapes only, here)
  >>> model = models.run_model(cfg, variables)
  >>> round(model.sigma_min, 4), round(model.sigma_max, 1), model.eps.T  # its σ table
  (0.01, 157.4, 1000)
  >>> # The Karras steps of 'edm' from 80 to 0.002, clipped and rounded to that table:
  >>> sampling.sigma_table(model, 4, 0.002, 80.0).round(3)
  array([8.0288e+01, 1.1605e+01, 7.9900e-01, 1.0000e-02, 0.0000e+00])
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable

import jax.numpy as jnp
import numpy as np

from edmjax import ddpm
from edmjax import guidance
from edmjax import losses
from edmjax import nn
from edmjax.nn import edm2_unet
from edmjax import precond
from edmjax import schedules
from edmjax.model import Denoiser, EpsModel
from edmjax.train.config import LossConfig, NetConfig, TrainConfig

__all__ = ["build_net", "build_run_net", "run_geometry", "compute_dtype", "scalings_fn",
           "sigma_range", "loss_weight", "ddpm_betas", "make_apply", "make_model_denoiser",
           "make_uncertainty_denoiser", "weight_renormalization",
           "make_eps_fn", "run_model", "RunModelFn", "GuidedModelFn", "AUGMENT_DIM"]

AUGMENT_DIM = 9  # NVlabs' AugmentPipe label size


def compute_dtype(net_cfg: NetConfig):
  return jnp.bfloat16 if net_cfg.dtype == "bfloat16" else jnp.float32


def build_net(net_cfg: NetConfig, *, img_resolution: int, channels: int,
              label_dim: int = 0, augment_dim: int = 0):
  """The flax module of `net_cfg` for images (img_resolution, img_resolution, channels)."""
  if net_cfg.arch == "edm2":
    if augment_dim:
      raise ValueError("net.arch='edm2' takes no augmentation labels; set "
                       "data.augment_p=0.")
    return nn.EDM2UNet(
        img_resolution=img_resolution, img_channels=channels, label_dim=label_dim,
        model_channels=net_cfg.model_channels, channel_mult=tuple(net_cfg.channel_mult),
        channel_mult_noise=net_cfg.channel_mult_noise,
        channel_mult_emb=net_cfg.channel_mult_emb, num_blocks=net_cfg.num_blocks,
        attn_resolutions=tuple(net_cfg.attn_resolutions),
        label_balance=net_cfg.label_balance, concat_balance=net_cfg.concat_balance,
        channels_per_head=net_cfg.channels_per_head, dropout=net_cfg.dropout,
        res_balance=net_cfg.res_balance, attn_balance=net_cfg.attn_balance,
        clip_act=net_cfg.clip_act, logvar_channels=net_cfg.logvar_channels,
        label_dropout=net_cfg.label_dropout, dtype=compute_dtype(net_cfg))
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


def weight_renormalization(net_cfg: NetConfig) -> Callable[[Any], Any] | None:
  """`params -> params` run after each optimizer update: EDM2's forced weight
  normalisation (`edmjax.nn.edm2_unet.renormalize`) for 'edm2', else None."""
  return edm2_unet.renormalize if net_cfg.arch == "edm2" else None


def run_geometry(cfg: TrainConfig) -> tuple[tuple[int, int, int], int, int]:
  """(image_shape, label_dim, augment_dim) of a resolved run's network.

  Raises:
    ValueError: when `cfg.data.image_shape` or (for a class-conditional run)
      `cfg.data.num_classes` is not known yet (resolve the config from the data:
      `edmjax.train.loop.resolve_config`).
  """
  dc = cfg.data
  if dc.image_shape is None or (dc.cond and dc.num_classes is None):
    raise ValueError("data.image_shape / data.num_classes are None: the config is not "
                     "resolved from the data yet (edmjax.train.loop.resolve_config; "
                     "loop.load_run does it for runs saved without them).")
  label_dim = int(dc.num_classes) if dc.cond else 0
  augment_dim = AUGMENT_DIM if dc.augment_p > 0 else 0
  return tuple(int(v) for v in dc.image_shape), label_dim, augment_dim


def build_run_net(cfg: TrainConfig):
  """The flax module of a resolved run (`build_net` on its `run_geometry`)."""
  image_shape, label_dim, augment_dim = run_geometry(cfg)
  return build_net(cfg.net, img_resolution=image_shape[0], channels=image_shape[2],
                   label_dim=label_dim, augment_dim=augment_dim)


def scalings_fn(loss_cfg: LossConfig) -> Callable:
  """σ ↦ Scalings of the objective (EDM and EDM2 with their σ_data; VP; VE)."""
  if loss_cfg.objective in ("edm", "edm2"):
    if loss_cfg.sigma_data is None:
      raise ValueError("loss.sigma_data is None; resolve it from the data first "
                       "(edmjax.data.stats.estimate_sigma_data) or set a number.")
    fn = precond.edm_scalings if loss_cfg.objective == "edm" else precond.edm2_scalings
    return functools.partial(fn, sigma_data=loss_cfg.sigma_data)
  if loss_cfg.objective == "vp":
    return functools.partial(precond.vp_scalings, beta_d=loss_cfg.beta_d,
                             beta_min=loss_cfg.beta_min)
  if loss_cfg.objective == "ve":
    return precond.ve_scalings
  raise ValueError(f"objective {loss_cfg.objective!r} has no EDM scalings; it is an "
                   "ε-prediction objective (use make_eps_fn).")


def sigma_range(loss_cfg: LossConfig) -> tuple[float, float]:
  """(sigma_min, sigma_max) a network of an edm / vp / ve objective supports.

  NVlabs' preconditioners: EDMPrecond (and EDM2's Precond) [0, ∞); VPPrecond [σ(ε_t), σ(1)] of its
  β_d, β_min (σ(t) = sqrt(exp(½ β_d t² + β_min t) − 1)); VEPrecond [σ_min, σ_max].
  """
  if loss_cfg.objective in ("edm", "edm2"):
    return 0.0, math.inf
  if loss_cfg.objective == "vp":
    lo, hi = (float(schedules.vp_sigma(t, loss_cfg.beta_d, loss_cfg.beta_min))
              for t in (loss_cfg.epsilon_t, 1.0))
    return lo, hi
  if loss_cfg.objective == "ve":
    return float(loss_cfg.sigma_min), float(loss_cfg.sigma_max)
  raise ValueError(f"objective {loss_cfg.objective!r} is an ε-model; its range is its σ "
                   "table (edmjax.ddpm.ddpm_as_denoiser).")


def loss_weight(loss_cfg: LossConfig) -> Callable:
  """σ ↦ λ(σ) of the objective: EDM's (σ² + σ_d²)/(σ σ_d)² (EDM2's before its learned
  e^{-u}), else 1/σ² (VP, VE, and DDPM's ε loss seen through the VP bridge)."""
  if loss_cfg.objective in ("edm", "edm2"):
    return functools.partial(losses.edm_loss_weight, sigma_data=loss_cfg.sigma_data)
  return losses.vp_loss_weight


def ddpm_betas(loss_cfg: LossConfig) -> np.ndarray:
  """The β table (float64, host) of a DDPM objective."""
  if loss_cfg.ddpm_schedule == "cosine":
    return ddpm.cosine_beta_schedule(loss_cfg.ddpm_T)
  return ddpm.linear_beta_schedule(loss_cfg.ddpm_T, loss_cfg.ddpm_beta_start,
                                   loss_cfg.ddpm_beta_end)


def make_apply(model, variables, *, class_labels=None, augment_labels=None,
               train: bool = False, dropout_key=None, return_logvar: bool = False):
  """F(x_in, c_noise) of `model` with `variables` ({'params': ..., 'buffers': ...});
  `(F, u)` with `return_logvar` (EDM2UNet's uncertainty head)."""
  rngs = {"dropout": dropout_key} if dropout_key is not None else None
  extra = {"return_logvar": True} if return_logvar else {}

  def apply(x_in, c_noise):
    return model.apply(variables, x_in, c_noise.astype(jnp.float32), class_labels,
                       augment_labels, train=train, rngs=rngs, **extra)

  return apply


def make_model_denoiser(model, variables, loss_cfg: LossConfig, *, dtype=None, **kwargs):
  """D(x; σ) = c_skip x + c_out F(c_in x; c_noise) for an edm / vp / ve objective."""
  return precond.make_denoiser(make_apply(model, variables, **kwargs),
                               scalings_fn(loss_cfg), compute_dtype=dtype)


def make_uncertainty_denoiser(model, variables, loss_cfg: LossConfig, *, dtype=None,
                              **kwargs):
  """(D(x; σ), u(σ)) of an EDM2 network: what `edmjax.losses.edm2_loss` trains."""
  return precond.make_uncertainty_denoiser(
      make_apply(model, variables, return_logvar=True, **kwargs), scalings_fn(loss_cfg),
      compute_dtype=dtype)


def make_eps_fn(model, variables, *, dtype=None, **kwargs):
  """ε(x_t, t) = F(x_t; c_noise = t) for a ddpm objective (float32 output)."""
  apply = make_apply(model, variables, **kwargs)

  def eps_fn(x_t, t):
    x_in = x_t if dtype is None else x_t.astype(dtype)
    return apply(x_in, t.astype(jnp.float32)).astype(x_t.dtype)

  return eps_fn


def run_model(cfg: TrainConfig, variables, *, dtype=None) -> Denoiser:
  """The model value of a trained run: its network with `variables`, ready to sample.

  The one place that turns a run into a model (see the module docstring): edm, vp and
  ve runs are `Denoiser`s with NVlabs' preconditioning and σ range
  (`sigma_range`); DDPM runs are the VP bridge of their ε-model
  (`ddpm.ddpm_as_denoiser`), which carries the run's σ table (range and rounding)
  and the ε-model itself for 'ddpm' / 'ddim'. Evaluation mode (no dropout), no
  augmentation labels; class-conditional runs take one-hot labels (None: NVlabs'
  zeros).

  Args:
    cfg: a resolved `TrainConfig` (`data.image_shape` known; `loss.sigma_data` a
      number for edm runs).
    variables: {'params': ..., **buffers} (usually the EMA parameters).
    dtype: compute dtype of the network (default: `cfg.net.dtype`).

  Returns:
    An `edmjax.model.Denoiser`.
  """
  net = build_run_net(cfg)
  _, label_dim, _ = run_geometry(cfg)
  dtype = compute_dtype(cfg.net) if dtype is None else dtype
  if cfg.loss.objective == "ddpm":
    def eps(x_t, t, class_labels=None):
      return make_eps_fn(net, variables, dtype=dtype, class_labels=class_labels)(x_t, t)

    fn = eps if label_dim else (lambda x_t, t: eps(x_t, t))
    return ddpm.ddpm_as_denoiser(EpsModel(fn, ddpm_betas(cfg.loss), label_dim=label_dim))

  def denoise(x, sigma, class_labels=None):
    return make_model_denoiser(net, variables, cfg.loss, dtype=dtype,
                               class_labels=class_labels)(x, sigma)

  lo, hi = sigma_range(cfg.loss)
  fn = denoise if label_dim else (lambda x, sigma: denoise(x, sigma))
  return Denoiser(fn, sigma_min=lo, sigma_max=hi, label_dim=label_dim)


@dataclasses.dataclass(frozen=True)
class RunModelFn:
  """`variables -> run_model(cfg, variables, dtype=dtype)`, hashable by its config.

  What `edmjax.train.generate.generate(..., variables=...)` takes to keep the weights
  arguments of its compiled program; equal configs give equal values, so one
  compiled program serves every checkpoint of a run.
  """
  cfg: TrainConfig
  dtype: Any = None

  def __call__(self, variables) -> Denoiser:
    return run_model(self.cfg, variables, dtype=self.dtype)


@dataclasses.dataclass(frozen=True)
class GuidedModelFn:
  """`variables -> guided model` of two runs (`edmjax.guidance`), hashable.

  `variables` is `{'main': ..., 'guide': ..., 'guidance': w}`: the main run's
  variables, the guide run's (ignored for classifier-free guidance) and the weight
  w as a scalar array, so that one compiled program of
  `edmjax.train.generate.generate` serves every w (and every checkpoint).

  Attributes:
    main: the main run's `variables -> Denoiser` (`RunModelFn`).
    guide: the guide run's (autoguidance: a smaller or shorter-trained run), or None
      for classifier-free guidance (the main network without labels).
    interval: the guidance interval (σ_lo, σ_hi), or None (guide at every σ).
  """
  main: Callable
  guide: Callable | None = None
  interval: tuple[float, float] | None = None

  def __call__(self, variables) -> Denoiser:
    main = self.main(variables["main"])
    if self.guide is None:
      return guidance.classifier_free(main, variables["guidance"], interval=self.interval)
    return guidance.guided(main, self.guide(variables["guide"]), variables["guidance"],
                           interval=self.interval)
