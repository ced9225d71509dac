"""DDPM++ and NCSN++ (Song et al. 2021, arXiv 2011.13456) as used by EDM, in Flax.

`SongUNet` is NVlabs/edm's `training/networks.py::SongUNet` (Karras et al. 2022,
arXiv 2206.00364, Appendix F.2) for NHWC images. Its constructor arguments and defaults
are NVlabs'. The two presets of the paper:

  * DDPM++ (`--arch=ddpmpp`): `embedding_type='positional', encoder_type='standard',
    decoder_type='standard', channel_mult_noise=1, resample_filter=(1, 1),
    model_channels=128, channel_mult=(2, 2, 2)`;
  * NCSN++ (`--arch=ncsnpp`): the same with `embedding_type='fourier',
    encoder_type='residual', channel_mult_noise=2, resample_filter=(1, 3, 3, 1)`.

Variable tree (one to one with NVlabs' module names, `.` -> `/`):

  params/map_label, map_augment, map_layer0, map_layer1      Linear
  params/enc/{R}x{R}_conv                                    Conv2d (level 0)
  params/enc/{R}x{R}_down, {R}x{R}_block{i}                  UNetBlock
  params/enc/{R}x{R}_aux_skip | {R}x{R}_aux_residual         Conv2d (encoder skip / residual)
  params/dec/{R}x{R}_in0, _in1, _up, _block{i}               UNetBlock
  params/dec/{R}x{R}_aux_norm, {R}x{R}_aux_conv              GroupNorm, Conv2d (output head)
  buffers/map_noise/freqs                                    FourierEmbedding only

with UNetBlock children `norm0 conv0 affine norm1 conv1 skip norm2 qkv proj`. Weights
convert as described in `edmjax.nn.layers` (Linear `w.T`, Conv2d OIHW -> HWIO
`w.transpose(2, 3, 1, 0)`); PyTorch keys carry a `model.` prefix from the
preconditioning wrapper, which is not part of this module.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from edmjax.nn.layers import (
    Conv2d, Dtype, FourierEmbedding, GroupNorm, Init, Linear, PositionalEmbedding,
    UNetBlock, check_unet_inputs, label_dropout_mask, unet_labels)


class _SongEncoder(nn.Module):
  """The `enc` dict of NVlabs' SongUNet; returns the last activation and the skips."""
  img_resolution: int
  model_channels: int
  channel_mult: Sequence[int]
  num_blocks: int
  attn_resolutions: Sequence[int]
  encoder_type: str
  resample_filter: Sequence[float]
  block: Callable[..., UNetBlock]
  init_conv: Init
  dtype: Dtype
  param_dtype: Dtype

  @nn.compact
  def __call__(self, x, emb, train):
    kw = dict(**self.init_conv._asdict(), dtype=self.dtype, param_dtype=self.param_dtype)
    skips = []
    aux = x
    for level, mult in enumerate(self.channel_mult):
      res = self.img_resolution >> level
      if level == 0:
        x = Conv2d(self.model_channels, 3, name=f"{res}x{res}_conv", **kw)(x)
        skips.append(x)
      else:
        c = x.shape[-1]
        x = self.block(c, down=True, name=f"{res}x{res}_down")(x, emb, train=train)
        skips.append(x)
        if self.encoder_type == "skip":
          aux = Conv2d(aux.shape[-1], 0, down=True, resample_filter=self.resample_filter,
                       name=f"{res}x{res}_aux_down", **kw)(aux)
          x = x + Conv2d(c, 1, name=f"{res}x{res}_aux_skip", **kw)(aux)
          skips[-1] = x
        elif self.encoder_type == "residual":
          r = Conv2d(c, 3, down=True, resample_filter=self.resample_filter,
                     fused_resample=True, name=f"{res}x{res}_aux_residual", **kw)(aux)
          x = aux = (x + r) / float(np.sqrt(2))
          skips[-1] = x
      for idx in range(self.num_blocks):
        x = self.block(self.model_channels * mult, attention=res in self.attn_resolutions,
                       name=f"{res}x{res}_block{idx}")(x, emb, train=train)
        skips.append(x)
    return x, skips


