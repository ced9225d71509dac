"""ADM (Dhariwal & Nichol 2021, arXiv 2105.05233) as used by EDM, in Flax.

`DhariwalUNet` is NVlabs/edm's `training/networks.py::DhariwalUNet` (Karras et al.
2022, arXiv 2206.00364, Appendix F.2) for NHWC images; constructor arguments and
defaults are NVlabs'. The paper's ImageNet-64 model (`--arch=adm`) is the default
configuration with `img_resolution=64, in_channels=3, out_channels=3, label_dim=1000`.

Variable tree (one to one with NVlabs' module names, `.` -> `/`):

  params/map_augment, map_layer0, map_layer1, map_label      Linear
  params/enc/{R}x{R}_conv                                    Conv2d (level 0)
  params/enc/{R}x{R}_down, {R}x{R}_block{i}                  UNetBlock
  params/dec/{R}x{R}_in0, _in1, _up, _block{i}               UNetBlock
  params/out_norm, out_conv                                  GroupNorm, Conv2d

with UNetBlock children `norm0 conv0 affine norm1 conv1 skip norm2 qkv proj`. Weights
convert as described in `edmjax.nn.layers` (Linear `w.T`, Conv2d OIHW -> HWIO
`w.transpose(2, 3, 1, 0)`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from edmjax.nn.layers import (Conv2d, Dtype, GroupNorm, Init, Linear, PositionalEmbedding,
                               UNetBlock, check_unet_inputs, label_dropout_mask, unet_labels)


class _DhariwalEncoder(nn.Module):
  """The `enc` dict of NVlabs' DhariwalUNet; returns the last activation and the skips."""
  img_resolution: int
  model_channels: int
  channel_mult: Sequence[int]
  num_blocks: int
  attn_resolutions: Sequence[int]
  block: Callable[..., UNetBlock]
  init_conv: Init
  dtype: Dtype
  param_dtype: Dtype

  @nn.compact
  def __call__(self, x, emb, train):
    skips = []
    for level, mult in enumerate(self.channel_mult):
      res = self.img_resolution >> level
      if level == 0:
        x = Conv2d(self.model_channels * mult, 3, name=f"{res}x{res}_conv",
                   **self.init_conv._asdict(), dtype=self.dtype,
                   param_dtype=self.param_dtype)(x)
      else:
        x = self.block(x.shape[-1], down=True, name=f"{res}x{res}_down")(x, emb, train=train)
      skips.append(x)
      for idx in range(self.num_blocks):
        x = self.block(self.model_channels * mult, attention=res in self.attn_resolutions,
                       name=f"{res}x{res}_block{idx}")(x, emb, train=train)
        skips.append(x)
    return x, skips


class _DhariwalDecoder(nn.Module):
  """The `dec` dict of NVlabs' DhariwalUNet (without the output head)."""
  img_resolution: int
  model_channels: int
  channel_mult: Sequence[int]
  num_blocks: int
  attn_resolutions: Sequence[int]
  block: Callable[..., UNetBlock]

  @nn.compact
  def __call__(self, x, skips, emb, train):
    skips = list(skips)
    last = len(self.channel_mult) - 1
    for level, mult in reversed(list(enumerate(self.channel_mult))):
      res = self.img_resolution >> level
      c = x.shape[-1]
      if level == last:
        x = self.block(c, attention=True, name=f"{res}x{res}_in0")(x, emb, train=train)
        x = self.block(c, name=f"{res}x{res}_in1")(x, emb, train=train)
      else:
        x = self.block(c, up=True, name=f"{res}x{res}_up")(x, emb, train=train)
      for idx in range(self.num_blocks + 1):
        x = jnp.concatenate([x, skips.pop().astype(x.dtype)], axis=-1)
        x = self.block(self.model_channels * mult, attention=res in self.attn_resolutions,
                       name=f"{res}x{res}_block{idx}")(x, emb, train=train)
    return x


