"""Named training configurations for experiments/train.py (no maths: just settings).

Every config is an `edmjax.train.TrainConfig`; override any field on the command line
with `--set field=value` (e.g. `--set net.model_channels=64 --set total_steps=5000`).

  digits_edm      EDM on scikit-learn's 8x8 digits; a small DDPM++ that trains in a
                  few minutes on 2 CPU cores (the default; `make demo`)
  digits_ddpm     the same network trained with DDPM's ε-prediction (Ho et al. 2020)
  lfw_edm         EDM on scikit-image's 200 LFW crops, 24x24 grey
  mnist_ddpmpp    EDM, DDPM++ on MNIST 32x32 (TFDS)
  mnist_ncsnpp    EDM, NCSN++ on MNIST 32x32 (TFDS)
  cifar10_ddpmpp  EDM's CIFAR-10 DDPM++ (NVlabs train.py --arch=ddpmpp --batch=512)
  cifar10_ncsnpp  EDM's CIFAR-10 NCSN++
  folder          EDM on an image folder: --set data.name=folder:/path/to/images
  digits_edm2     EDM2 (magnitude-preserving UNet, learned loss weighting, power-
                  function EMA tracks with snapshots) on the digits, class-conditional
                  with label dropout 0.1 (classifier-free guidance works)
  edm2_img512_xxs … edm2_img512_xxl, edm2_img64_xs … edm2_img64_xl
                  NVlabs/edm2's ImageNet presets (`train_edm2.py --preset`): GPU-scale
                  runs (batch 2048, 1-2 Gi images); img512 trains on 64x64x4 latents of
                  a VAE, which edmjax does not provide (point data.name at them)
"""

from __future__ import annotations

import dataclasses

from edmjax.train.config import (DataConfig, LossConfig, NetConfig, OptimConfig,
                                 SampleConfig, TrainConfig)

__all__ = ["CONFIGS", "get_config"]


def _digits_net() -> NetConfig:
  return NetConfig(arch="ddpmpp", model_channels=32, channel_mult=(1, 2), num_blocks=2,
                   attn_resolutions=(), dropout=0.0)


def digits_edm() -> TrainConfig:
  """EDM on the 1,797 embedded 8x8 digits (97 held out for the neighbour check)."""
  return TrainConfig(
      net=_digits_net(),
      data=DataConfig(name="digits", holdout=97),
      loss=LossConfig(objective="edm", sigma_data=None),
      optim=OptimConfig(lr=2e-3, lr_rampup_kimg=2.0, ema_halflife_kimg=4.0,
                        ema_rampup_ratio=0.05),
      sample=SampleConfig(sampler="edm", num_images=100, num_steps=18, sigma_max=80.0),
      batch_size=64, total_steps=1000, log_every=50, checkpoint_every=500,
      keep_checkpoints=2)


def digits_ddpm() -> TrainConfig:
  """The same net and data, DDPM ε-prediction (linear β, T=1000), DDIM grid."""
  cfg = digits_edm()
  return dataclasses.replace(
      cfg, loss=LossConfig(objective="ddpm"),
      sample=SampleConfig(sampler="ddim", num_images=100, num_steps=50))


def lfw_edm() -> TrainConfig:
  """EDM on scikit-image's LFW subset (200 grey crops, resized to 24x24)."""
  return TrainConfig(
      net=NetConfig(model_channels=32, channel_mult=(1, 2, 2), num_blocks=2,
                    attn_resolutions=(6,), dropout=0.1),
      data=DataConfig(name="lfw_subset", resolution=24, holdout=20),
      loss=LossConfig(sigma_data=None),
      optim=OptimConfig(lr=1e-3, lr_rampup_kimg=2.0, ema_halflife_kimg=5.0),
      sample=SampleConfig(num_images=64),
      batch_size=32, total_steps=4000, log_every=100, checkpoint_every=1000)