class _SongDecoder(nn.Module):
  """The `dec` dict of NVlabs' SongUNet, output head included; returns the output."""
  img_resolution: int
  out_channels: int
  model_channels: int
  channel_mult: Sequence[int]
  num_blocks: int
  attn_resolutions: Sequence[int]
  decoder_type: str
  resample_filter: Sequence[float]
  block: Callable[..., UNetBlock]
  init_zero: Init
  dtype: Dtype
  param_dtype: Dtype

  @nn.compact
  def __call__(self, x, skips, emb, train):
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    skips = list(skips)
    aux = None
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
        attn = idx == self.num_blocks and res in self.attn_resolutions
        x = self.block(self.model_channels * mult, attention=attn,
                       name=f"{res}x{res}_block{idx}")(x, emb, train=train)
      if self.decoder_type == "skip" or level == 0:
        if self.decoder_type == "skip" and level < last:
          aux = Conv2d(self.out_channels, 0, up=True, resample_filter=self.resample_filter,
                       name=f"{res}x{res}_aux_up", **kw)(aux)
        t = GroupNorm(eps=1e-6, name=f"{res}x{res}_aux_norm", **kw)(x)
        t = Conv2d(self.out_channels, 3, name=f"{res}x{res}_aux_conv",
                   **self.init_zero._asdict(), **kw)(nn.silu(t))
        aux = t if aux is None else t + aux
    return aux


