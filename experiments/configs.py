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


CONFIGS = {f.__name__: f for f in (digits_edm, digits_ddpm, lfw_edm, mnist_ddpmpp,
                                   mnist_ncsnpp, cifar10_ddpmpp, cifar10_ncsnpp, folder)}


def get_config(name: str) -> TrainConfig:
  if name not in CONFIGS:
    raise ValueError(f"Unknown config {name!r}; choose one of: {', '.join(CONFIGS)}.")
  return CONFIGS[name]()
