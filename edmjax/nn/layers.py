"""Building blocks of the EDM networks (Karras et al. 2022, arXiv 2206.00364) in Flax.

These are the layers of NVlabs/edm `training/networks.py` (Linear, Conv2d with FIR
up/down-sampling, GroupNorm, UNetBlock, PositionalEmbedding, FourierEmbedding),
rewritten for flax.linen and NHWC images. They reproduce NVlabs' initialisation
distributions exactly and keep its parameter names, so a PyTorch checkpoint maps onto
the Flax variables one to one.

Checkpoint mapping (PyTorch state_dict -> Flax variables):

  * a module path `a.b.c` becomes the nested dict path `a/b/c`;
  * `Linear.weight` `(out, in)` -> `weight` `(in, out)`: `w.T`;
  * `Conv2d.weight` OIHW `(out, in, kh, kw)` -> `weight` HWIO: `w.transpose(2, 3, 1, 0)`;
  * biases and `GroupNorm.weight` / `GroupNorm.bias` `(C,)` -> unchanged;
  * `Conv2d.resample_filter` (a buffer derived from the config) -> not stored;
  * `FourierEmbedding.freqs` (a buffer) -> collection `'buffers'` (see `BUFFERS`).

Compute dtype: every layer has `dtype` (the compute dtype, default float32) and
`param_dtype` (the storage dtype of its parameters, default float32). Parameters are
cast to `dtype` where they are used, as NVlabs does with `weight.to(x.dtype)`. Group
normalisation statistics and attention logits / softmax are computed in float32
whatever `dtype` is.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from edmjax.nn.conv import conv2d

Dtype = Any

BUFFERS = "buffers"
"""Name of the variable collection that holds non-trained state (PyTorch buffers).