class DhariwalUNet(nn.Module):
  r"""ADM U-Net :math:`F_\theta(x; c_{noise}, y, a)` (NVlabs/edm `DhariwalUNet`), NHWC.

  The raw network of EDM: it sees `c_in * x` and the noise label `c_noise`, never
  `sigma`; wrap it with `edmjax.precond.make_denoiser`.

  Mapping network: `emb = [cos, sin](c_noise)` (positional, `endpoint=False`)
  `+ map_augment(a)`, `emb = map_layer1(silu(map_layer0(emb))) + map_label(y)`, then
  `silu`. Blocks use adaptive scale (`silu(shift + norm(h) (1 + scale))`), attention
  with 64 channels per head at `attn_resolutions`, `skip_scale=1`, GroupNorm
  `eps=1e-5`, kaiming-uniform init scaled by `sqrt(1/3)`, and exact zero init of the
  last convolution of every residual branch, of `map_augment` and of `out_conv`: a
  freshly initialised network outputs exactly zero.

  Attributes are NVlabs' constructor arguments with its defaults, plus `dtype` (compute
  dtype of the convolutional path; the mapping network always runs in float32) and
  `param_dtype` (parameter storage). Inputs of sizes other than `img_resolution` that
  are divisible by `2**(len(channel_mult) - 1)` are accepted.
  """
  img_resolution: int
  in_channels: int
  out_channels: int
  label_dim: int = 0
  augment_dim: int = 0
  model_channels: int = 192
  channel_mult: Sequence[int] = (1, 2, 3, 4)
  channel_mult_emb: int = 4
  num_blocks: int = 3
  attn_resolutions: Sequence[int] = (32, 16, 8)
  dropout: float = 0.10
  label_dropout: float = 0.0
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, noise_labels: jax.Array,
               class_labels: jax.Array | None = None,
               augment_labels: jax.Array | None = None, *, train: bool = False) -> jax.Array:
    """Evaluates the network.

    Args:
      x: NHWC images `(B, H, W, in_channels)` (already scaled by `c_in`).
      noise_labels: `(B,)` noise labels `c_noise`.
      class_labels: one-hot `(B, label_dim)`; `None` means zeros (unconditional).
        Must be `None` when `label_dim == 0`.
      augment_labels: `(B, augment_dim)`; `None` means none (identical to zeros).
      train: enables dropout and label dropout, which draw from the `'dropout'` rng.

    Returns:
      NHWC `(B, H, W, out_channels)` in `dtype`.
    """
    name = type(self).__name__
    check_unet_inputs(name, x, noise_labels, self.in_channels, len(self.channel_mult))
    batch = x.shape[0]
    class_labels = unet_labels(name, class_labels, self.label_dim, "class_labels",
                               "label_dim", batch)
    augment_labels = unet_labels(name, augment_labels, self.augment_dim, "augment_labels",
                                 "augment_dim", batch)

    emb_channels = self.model_channels * self.channel_mult_emb
    s = float(np.sqrt(1 / 3))
    init = Init("kaiming_uniform", init_weight=s, init_bias=s)
    init_zero = Init("kaiming_uniform", init_weight=0.0, init_bias=0.0)
    block = functools.partial(
        UNetBlock, channels_per_head=64, dropout=self.dropout, init_conv=init,
        init_zero=init_zero, dtype=self.dtype, param_dtype=self.param_dtype)
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)

    # Mapping (float32).
    emb = PositionalEmbedding(self.model_channels, name="map_noise")(noise_labels)
    if self.augment_dim:
      emb = emb + Linear(self.model_channels, use_bias=False, **init_zero._asdict(),
                         name="map_augment", param_dtype=self.param_dtype)(augment_labels)
    emb = nn.silu(Linear(emb_channels, **init._asdict(), name="map_layer0",
                         param_dtype=self.param_dtype)(emb))
    emb = Linear(emb_channels, **init._asdict(), name="map_layer1",
                 param_dtype=self.param_dtype)(emb)
    if self.label_dim:
      y = class_labels
      if train and self.label_dropout:
        y = y * label_dropout_mask(self, batch, self.label_dropout)
      emb = emb + Linear(emb_channels, use_bias=False,
                         init_mode="kaiming_normal", init_weight=float(np.sqrt(self.label_dim)),
                         name="map_label", param_dtype=self.param_dtype)(y)
    emb = nn.silu(emb)

    common = dict(img_resolution=self.img_resolution, model_channels=self.model_channels,
                  channel_mult=tuple(self.channel_mult), num_blocks=self.num_blocks,
                  attn_resolutions=tuple(self.attn_resolutions), block=block)
    x, skips = _DhariwalEncoder(init_conv=init, name="enc", **common, **kw)(x, emb, train)
    x = _DhariwalDecoder(name="dec", **common)(x, skips, emb, train)
    x = nn.silu(GroupNorm(name="out_norm", **kw)(x))
    return Conv2d(self.out_channels, 3, name="out_conv", **init_zero._asdict(), **kw)(x)