def mnist_ddpmpp() -> TrainConfig:
  """EDM with DDPM++ on MNIST resized to 32x32 (TFDS 'mnist')."""
  return TrainConfig(
      net=NetConfig(arch="ddpmpp", model_channels=64, channel_mult=(1, 2, 2),
                    num_blocks=2, attn_resolutions=(16,), dropout=0.1),
      data=DataConfig(name="mnist", resolution=32, channels=1, holdout=1000),
      loss=LossConfig(sigma_data=None),
      optim=OptimConfig(lr=1e-3, lr_rampup_kimg=200.0, ema_halflife_kimg=50.0),
      batch_size=128, total_steps=50000, log_every=200, checkpoint_every=5000,
      sample_every=5000)


def mnist_ncsnpp() -> TrainConfig:
  cfg = mnist_ddpmpp()
  return dataclasses.replace(cfg, net=dataclasses.replace(cfg.net, arch="ncsnpp"))


def cifar10_ddpmpp() -> TrainConfig:
  """NVlabs/edm's CIFAR-10 DDPM++ recipe: batch 512, lr 10e-4, 200 Mimg, dropout 0.13."""
  return TrainConfig(
      net=NetConfig(arch="ddpmpp", model_channels=128, channel_mult=(2, 2, 2),
                    num_blocks=4, attn_resolutions=(16,), dropout=0.13),
      data=DataConfig(name="cifar10", resolution=32, augment_p=0.12),
      loss=LossConfig(objective="edm", sigma_data=0.5),
      optim=OptimConfig(lr=10e-4, lr_rampup_kimg=10000.0, ema_halflife_kimg=500.0,
                        ema_rampup_ratio=0.05),
      batch_size=512, total_steps=200_000_000 // 512, log_every=100,
      checkpoint_every=5000, sample_every=10000)


def cifar10_ncsnpp() -> TrainConfig:
  cfg = cifar10_ddpmpp()
  return dataclasses.replace(cfg, net=dataclasses.replace(cfg.net, arch="ncsnpp"))


def folder() -> TrainConfig:
  """EDM on a folder of images (set data.name=folder:/path; sub-folders = classes)."""
  return TrainConfig(
      net=NetConfig(model_channels=64, channel_mult=(1, 2, 2, 2), num_blocks=2,
                    attn_resolutions=(16,), dropout=0.1),
      data=DataConfig(name="folder:images", resolution=32, channels=3),
      loss=LossConfig(sigma_data=None),
      optim=OptimConfig(lr=1e-3, lr_rampup_kimg=100.0, ema_halflife_kimg=50.0),
      batch_size=64, total_steps=100000, log_every=200, checkpoint_every=5000,
      sample_every=5000)


def digits_edm2() -> TrainConfig:
  """EDM2 on the digits: a 1.0M-parameter EDM2UNet (32 channels, attention at 4x4),
  class-conditional with label dropout 0.1, EDM2's loss with the img64 presets' σ
  density, Adam β₂ 0.99, inverse-square-root decay after 500 batches, EMA tracks
  σ_rel 0.05 and 0.10 snapshotted every 50 steps."""
  return TrainConfig(
      net=NetConfig(arch="edm2", model_channels=32, channel_mult=(1, 2), num_blocks=2,
                    attn_resolutions=(4,), channels_per_head=32, dropout=0.0,
                    label_dropout=0.1, channel_mult_emb=2),
      data=DataConfig(name="digits", holdout=97, cond=True),
      loss=LossConfig(objective="edm2", sigma_data=None, P_mean=-0.8, P_std=1.6),
      optim=OptimConfig(lr=1e-2, beta2=0.99, lr_rampup_kimg=4.0, lr_decay_batches=500,
                        ema_halflife_kimg=4.0, ema_rampup_ratio=0.05,
                        ema_stds=(0.05, 0.1)),
      sample=SampleConfig(sampler="edm", num_images=100, num_steps=18),
      batch_size=64, total_steps=2000, log_every=50, checkpoint_every=500,
      keep_checkpoints=2, snapshot_nimg=64 * 50)


