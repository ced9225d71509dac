"""The SR3 conditioned U-Net (Saharia et al. 2021, arXiv 2104.07636), NHWC.

SR3 conditions a denoising U-Net on the low-resolution image by concatenating it,
bicubically upsampled to the output size, with the noisy input along channels:

.. math::
  F_θ\\big(c_{in}(σ)\\,x;\\ c_{noise}(σ),\\ u\\big)
  = \\mathrm{SongUNet}\\big([\\,c_{in}(σ)\\,x,\\ u\\,];\\ c_{noise}(σ)\\big),
  \\qquad u = \\mathrm{up}_s(x_{LR}) \\ (+\\ σ_{aug} ε),

so only the noisy input is scaled by c_in (the condition is passed as is). The rest
is `edmjax.nn.SongUNet` (DDPM++ / NCSN++: attention resolutions, channel
multipliers, blocks configurable), built with `in_channels = C + C_cond` and
`out_channels = C`.

Noise-conditioning augmentation (cascaded diffusion models, Ho et al. 2021,
arXiv 2106.15282): during training the condition u may be corrupted by Gaussian
noise of a random level σ_aug, and the network is told σ_aug through SongUNet's
augmentation-label path (`map_augment`, a bias-free linear layer added to the noise
embedding). The label is `aug_labels(σ_aug) = [¼ ln σ_aug, 1]` for σ_aug > 0 and
`[0, 0]` for σ_aug = 0; because `map_augment` has no bias, the zero label is
exactly "no augmentation", so a network built with `noise_aug=True` evaluates a
clean condition identically to being given no label.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from edmjax.nn.layers import Dtype
from edmjax.nn.song_unet import SongUNet

__all__ = ["SR3UNet", "aug_labels", "AUG_DIM"]

AUG_DIM = 2


def aug_labels(sigma_aug: jax.Array) -> jax.Array:
  """The (B, 2) augmentation labels [¼ ln σ_aug, 1] (zeros where σ_aug = 0)."""
  sigma_aug = jnp.asarray(sigma_aug, jnp.float32)
  on = sigma_aug > 0
  c = jnp.where(on, jnp.log(jnp.where(on, sigma_aug, 1.0)) / 4, 0.0)
  return jnp.stack([c, on.astype(jnp.float32)], axis=-1)


class SR3UNet(nn.Module):
  """SR3's conditioned U-Net: SongUNet on [c_in·x, up(x_LR)] (channel concat), NHWC.

  Attributes:
    img_resolution: the training patch size (names levels; other sizes divisible by
      2**(len(channel_mult) − 1) are accepted).
    channels: C, channels of the image being denoised (and of the output).
    cond_channels: channels of the upsampled condition (default: C).
    noise_aug: whether the network takes the σ_aug label (SongUNet `augment_dim` 2).
    label_dim, model_channels, channel_mult, channel_mult_emb, num_blocks,
    attn_resolutions, dropout, label_dropout, embedding_type, channel_mult_noise,
    encoder_type, decoder_type, resample_filter, dtype, param_dtype: SongUNet's.

  Variables: `params/unet/...` (SongUNet's tree under `unet`).

  Example:
    >>> net = SR3UNet(img_resolution=64, channels=3, model_channels=32,
    ...               channel_mult=(1, 2, 2), num_blocks=1, attn_resolutions=())
    >>> x = cond = jnp.zeros((2, 64, 64, 3))              # x, cond: (B, 64, 64, 3) NHWC
    >>> c_noise = jnp.zeros((2,))
    >>> # Shapes only here; jax.jit(net.init)(...) gives the values.
    >>> variables = jax.eval_shape(net.init, jax.random.key(0), x, c_noise, cond)
    >>> jax.eval_shape(net.apply, variables, x, c_noise, cond).shape
    (2, 64, 64, 3)
  """
  img_resolution: int
  channels: int
  cond_channels: int | None = None
  noise_aug: bool = False
  label_dim: int = 0
  model_channels: int = 128
  channel_mult: Sequence[int] = (1, 2, 2, 2)
  channel_mult_emb: int = 4
  num_blocks: int = 4
  attn_resolutions: Sequence[int] = (16,)
  dropout: float = 0.10
  label_dropout: float = 0.0
  embedding_type: str = "positional"
  channel_mult_noise: int = 1
  encoder_type: str = "standard"
  decoder_type: str = "standard"
  resample_filter: Sequence[float] = (1, 1)
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, noise_labels: jax.Array, cond: jax.Array,
               class_labels: jax.Array | None = None, sigma_aug: jax.Array | None = None,
               *, train: bool = False) -> jax.Array:
    """Evaluates F.

    Args:
      x: the preconditioned noisy images c_in·x, NHWC (B, H, W, channels).
      noise_labels: (B,) c_noise.
      cond: the upsampled low-resolution images (B, H, W, cond_channels), NHWC.
      class_labels: optional one-hot (B, label_dim).
      sigma_aug: (B,) noise-augmentation levels of `cond` (only with
        `noise_aug=True`; None means 0).
      train: enables dropout (draws from the 'dropout' rng).

    Returns:
      (B, H, W, channels).
    """
    name = type(self).__name__
    c_cond = self.channels if self.cond_channels is None else self.cond_channels
    if x.ndim != 4 or x.shape[-1] != self.channels:
      raise ValueError(f"{name}: x must be NHWC (B, H, W, {self.channels}), got {x.shape}.")
    if cond.shape != x.shape[:3] + (c_cond,):
      raise ValueError(f"{name}: cond must be the upsampled low-resolution image of shape "
                       f"{x.shape[:3] + (c_cond,)}, got {cond.shape}.")
    augment_labels = None
    if self.noise_aug:
      if sigma_aug is None:
        sigma_aug = jnp.zeros(x.shape[:1], jnp.float32)
      if sigma_aug.shape != x.shape[:1]:
        raise ValueError(f"{name}: sigma_aug must have shape (B,) = {x.shape[:1]}, "
                         f"got {sigma_aug.shape}.")
      augment_labels = aug_labels(sigma_aug)
    elif sigma_aug is not None:
      raise ValueError(f"{name}: got sigma_aug but the network was built with "
                       "noise_aug=False.")
    h = jnp.concatenate([x, cond.astype(x.dtype)], axis=-1)
    unet = SongUNet(
        img_resolution=self.img_resolution, in_channels=self.channels + c_cond,
        out_channels=self.channels, label_dim=self.label_dim,
        augment_dim=AUG_DIM if self.noise_aug else 0,
        model_channels=self.model_channels, channel_mult=tuple(self.channel_mult),
        channel_mult_emb=self.channel_mult_emb, num_blocks=self.num_blocks,
        attn_resolutions=tuple(self.attn_resolutions), dropout=self.dropout,
        label_dropout=self.label_dropout, embedding_type=self.embedding_type,
        channel_mult_noise=self.channel_mult_noise, encoder_type=self.encoder_type,
        decoder_type=self.decoder_type, resample_filter=tuple(self.resample_filter),
        dtype=self.dtype, param_dtype=self.param_dtype, name="unet")
    return unet(h, noise_labels, class_labels, augment_labels, train=train)