class SongUNet(nn.Module):
  r"""DDPM++ / NCSN++ U-Net :math:`F_\theta(x; c_{noise}, y, a)` (NVlabs/edm `SongUNet`), NHWC.

  The raw network of EDM: it sees the preconditioned input `c_in * x` and the noise
  label `c_noise`, never `sigma`; wrap it with `edmjax.precond.make_denoiser`.

  Mapping network: `emb = [sin, cos](c_noise)` (positional, `endpoint=True`, or Fourier
  features with `scale=16`), `+ map_label(sqrt(label_dim) * y)`, `+ map_augment(a)`,
  then `silu(map_layer1(silu(map_layer0(emb))))`. Encoder and decoder as described in
  the module docstring; all blocks use `skip_scale = sqrt(1/2)`, GroupNorm `eps=1e-6`,
  a 1-head attention at `attn_resolutions`, xavier-uniform init, and `init_weight=1e-5`
  on the last convolution of each residual branch and of the output head (so the
  output of a freshly initialised network is small but not zero).

  Attributes are NVlabs' constructor arguments with its defaults, plus `dtype` (compute
  dtype of the convolutional path; the mapping network always runs in float32) and
  `param_dtype` (parameter storage). `img_resolution` names the levels and selects
  `attn_resolutions`; inputs of other sizes divisible by `2**(len(channel_mult) - 1)`
  are accepted (the network is fully convolutional).

  Variables: `'params'`, plus `'buffers'` (`map_noise/freqs`) when
  `embedding_type='fourier'`; pass both to `apply`, train only `'params'`.

  Example:
    >>> net = SongUNet(img_resolution=32, in_channels=3, out_channels=3,
    ...                channel_mult=(2, 2, 2), augment_dim=9)     # EDM's CIFAR-10 DDPM++
    >>> x, c_noise = jnp.zeros((4, 32, 32, 3)), jnp.zeros((4,))   # NHWC; c_noise (B,)
    >>> # Shapes only here; jax.jit(net.init)(...) gives the values.
    >>> variables = jax.eval_shape(net.init, jax.random.key(0), x, c_noise)
    >>> sum(p.size for p in jax.tree.leaves(variables["params"]))  # NVlabs: 55.73M
    55733891
    >>> F = jax.eval_shape(lambda v, k: net.apply(v, x, c_noise, train=True,
    ...                                           rngs={"dropout": k}),
    ...                    variables, jax.random.key(1))
    >>> F.shape
    (4, 32, 32, 3)
  """
  img_resolution: int
  in_channels: int
  out_channels: int
  label_dim: int = 0
  augment_dim: int = 0
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
  def __call__(self, x: jax.Array, noise_labels: jax.Array,
               class_labels: jax.Array | None = None,
               augment_labels: jax.Array | None = None, *, train: bool = False) -> jax.Array:
    """Evaluates the network.

    Args:
      x: NHWC images `(B, H, W, in_channels)` (already scaled by `c_in`).
      noise_labels: `(B,)` noise labels `c_noise`.
      class_labels: one-hot `(B, label_dim)`; `None` means zeros (unconditional, as
        NVlabs' preconditioners pass). Must be `None` when `label_dim == 0`.
      augment_labels: `(B, augment_dim)` augmentation labels; `None` means none
        (identical to zeros, `map_augment` has no bias).
      train: enables dropout and label dropout, which draw from the `'dropout'` rng.

    Returns:
      NHWC `(B, H, W, out_channels)` in `dtype`.
    """
    name = type(self).__name__
    for arg, value, allowed in (
        ("embedding_type", self.embedding_type, ("positional", "fourier")),
        ("encoder_type", self.encoder_type, ("standard", "skip", "residual")),
        ("decoder_type", self.decoder_type, ("standard", "skip"))):
      if value not in allowed:
        raise ValueError(f"{name}: {arg}={value!r} is not supported; allowed: {allowed}.")
    check_unet_inputs(name, x, noise_labels, self.in_channels, len(self.channel_mult))
    batch = x.shape[0]
    class_labels = unet_labels(name, class_labels, self.label_dim, "class_labels",
                               "label_dim", batch)
    augment_labels = unet_labels(name, augment_labels, self.augment_dim, "augment_labels",
                                 "augment_dim", batch)

    emb_channels = self.model_channels * self.channel_mult_emb
    noise_channels = self.model_channels * self.channel_mult_noise
    init = Init("xavier_uniform")
    init_zero = Init("xavier_uniform", init_weight=1e-5)
    init_attn = Init("xavier_uniform", init_weight=float(np.sqrt(0.2)))
    block = functools.partial(
        UNetBlock, num_heads=1, dropout=self.dropout, skip_scale=float(np.sqrt(0.5)),
        eps=1e-6, resample_filter=tuple(self.resample_filter), resample_proj=True,
        adaptive_scale=False, init_conv=init, init_zero=init_zero, init_attn=init_attn,
        dtype=self.dtype, param_dtype=self.param_dtype)
    lin = dict(**init._asdict(), param_dtype=self.param_dtype)  # mapping network: float32

    # Mapping.
    if self.embedding_type == "positional":
      emb = PositionalEmbedding(noise_channels, endpoint=True, name="map_noise")(noise_labels)
    else:
      emb = FourierEmbedding(noise_channels, name="map_noise")(noise_labels)
    half = noise_channels // 2
    emb = jnp.concatenate([emb[:, half:], emb[:, :half]], axis=1)  # [cos, sin] -> [sin, cos]
    if self.label_dim:
      y = class_labels
      if train and self.label_dropout:
        y = y * label_dropout_mask(self, batch, self.label_dropout)
      emb = emb + Linear(noise_channels, name="map_label", **lin)(
          y * np.float32(np.sqrt(self.label_dim)))
    if self.augment_dim:
      emb = emb + Linear(noise_channels, use_bias=False, name="map_augment", **lin)(augment_labels)
    emb = nn.silu(Linear(emb_channels, name="map_layer0", **lin)(emb))
    emb = nn.silu(Linear(emb_channels, name="map_layer1", **lin)(emb))

    common = dict(img_resolution=self.img_resolution, model_channels=self.model_channels,
                  channel_mult=tuple(self.channel_mult), num_blocks=self.num_blocks,
                  attn_resolutions=tuple(self.attn_resolutions),
                  resample_filter=tuple(self.resample_filter), block=block,
                  dtype=self.dtype, param_dtype=self.param_dtype)
    x, skips = _SongEncoder(encoder_type=self.encoder_type, init_conv=init, name="enc",
                            **common)(x, emb, train)
    return _SongDecoder(out_channels=self.out_channels, decoder_type=self.decoder_type,
                        init_zero=init_zero, name="dec", **common)(x, skips, emb, train)