Only `FourierEmbedding.freqs` lives there. It is created by `init` from the `'params'`
rng and must be passed back to `apply` (`{'params': ..., 'buffers': ...}`); it is not in
`'params'`, so an optimizer over `variables['params']` never updates it and parameter
counts exclude it, as in NVlabs/edm.
"""

INIT_MODES = ("xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal")


class Init(NamedTuple):
  """How a `Linear` or `Conv2d` initialises its weight and bias (NVlabs `weight_init`).

  The fields are the `init_*` attributes of `Linear` / `Conv2d` (pass
  `**init._asdict()`). With `fan_in = C_in * k * k`, `fan_out = C_out * k * k` (`k = 1`
  for `Linear`), weight and bias are drawn from the same distribution `D` and scaled:
  `weight = init_weight * D`, `bias = init_bias * D`, where `D` is

    * `xavier_uniform`:  `U(-a, a)`, `a = sqrt(6 / (fan_in + fan_out))`;
    * `xavier_normal`:   `N(0, 2 / (fan_in + fan_out))`;
    * `kaiming_uniform`: `U(-a, a)`, `a = sqrt(3 / fan_in)`;
    * `kaiming_normal`:  `N(0, 1 / fan_in)`.

  A scale of 0 gives exact zeros ("zero init" of the last layer of a residual branch).
  """
  init_mode: str = "kaiming_normal"
  init_weight: float = 1.0
  init_bias: float = 0.0


def weight_init(mode: str, fan_in: int, fan_out: int, scale: float = 1.0):
  """A Flax initializer `init(key, shape, dtype)` drawing `scale * D(fan_in, fan_out)`.

  See `Init` for the distributions `D`; this is NVlabs/edm's `weight_init` times the
  `init_weight` / `init_bias` factor.
  """
  if mode not in INIT_MODES:
    raise ValueError(f"init mode {mode!r} is not supported; allowed: {INIT_MODES}.")

  def init(key, shape, dtype=jnp.float32):
    if mode == "xavier_uniform":
      d = math.sqrt(6 / (fan_in + fan_out)) * jax.random.uniform(key, shape, dtype, -1, 1)
    elif mode == "xavier_normal":
      d = math.sqrt(2 / (fan_in + fan_out)) * jax.random.normal(key, shape, dtype)
    elif mode == "kaiming_uniform":
      d = math.sqrt(3 / fan_in) * jax.random.uniform(key, shape, dtype, -1, 1)
    else:
      d = math.sqrt(1 / fan_in) * jax.random.normal(key, shape, dtype)
    return (scale * d).astype(dtype)

  return init


def _channels_last(v: jax.Array, ndim: int) -> jax.Array:
  """Reshapes a per-channel vector `(C,)` to `(1, ..., 1, C)` for an `ndim` array."""
  return jnp.reshape(v, (1,) * (ndim - 1) + (-1,))


class Linear(nn.Module):
  """Fully connected layer `y = x W + b` on the last axis (NVlabs `Linear`).

  Attributes:
    features: output features.
    use_bias: add a bias (NVlabs `bias`).
    init_mode: distribution of weight and bias, one of `INIT_MODES` (see `Init`).
    init_weight: scale of the weight.
    init_bias: scale of the bias.
    dtype: compute dtype.
    param_dtype: parameter storage dtype.

  Variables: `weight` `(in, out)` (PyTorch's `(out, in)` transposed), `bias` `(out,)`.
  """
  features: int
  use_bias: bool = True
  init_mode: str = "kaiming_normal"
  init_weight: float = 1.0
  init_bias: float = 0.0
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    fan_in, fan_out = x.shape[-1], self.features
    w = self.param("weight", weight_init(self.init_mode, fan_in, fan_out, self.init_weight),
                   (fan_in, fan_out), self.param_dtype)
    y = jnp.matmul(x.astype(self.dtype), w.astype(self.dtype))
    if self.use_bias:
      b = self.param("bias", weight_init(self.init_mode, fan_in, fan_out, self.init_bias),
                     (fan_out,), self.param_dtype)
      y = y + _channels_last(b.astype(self.dtype), y.ndim)
    return y


def resample_kernel(resample_filter: Sequence[float]) -> np.ndarray:
  """The 2-D FIR resampling kernel `f f^T / (sum f)^2` of a 1-D filter (float32)."""
  f = np.asarray(resample_filter, dtype=np.float32)
  if f.ndim != 1 or f.size == 0:
    raise ValueError(f"resample_filter must be a non-empty 1-D sequence, got {resample_filter!r}.")
  return np.outer(f, f) / np.square(f.sum())


def _fir_axis(x: jax.Array, taps: np.ndarray, axis: int, *, stride: int, pad: int,
              dilate: bool = False) -> jax.Array:
  """1-D FIR correlation along `axis`: y[i] = sum_j taps[j] x_pad[stride i + j].

  `x_pad` is `x` zero-padded by `pad` on both sides (cropped if negative), after
  inserting one zero between neighbours when `dilate` (a transposed convolution's
  zero stuffing). Written as a sum
  of `len(taps)` strided slices: XLA:CPU runs grouped (depthwise) convolutions, and
  above all their gradients, orders of magnitude slower than these slices.
  """
  widths = [(0, 0, 0)] * x.ndim
  widths[axis] = (pad, pad, 1 if dilate else 0)   # negative pad crops, as in a conv
  x = jax.lax.pad(x, np.zeros((), x.dtype), widths)
  k = len(taps)
  n_out = (x.shape[axis] - k) // stride + 1
  y = None
  for j, tap in enumerate(taps):
    part = jax.lax.slice_in_dim(x, j, j + stride * (n_out - 1) + 1, stride=stride, axis=axis)
    part = part * np.asarray(tap, x.dtype)
    y = part if y is None else y + part
  return y


def _separable_taps(kernel: np.ndarray) -> np.ndarray:
  """The 1-D taps g with kernel = g g^T (the kernels here are outer products)."""
  g = np.sqrt(np.diag(kernel).astype(np.float64))
  if not np.allclose(np.outer(g, g), kernel, rtol=1e-6, atol=1e-9):
    raise ValueError("FIR resampling needs a separable kernel f f^T with f >= 0.")
  return g.astype(np.float32)


def fir_downsample(x: jax.Array, kernel: np.ndarray, padding: int) -> jax.Array:
  """2x FIR downsampling of NHWC `x`: correlate with `kernel` at stride 2.

  Equal to a depthwise convolution with `kernel` per channel (stride 2, zero padding
  `padding`), computed separably along H and W.
  """
  g = _separable_taps(kernel)
  x = _fir_axis(x, g, 1, stride=2, pad=padding)
  return _fir_axis(x, g, 2, stride=2, pad=padding)


def fir_upsample(x: jax.Array, kernel: np.ndarray, padding: int) -> jax.Array:
  """2x FIR upsampling of NHWC `x`: PyTorch's `conv_transpose2d(x, 4 f, stride=2, padding)`.

  A transposed convolution is a convolution of the zero-stuffed input with the flipped
  kernel and padding `k - 1 - padding`; it is computed separably along H and W with
  the 1-D taps `2 g[::-1]` (`4 kernel = (2 g)(2 g)^T`).
  """
  k = kernel.shape[0]
  g = 2 * _separable_taps(kernel)[::-1]
  x = _fir_axis(x, g, 1, stride=1, pad=k - 1 - padding, dilate=True)
  return _fir_axis(x, g, 2, stride=1, pad=k - 1 - padding, dilate=True)


class Conv2d(nn.Module):
  """2-D convolution with optional FIR up/down-sampling (NVlabs `Conv2d`), NHWC.

  Order of operations (`f` = `resample_kernel(resample_filter)`, `k = len(f)`):

    * plain:              `conv(x, W, pad=kernel//2) + b`;
    * `up`:               `conv(up2(x, 4 f), W) + b`, `up2` a stride-2 transposed FIR;
    * `down`:             `conv(down2(x, f), W) + b`, `down2` a stride-2 FIR;
    * `down`, `fused_resample`: `down2(conv(x, W, pad=kernel//2 + (k-1)//2), f, pad=0) + b`
      (the convolution runs at full resolution; NCSN++'s residual encoder uses it).

  `kernel=0` means no weight and no bias: a pure resampler.

  Attributes:
    features: output channels (must equal the input channels when `kernel=0`).
    kernel: square kernel size, 0 for none.
    use_bias: add a bias (NVlabs `bias`).
    up: 2x upsampling before the convolution.
    down: 2x downsampling before (or, fused, after) the convolution.
    resample_filter: 1-D FIR filter, `(1, 1)` (box) or `(1, 3, 3, 1)` (binomial).
    fused_resample: see above; only defined for `down` here (NVlabs' fused *up* path
      returns `2H - 4` pixels for a 3x3 kernel and none of its networks uses it).
    init_mode, init_weight, init_bias: initialisation, see `Init`.
    dtype: compute dtype.
    param_dtype: parameter storage dtype.

  Variables: `weight` HWIO `(k, k, C_in, C_out)` (PyTorch OIHW `.transpose(2, 3, 1, 0)`),
  `bias` `(C_out,)`.
  """
  features: int
  kernel: int
  use_bias: bool = True
  up: bool = False
  down: bool = False
  resample_filter: Sequence[float] = (1, 1)
  fused_resample: bool = False
  init_mode: str = "kaiming_normal"
  init_weight: float = 1.0
  init_bias: float = 0.0
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    """Maps NHWC `(B, H, W, C_in)` to `(B, H', W', features)`, `H' = 2H, H/2 or H`."""
    if self.up and self.down:
      raise ValueError("Conv2d: up and down cannot both be True.")
    if self.fused_resample and self.up and self.kernel:
      raise ValueError("Conv2d: fused_resample is only supported with down=True; "
                       "use fused_resample=False for upsampling.")
    c_in = x.shape[-1]
    if not self.kernel and c_in != self.features:
      raise ValueError(f"Conv2d with kernel=0 only resamples; features={self.features} "
                       f"must equal the input channels {c_in}.")
    x = x.astype(self.dtype)
    w = b = None
    if self.kernel:
      k = self.kernel
      fan_in, fan_out = c_in * k * k, self.features * k * k
      w = self.param("weight", weight_init(self.init_mode, fan_in, fan_out, self.init_weight),
                     (k, k, c_in, self.features), self.param_dtype).astype(self.dtype)
      if self.use_bias:
        b = self.param("bias", weight_init(self.init_mode, fan_in, fan_out, self.init_bias),
                       (self.features,), self.param_dtype).astype(self.dtype)
    f = resample_kernel(self.resample_filter) if (self.up or self.down) else None
    w_pad = self.kernel // 2
    f_pad = (f.shape[0] - 1) // 2 if f is not None else 0

    def conv(x, pad):
      return conv2d(x, w, pad)

    if self.fused_resample and self.down and w is not None:
      x = fir_downsample(conv(x, w_pad + f_pad), f, padding=0)
    else:
      if self.up:
        x = fir_upsample(x, f, padding=f_pad)
      if self.down:
        x = fir_downsample(x, f, padding=f_pad)
      if w is not None:
        x = conv(x, w_pad)
    if b is not None:
      x = x + _channels_last(b, x.ndim)
    return x


class GroupNorm(nn.Module):
  """Group normalisation over NHWC (NVlabs `GroupNorm`, Wu & He 2018).

  `num_groups = min(num_groups, C // min_channels_per_group)`; statistics (biased
  variance) are computed in float32; the affine `weight` (ones) and `bias` (zeros) are
  per channel.
  """
  num_groups: int = 32
  min_channels_per_group: int = 4
  eps: float = 1e-5
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    c = x.shape[-1]
    g = min(self.num_groups, c // self.min_channels_per_group)
    if g < 1 or c % g:
      raise ValueError(f"GroupNorm: {c} channels cannot be split into "
                       f"min({self.num_groups}, {c} // {self.min_channels_per_group}) groups.")
    weight = self.param("weight", nn.initializers.ones, (c,), self.param_dtype)
    bias = self.param("bias", nn.initializers.zeros, (c,), self.param_dtype)
    # Two passes (mean, then the mean square of the deviation), each a reduction over
    # the spatial axes with the channels kept minor, then a tiny one over the channels
    # of a group. On XLA:CPU this runs 2.6x faster (forward + backward) than reducing a
    # (..., groups, channels // groups) view directly, and has the same accuracy.
    xf = x.astype(jnp.float32)
    spatial = tuple(range(1, x.ndim - 1))

    def group_mean(v):  # (B, C) per-channel means -> (B, C) means over the channel's group
      m = jnp.mean(v.reshape(v.shape[0], g, c // g), axis=-1)
      return jnp.repeat(m, c // g, axis=-1)

    def per_pixel(v):  # (B, C) -> broadcastable against x
      return v.reshape((v.shape[0],) + (1,) * len(spatial) + (c,))

    d = xf - per_pixel(group_mean(jnp.mean(xf, axis=spatial)))
    var = group_mean(jnp.mean(jnp.square(d), axis=spatial))
    scale = jax.lax.rsqrt(var + self.eps) * weight.astype(jnp.float32)[None, :]
    y = d * per_pixel(scale) + _channels_last(bias.astype(jnp.float32), x.ndim)
    return y.astype(self.dtype)


class UNetBlock(nn.Module):
  """Residual U-Net block with optional up/down-sampling and self-attention (NVlabs `UNetBlock`).

  The union of the DDPM++, NCSN++ and ADM blocks. With `h = silu(norm0(x))`:

    h = conv0(h)                                 # 3x3, resamples if up / down
    p = affine(emb)
    h = silu(shift + norm1(h) * (scale + 1))     # adaptive_scale; (scale, shift) = p
    h = silu(norm1(h + p))                       # otherwise
    x = (conv1(dropout(h)) + skip(x)) * skip_scale
    x = (proj(attention(norm2(x))) + x) * skip_scale   # if attention

  `skip` is a 1x1 convolution when the channels change or `resample_proj`, a pure
  resampler when only up / down, the identity otherwise. Attention is multi-head
  `softmax(q k^T / sqrt(c)) v` over the `H * W` positions with `num_heads` heads
  (default `out_channels // channels_per_head`, so attention is silently absent below
  `channels_per_head` channels, as in NVlabs); the `qkv` output channels are laid
  out as `(head, channel, {q, k, v})` as in NVlabs.

  Attributes mirror NVlabs' arguments; NVlabs' `init` dict is `init_conv` here (a
  field named `init` would shadow `Module.init`); `init_conv`, `init_zero` (conv1, proj)
  and `init_attn` (qkv; `None` = `init_conv`) are `Init` tuples.
  """
  out_channels: int
  up: bool = False
  down: bool = False
  attention: bool = False
  num_heads: int | None = None
  channels_per_head: int = 64
  dropout: float = 0.0
  skip_scale: float = 1.0
  eps: float = 1e-5
  resample_filter: Sequence[float] = (1, 1)
  resample_proj: bool = False
  adaptive_scale: bool = True
  init_conv: Init = Init()
  init_zero: Init = Init(init_weight=0.0)
  init_attn: Init | None = None
  dtype: Dtype = jnp.float32
  param_dtype: Dtype = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, emb: jax.Array, *, train: bool = False) -> jax.Array:
    """Maps NHWC `x` `(B, H, W, C_in)` and `emb` `(B, E)` to `(B, H', W', out_channels)`."""
    c_in, c_out = x.shape[-1], self.out_channels
    kw = dict(dtype=self.dtype, param_dtype=self.param_dtype)
    num_heads = 0
    if self.attention:
      num_heads = self.num_heads if self.num_heads is not None else c_out // self.channels_per_head
      # As in NVlabs, fewer than `channels_per_head` channels give 0 heads: no attention.
      if num_heads and c_out % num_heads:
        raise ValueError(f"UNetBlock: {c_out} channels cannot be split into {num_heads} heads.")

    orig = x
    h = nn.silu(GroupNorm(eps=self.eps, name="norm0", **kw)(x))
    h = Conv2d(c_out, 3, up=self.up, down=self.down, resample_filter=self.resample_filter,
               name="conv0", **self.init_conv._asdict(), **kw)(h)
    # The embedding path stays in float32 (as NVlabs' fp32 `emb`); cast at the add.
    p = Linear(c_out * (2 if self.adaptive_scale else 1), name="affine",
               param_dtype=self.param_dtype, **self.init_conv._asdict())(emb)
    p = p.astype(self.dtype)[:, None, None, :]
    norm1 = GroupNorm(eps=self.eps, name="norm1", **kw)
    if self.adaptive_scale:
      scale, shift = jnp.split(p, 2, axis=-1)
      h = nn.silu(shift + norm1(h) * (scale + 1))
    else:
      h = nn.silu(norm1(h + p))
    h = nn.Dropout(self.dropout, deterministic=not train)(h)
    h = Conv2d(c_out, 3, name="conv1", **self.init_zero._asdict(), **kw)(h)

    if c_out != c_in or self.up or self.down:
      kernel = 1 if (self.resample_proj or c_out != c_in) else 0
      orig = Conv2d(c_out, kernel, up=self.up, down=self.down,
                    resample_filter=self.resample_filter, name="skip",
                    **self.init_conv._asdict(), **kw)(orig)
    x = (h + orig.astype(self.dtype)) * self.skip_scale

    if num_heads:
      b, hh, ww, _ = x.shape
      c = c_out // num_heads
      init_attn = self.init_attn if self.init_attn is not None else self.init_conv
      qkv = Conv2d(3 * c_out, 1, name="qkv", **init_attn._asdict(),
                   **kw)(GroupNorm(eps=self.eps, name="norm2", **kw)(x))
      qkv = qkv.reshape(b, hh * ww, num_heads, c, 3)
      q, k, v = qkv[..., 0], qkv[..., 1], qkv[..., 2]
      logits = jnp.einsum("bqnc,bknc->bnqk", q.astype(jnp.float32),
                          k.astype(jnp.float32) / np.float32(np.sqrt(c)))
      w = jax.nn.softmax(logits, axis=-1).astype(self.dtype)
      a = jnp.einsum("bnqk,bknc->bqnc", w, v).reshape(b, hh, ww, c_out)
      x = (Conv2d(c_out, 1, name="proj", **self.init_zero._asdict(), **kw)(a) + x) * self.skip_scale
    return x


class PositionalEmbedding(nn.Module):
  """Sinusoidal embedding of the noise label (DDPM++, ADM; NVlabs `PositionalEmbedding`).

  `freqs_i = (1 / max_positions)^(i / (N/2 - endpoint))`, `i = 0 .. N/2 - 1`, and the
  output is `[cos(x freqs), sin(x freqs)]`, shape `(B, num_channels)`, float32.
  """
  num_channels: int
  max_positions: int = 10000
  endpoint: bool = False

  def __call__(self, x: jax.Array) -> jax.Array:
    half = self.num_channels // 2
    freqs = np.arange(half, dtype=np.float32) / np.float32(half - (1 if self.endpoint else 0))
    freqs = np.power(np.float32(1 / self.max_positions), freqs).astype(np.float32)
    x = x.astype(jnp.float32)[:, None] * jnp.asarray(freqs)[None, :]
    return jnp.concatenate([jnp.cos(x), jnp.sin(x)], axis=1)


class FourierEmbedding(nn.Module):
  """Random Fourier features of the noise label (NCSN++; NVlabs `FourierEmbedding`).

  `freqs ~ scale * N(0, 1)`, `(num_channels // 2,)`, drawn once at `init` from the
  `'params'` rng and frozen: they live in the `BUFFERS` collection (`'buffers'`), not
  in `'params'`, so they are neither trained nor counted. Output
  `[cos(2 pi x freqs), sin(2 pi x freqs)]`, `(B, num_channels)`, float32.
  """
  num_channels: int
  scale: float = 16.0

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    freqs = self.variable(
        BUFFERS, "freqs",
        lambda: self.scale * jax.random.normal(self.make_rng("params"),
                                               (self.num_channels // 2,), jnp.float32))
    x = x.astype(jnp.float32)[:, None] * (2 * np.pi * freqs.value)[None, :]
    return jnp.concatenate([jnp.cos(x), jnp.sin(x)], axis=1)


# ----------------------------------------------------------------------------- UNet inputs


def check_unet_inputs(name, x, noise_labels, in_channels, num_levels):
  """Raises ValueError on a UNet's NHWC / noise-label shape mismatches (static under jit)."""
  if x.ndim != 4 or x.shape[-1] != in_channels:
    raise ValueError(f"{name}: x must be NHWC (B, H, W, {in_channels}), got shape {x.shape}.")
  m = 2 ** (num_levels - 1)
  if x.shape[1] % m or x.shape[2] % m:
    raise ValueError(f"{name}: H and W must be multiples of 2**(len(channel_mult) - 1) = {m}, "
                     f"got {x.shape[1:3]}.")
  if noise_labels.shape != (x.shape[0],):
    raise ValueError(f"{name}: noise_labels must have shape (B,) = ({x.shape[0]},), "
                     f"got {noise_labels.shape}.")


def unet_labels(name, labels, dim, what, dim_name, batch):
  """A UNet's optional `(B, dim)` class / augment labels, checked; `None` becomes zeros
  (float32)."""
  if labels is None:
    return jnp.zeros((batch, dim), jnp.float32)
  if dim == 0:
    raise ValueError(f"{name}: got {what} but the network was built with {dim_name}=0; "
                     f"pass {what}=None or build it with {dim_name} > 0.")
  if labels.shape != (batch, dim):
    raise ValueError(f"{name}: {what} must have shape (B, {dim_name}) = ({batch}, {dim}), "
                     f"got {labels.shape}.")
  return labels.astype(jnp.float32)


def label_dropout_mask(module: nn.Module, batch: int, rate: float) -> jax.Array:
  """`(B, 1)` float32 mask, 0 with probability `rate` (classifier-free guidance training)."""
  u = jax.random.uniform(module.make_rng("dropout"), (batch, 1), jnp.float32)
  return (u >= rate).astype(jnp.float32)