# NVlabs/edm2 train_edm2.py presets: (model_channels, lr, decay batches, dropout,
# duration in images); P_mean/P_std per resolution.
_EDM2_PRESETS = {
    "img512_xxs": (64, 0.0170, 70000, 0.00, 2048 << 20),
    "img512_xs": (128, 0.0120, 70000, 0.00, 2048 << 20),
    "img512_s": (192, 0.0100, 70000, 0.00, 2048 << 20),
    "img512_m": (256, 0.0090, 70000, 0.10, 2048 << 20),
    "img512_l": (320, 0.0080, 70000, 0.10, 1792 << 20),
    "img512_xl": (384, 0.0070, 70000, 0.10, 1280 << 20),
    "img512_xxl": (448, 0.0065, 70000, 0.10, 896 << 20),
    "img64_xs": (128, 0.0120, 35000, 0.00, 1024 << 20),
    "img64_s": (192, 0.0100, 35000, 0.00, 1024 << 20),
    "img64_m": (256, 0.0090, 35000, 0.10, 2048 << 20),
    "img64_l": (320, 0.0080, 35000, 0.10, 1024 << 20),
    "img64_xl": (384, 0.0070, 35000, 0.10, 640 << 20),
}


def _edm2_imagenet(preset: str) -> TrainConfig:
  """NVlabs/edm2's `edm2-<preset>`: EDM2UNet (channel_mult 1-2-3-4, 3 blocks, attention
  at 16 and 8), batch 2048, Adam β₂ 0.99, lr ramp-up over 10 Mi images and inverse-
  square-root decay, EMA tracks 0.050 / 0.100 snapshotted every 8 Mi images,
  checkpoints every 128 Mi images, bf16 compute (NVlabs: fp16), σ_data 0.5.

  img64 trains on ImageNet 64x64 pixels (here TFDS's `imagenet_resized/64x64`, which
  needs a manual download and is box-downsampled; NVlabs prepares its own with
  `dataset_tool.py`). img512 trains on 64x64x4 latents of Stability's VAE
  (NVlabs' `StabilityVAEEncoder`), which edmjax does not provide: set data.name to a
  source of such latents.
  """
  channels, lr, decay, dropout, duration = _EDM2_PRESETS[preset]
  img64 = preset.startswith("img64")
  batch = 2048
  return TrainConfig(
      net=NetConfig(arch="edm2", model_channels=channels, channel_mult=(1, 2, 3, 4),
                    num_blocks=3, attn_resolutions=(16, 8), channel_mult_emb=4,
                    dropout=dropout, dtype="bfloat16"),
      data=DataConfig(name="tfds:imagenet_resized/64x64" if img64
                      else "folder:/path/to/imagenet-512-latents", cond=True),
      loss=LossConfig(objective="edm2", sigma_data=0.5,
                      P_mean=-0.8 if img64 else -0.4, P_std=1.6 if img64 else 1.0),
      optim=OptimConfig(lr=lr, beta2=0.99, lr_rampup_kimg=10_000.0, lr_decay_batches=decay,
                        ema_stds=(0.05, 0.1)),
      sample=SampleConfig(sampler="edm", num_images=64, num_steps=32),
      batch_size=batch, total_steps=duration // batch, log_every=64,
      checkpoint_every=(128 << 20) // batch, keep_checkpoints=2,
      snapshot_nimg=8 << 20)


def _edm2_factory(preset):
  def config() -> TrainConfig:
    return _edm2_imagenet(preset)
  config.__name__ = f"edm2_{preset}"
  config.__doc__ = f"NVlabs/edm2's edm2-{preset.replace('_', '-')} preset."
  return config


CONFIGS = {f.__name__: f for f in (digits_edm, digits_ddpm, lfw_edm, mnist_ddpmpp,
                                   mnist_ncsnpp, cifar10_ddpmpp, cifar10_ncsnpp, folder,
                                   digits_edm2)}
CONFIGS.update({f"edm2_{p}": _edm2_factory(p) for p in _EDM2_PRESETS})


def get_config(name: str) -> TrainConfig:
  if name not in CONFIGS:
    raise ValueError(f"Unknown config {name!r}; choose one of: {', '.join(CONFIGS)}.")
  return CONFIGS[name]()
