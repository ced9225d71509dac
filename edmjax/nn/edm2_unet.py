"""The magnitude-preserving U-Net of EDM2 (Karras et al. 2024, arXiv 2312.02696), in Flax.

`EDM2UNet` is NVlabs/edm2's `training/networks_edm2.py::UNet` (Figure 21 of the paper)
together with the uncertainty head of its `Precond` (`logvar_fourier`,
`logvar_linear`: u(σ) of Eq. 21), for NHWC images. Its constructor arguments and
defaults are NVlabs' (`UNet`'s, its `Block`'s `**block_kwargs`, and `Precond`'s
`logvar_channels`). The network sees c_in·x and c_noise = ¼ ln σ, never σ; wrap it
with `edmjax.precond.make_denoiser` (EDM's scalings with σ_data = 0.5 are EDM2's).

Every layer preserves magnitude (the root mean square of the activations) in
expectation:

  * `normalize(x, axis)`: x / (ε + ‖x‖/√N) over `axis` (N elements), ε = 1e-4;
  * `mp_silu(x)` = silu(x)/0.596 (Eq. 81);
  * `mp_sum(a, b, t)` = ((1 − t) a + t b)/√((1 − t)² + t²) (Eq. 88);
  * `mp_cat(a, b, t)`: the two concatenated with weights that keep unit magnitude
    and give b the share t (Eq. 103);
  * `MPFourier`: √2 cos(2π(f x + φ)) with frozen random f, φ (Eq. 75);
  * `MPConv`: a convolution or linear layer whose weight rows are normalised in every
    forward pass and scaled by gain/√fan_in (Eq. 47).

Forced weight normalisation (Eq. 66). NVlabs also overwrites the stored weights with
their normalised values at every training forward pass. Here that is an explicit
function instead of a side effect: `renormalize(params)` returns the params with every
`MPConv` weight row normalised to √fan_in (unit RMS). A training step calls it after
the optimizer update. The forward pass normalises anyway, so renormalising the stored
weights changes no output; what it changes is the scale of the next gradients, as in
the paper. Initial weights are stored already normalised.

Variable tree, one to one with NVlabs' `Precond.state_dict()` (`.` -> `/`):

  params/unet/out_gain                                   ()     NVlabs `unet.out_gain`
  params/unet/emb_noise/weight, emb_label/weight         MPConv linear
  params/unet/enc/{R}x{R}_conv/weight                    MPConv 3x3 (level 0)
  params/unet/enc/{R}x{R}_down, {R}x{R}_block{i}         Block (flavor 'enc')
  params/unet/dec/{R}x{R}_in0, _in1, _up, _block{i}      Block (flavor 'dec')
  params/unet/out_conv/weight                            MPConv 3x3
  params/logvar_linear/weight                            MPConv linear (logvar_channels, 1)
  buffers/unet/emb_fourier/{freqs, phases}               MPFourier (not trained)
  buffers/logvar_fourier/{freqs, phases}                 MPFourier (not trained)

with Block children `emb_gain` (a scalar), `conv_res0`, `emb_linear`, `conv_res1`,
`conv_skip`, `attn_qkv`, `attn_proj` (each `{name}/weight`). Weights convert as
SongUNet's do: an MPConv convolution's OIHW `(out, in, kh, kw)` becomes HWIO
`w.transpose(2, 3, 1, 0)`, a linear one's `(out, in)` becomes `(in, out)` `w.T`;
scalars and buffers are unchanged. `variables_from_state_dict` and
`state_dict_from_variables` do this (NumPy only, no torch).

Compute dtype: `dtype` (e.g. `jnp.bfloat16`) is the dtype of the image path, as
NVlabs' `use_fp16` is; the noise and class embedding stay in float32 as in NVlabs
(its Fourier features follow the float32 c_noise), norms are computed in float32 and
attention logits and softmax in float32. Parameters are stored in float32.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from edmjax.nn.conv import conv2d
from edmjax.nn.layers import BUFFERS, fir_downsample, fir_upsample, resample_kernel

__all__ = [
    "EDM2UNet", "EDM2Block", "MPConv", "MPFourier", "normalize", "mp_silu", "mp_sum",
    "mp_cat", "renormalize", "variables_from_state_dict", "state_dict_from_variables",
]

Dtype = Any

NORM_EPS = 1e-4
"""ε of `normalize` (NVlabs' default)."""


# ----------------------------------------------------------------------------- functions


def normalize(x, axis=None, eps: float = NORM_EPS):
  """x / (ε + ‖x‖ √(n/N)): unit RMS over `axis` (NVlabs' `normalize`).

  Args:
    x: any array.
    axis: the axes normalised over (an int or a tuple); None is every axis but the
      first (NVlabs' default, its `dim`).
    eps: ε added to the RMS.

  The norm is computed in float32 and cast to x's dtype before the division.
  """
  if axis is None:
    axis = tuple(range(1, x.ndim))
  x32 = x.astype(jnp.float32)
  norm = jnp.sqrt(jnp.sum(x32 * x32, axis=axis, keepdims=True))
  scale = np.float32(np.sqrt(norm.size / x.size))
  return x / (eps + scale * norm).astype(x.dtype)


def mp_silu(x):
  """silu(x) / 0.596: unit RMS for unit-Gaussian x (Eq. 81)."""
  return jax.nn.silu(x) / np.asarray(0.596, x.dtype)


def mp_sum(a, b, t: float = 0.5):
  """((1 − t) a + t b) / √((1 − t)² + t²): magnitude-preserving sum (Eq. 88)."""
  return (a + (b - a) * np.asarray(t, a.dtype)) / np.asarray(
      np.sqrt((1 - t)**2 + t**2), a.dtype)


def mp_cat(a, b, axis: int = -1, t: float = 0.5):
  """Magnitude-preserving concatenation along `axis` (Eq. 103), b with share t.

  With N_a, N_b channels and C = √((N_a + N_b)/((1 − t)² + t²)):
  [C (1 − t)/√N_a · a, C t/√N_b · b].
  """
  na, nb = a.shape[axis], b.shape[axis]
  c = np.sqrt((na + nb) / ((1 - t)**2 + t**2))
  wa = np.asarray(c / np.sqrt(na) * (1 - t), a.dtype)
  wb = np.asarray(c / np.sqrt(nb) * t, b.dtype)
  return jnp.concatenate([wa * a, wb * b], axis=axis)


def _resample(x, resample_filter, mode: str):
  """NVlabs' `resample`: 'keep', 2x 'down' (depthwise FIR, stride 2) or 'up' (transposed)."""
  if mode == "keep":
    return x
  f = np.asarray(resample_filter, np.float64)
  if f.ndim != 1 or f.size % 2:
    raise ValueError(f"resample_filter={tuple(resample_filter)!r} must be a 1-D filter "
                     "of even length.")
  kernel = resample_kernel(resample_filter)
  pad = (f.size - 1) // 2
  if mode == "down":
    return fir_downsample(x, kernel, pad)
  return fir_upsample(x, kernel, pad)


def _is_mp_weight(path) -> bool:
  last = path[-1]
  return getattr(last, "key", getattr(last, "name", None)) == "weight"


def renormalize(params):
  """Forced weight normalisation (Eq. 66): every MPConv weight row set to unit RMS.

  Returns `params` with each leaf named `weight` (all of EDM2UNet's weights are
  MPConv weights) replaced by `normalize(w)` over its input axes (all but the last,
  the output axis of HWIO / (in, out)); other leaves (the gains) unchanged. Call it
  after each optimizer update; NVlabs does the same inside its training forward
  pass, before the next gradient.

  Example:
    >>> import jax.numpy as jnp
    >>> p = renormalize({"out_gain": jnp.float32(2.0),
    ...                  "emb_noise": {"weight": jnp.full((4, 2), 3.0)}})
    >>> p["emb_noise"]["weight"][:, 0]   # unit RMS over the 4 inputs (up to ε)
    Array([0.9999667, 0.9999667, 0.9999667, 0.9999667], dtype=float32)
    >>> float(p["out_gain"])
    2.0
  """
  def fix(path, w):
    if not _is_mp_weight(path):
      return w
    return normalize(w, axis=tuple(range(w.ndim - 1))).astype(w.dtype)
  return jax.tree_util.tree_map_with_path(fix, params)


# ----------------------------------------------------------------------------- layers


def _normalized_normal(key, shape, dtype=jnp.float32):
  """NVlabs' `torch.randn` weight, stored normalised (as its first training pass leaves it)."""
  w = jax.random.normal(key, shape, jnp.float32)
  return normalize(w, axis=tuple(range(len(shape) - 1))).astype(dtype)


class MPFourier(nn.Module):
  """Magnitude-preserving Fourier features √2 cos(x f + φ) (Eq. 75; NVlabs `MPFourier`).

  `freqs` = 2π N(0, 1)·bandwidth and `phases` = 2π U(0, 1), `(num_channels,)`, drawn
  once at `init` from the `'params'` rng; they live in the `'buffers'` collection.
  Computed in float32; returns `(B, num_channels)` in the dtype of `x`.
  """
  num_channels: int
  bandwidth: float = 1.0

  @nn.compact
  def __call__(self, x):
    freqs = self.variable(BUFFERS, "freqs", lambda: (2 * np.pi * self.bandwidth) * jax.random.normal(
        self.make_rng("params"), (self.num_channels,), jnp.float32))
    phases = self.variable(BUFFERS, "phases", lambda: 2 * np.pi * jax.random.uniform(
        self.make_rng("params"), (self.num_channels,), jnp.float32))
    y = x.astype(jnp.float32)[:, None] * freqs.value[None, :] + phases.value[None, :]
    return (jnp.cos(y) * np.float32(np.sqrt(2))).astype(x.dtype)


class MPConv(nn.Module):
  """Magnitude-preserving convolution or linear layer (Eq. 47; NVlabs `MPConv`).

  The stored weight `w` (HWIO `(k, k, C_in, features)`, or `(C_in, features)` when
  `kernel == ()`) is normalised over its input axes in every call (in float32), then
  scaled by gain/√fan_in and cast to the dtype of `x`: with unit-RMS weight rows and
  unit-variance inputs the output has unit variance. No bias. A convolution pads
  `kernel // 2` ("same").
  """
  features: int
  kernel: tuple[int, ...] = ()

  @nn.compact
  def __call__(self, x, gain=1.0):
    c_in = x.shape[-1]
    if self.kernel and (len(self.kernel) != 2 or self.kernel[0] != self.kernel[1]):
      raise ValueError(f"MPConv: kernel={self.kernel!r}; expected () or a square (k, k).")
    shape = tuple(self.kernel) + (c_in, self.features)
    w = self.param("weight", _normalized_normal, shape, jnp.float32)
    w = normalize(w.astype(jnp.float32), axis=tuple(range(w.ndim - 1)))
    fan_in = int(np.prod(shape[:-1]))
    w = (w * (gain / np.float32(np.sqrt(fan_in)))).astype(x.dtype)
    if not self.kernel:
      return x @ w
    return conv2d(x, w, self.kernel[0] // 2)


class EDM2Block(nn.Module):
  """U-Net encoder / decoder block with optional self-attention (Figure 21; NVlabs `Block`).

  With x resampled ('keep', 'up' or 'down'):

    enc:  x = pixel_norm(conv_skip(x))                 # conv_skip if C_in != C_out
    y = conv_res0(mp_silu(x))
    y = mp_silu(y · (emb_linear(emb, gain=emb_gain) + 1)); y = dropout(y)
    y = conv_res1(y)
    dec:  x = conv_skip(x)                             # conv_skip if C_in != C_out
    x = mp_sum(x, y, res_balance)
    attention: q, k, v = pixel_norm(attn_qkv(x)) per head;
               x = mp_sum(x, attn_proj(softmax(qᵀk/√c) v), attn_balance)
    x = clip(x, ±clip_act)

  The `attn_qkv` output channels are laid out `(head, channel, {q, k, v})` as
  NVlabs'. Attributes are NVlabs' `Block` arguments (`in_channels` and
  `emb_channels` are read from the inputs).
  """
  out_channels: int
  flavor: str = "enc"
  resample_mode: str = "keep"
  resample_filter: Sequence[float] = (1, 1)
  attention: bool = False
  channels_per_head: int = 64
  dropout: float = 0.0
  res_balance: float = 0.3
  attn_balance: float = 0.3
  clip_act: float | None = 256

  @nn.compact
  def __call__(self, x, emb, *, train: bool = False):
    """Maps NHWC `(B, H, W, C_in)` and `emb` `(B, E)` to `(B, H', W', out_channels)`."""
    if self.flavor not in ("enc", "dec"):
      raise ValueError(f"EDM2Block: flavor={self.flavor!r}; allowed: 'enc', 'dec'.")
    if self.resample_mode not in ("keep", "up", "down"):
      raise ValueError(f"EDM2Block: resample_mode={self.resample_mode!r}; allowed: "
                       "'keep', 'up', 'down'.")
    c_in, c_out = x.shape[-1], self.out_channels
    num_heads = c_out // self.channels_per_head if self.attention else 0
    if num_heads and c_out % num_heads:
      raise ValueError(f"EDM2Block: {c_out} channels cannot be split into {num_heads} "
                       f"heads (channels_per_head={self.channels_per_head}).")

    x = _resample(x, self.resample_filter, self.resample_mode)
    if self.flavor == "enc":
      if c_in != c_out:
        x = MPConv(c_out, (1, 1), name="conv_skip")(x)
      x = normalize(x, axis=-1)  # pixel norm

    y = MPConv(c_out, (3, 3), name="conv_res0")(mp_silu(x))
    emb_gain = self.param("emb_gain", nn.initializers.zeros, (), jnp.float32)
    c = MPConv(c_out, (), name="emb_linear")(emb, gain=emb_gain) + 1
    y = mp_silu(y * c[:, None, None, :].astype(y.dtype))
    y = nn.Dropout(self.dropout, deterministic=not train)(y)
    y = MPConv(c_out, (3, 3), name="conv_res1")(y)

    if self.flavor == "dec" and c_in != c_out:
      x = MPConv(c_out, (1, 1), name="conv_skip")(x)
    x = mp_sum(x, y, t=self.res_balance)

    if num_heads:
      b, h, w, _ = x.shape
      c = c_out // num_heads
      qkv = MPConv(3 * c_out, (1, 1), name="attn_qkv")(x)
      qkv = normalize(qkv.reshape(b, h * w, num_heads, c, 3), axis=3)  # pixel norm per head
      q, k, v = qkv[..., 0], qkv[..., 1], qkv[..., 2]
      logits = jnp.einsum("bqnc,bknc->bnqk", q.astype(jnp.float32),
                          k.astype(jnp.float32) / np.float32(np.sqrt(c)))
      a = jax.nn.softmax(logits, axis=-1).astype(x.dtype)
      y = jnp.einsum("bnqk,bknc->bqnc", a, v).reshape(b, h, w, c_out)
      x = mp_sum(x, MPConv(c_out, (1, 1), name="attn_proj")(y), t=self.attn_balance)

    if self.clip_act is not None:
      x = jnp.clip(x, -self.clip_act, self.clip_act)
    return x


class _Encoder(nn.Module):
  """NVlabs' `UNet.enc` ModuleDict; returns the last activation and every skip."""
  img_resolution: int
  cblock: tuple[int, ...]
  num_blocks: int
  attn_resolutions: tuple[int, ...]
  block_kwargs: Mapping[str, Any]

  @nn.compact
  def __call__(self, x, emb, train):
    skips = []
    for level, channels in enumerate(self.cblock):
      res = self.img_resolution >> level
      if level == 0:
        x = MPConv(channels, (3, 3), name=f"{res}x{res}_conv")(x)
      else:
        x = EDM2Block(x.shape[-1], flavor="enc", resample_mode="down",
                      name=f"{res}x{res}_down", **self.block_kwargs)(x, emb, train=train)
      skips.append(x)
      for idx in range(self.num_blocks):
        x = EDM2Block(channels, flavor="enc", attention=res in self.attn_resolutions,
                      name=f"{res}x{res}_block{idx}", **self.block_kwargs)(x, emb, train=train)
        skips.append(x)
    return x, skips


class _Decoder(nn.Module):
  """NVlabs' `UNet.dec` ModuleDict (without `out_conv`)."""
  img_resolution: int
  cblock: tuple[int, ...]
  num_blocks: int
  attn_resolutions: tuple[int, ...]
  concat_balance: float
  block_kwargs: Mapping[str, Any]

  @nn.compact
  def __call__(self, x, skips, emb, train):
    skips = list(skips)
    for level, channels in reversed(list(enumerate(self.cblock))):
      res = self.img_resolution >> level
      c = x.shape[-1]
      if level == len(self.cblock) - 1:
        x = EDM2Block(c, flavor="dec", attention=True, name=f"{res}x{res}_in0",
                      **self.block_kwargs)(x, emb, train=train)
        x = EDM2Block(c, flavor="dec", name=f"{res}x{res}_in1",
                      **self.block_kwargs)(x, emb, train=train)
      else:
        x = EDM2Block(c, flavor="dec", resample_mode="up", name=f"{res}x{res}_up",
                      **self.block_kwargs)(x, emb, train=train)
      for idx in range(self.num_blocks + 1):
        x = mp_cat(x, skips.pop(), t=self.concat_balance)
        x = EDM2Block(channels, flavor="dec", attention=res in self.attn_resolutions,
                      name=f"{res}x{res}_block{idx}", **self.block_kwargs)(x, emb, train=train)
    return x


class _UNet(nn.Module):
  """NVlabs' `UNet` (the `unet` child of `EDM2UNet`)."""
  img_resolution: int
  img_channels: int
  label_dim: int
  model_channels: int
  channel_mult: tuple[int, ...]
  channel_mult_noise: int | None
  channel_mult_emb: int | None
  num_blocks: int
  attn_resolutions: tuple[int, ...]
  label_balance: float
  concat_balance: float
  label_dropout: float
  block_kwargs: Mapping[str, Any]

  @nn.compact
  def __call__(self, x, noise_labels, class_labels, train):
    cblock = tuple(self.model_channels * m for m in self.channel_mult)
    cnoise = (self.model_channels * self.channel_mult_noise
              if self.channel_mult_noise is not None else cblock[0])
    cemb = (self.model_channels * self.channel_mult_emb
            if self.channel_mult_emb is not None else max(cblock))
    out_gain = self.param("out_gain", nn.initializers.zeros, (), jnp.float32)

    # Embedding (float32, as NVlabs: its Fourier features follow the float32 c_noise).
    emb = MPConv(cemb, (), name="emb_noise")(
        MPFourier(cnoise, name="emb_fourier")(noise_labels.astype(jnp.float32)))
    if self.label_dim:
      y = class_labels
      if train and self.label_dropout:
        keep = jax.random.uniform(self.make_rng("dropout"), (y.shape[0], 1)) >= self.label_dropout
        y = y * keep.astype(y.dtype)
      emb = mp_sum(emb, MPConv(cemb, (), name="emb_label")(
          y * np.float32(np.sqrt(self.label_dim))), t=self.label_balance)
    emb = mp_silu(emb)

    x = jnp.concatenate([x, jnp.ones_like(x[..., :1])], axis=-1)
    common = dict(img_resolution=self.img_resolution, cblock=cblock,
                  num_blocks=self.num_blocks, attn_resolutions=tuple(self.attn_resolutions),
                  block_kwargs=self.block_kwargs)
    x, skips = _Encoder(name="enc", **common)(x, emb, train)
    x = _Decoder(concat_balance=self.concat_balance, name="dec", **common)(x, skips, emb, train)
    return MPConv(self.img_channels, (3, 3), name="out_conv")(x, gain=out_gain)


class EDM2UNet(nn.Module):
  """EDM2's U-Net (NVlabs/edm2 `UNet`) with the uncertainty head of its `Precond`.

  Attributes are NVlabs' arguments and defaults: `UNet`'s (img_resolution,
  img_channels, label_dim, model_channels, channel_mult, channel_mult_noise,
  channel_mult_emb, num_blocks, attn_resolutions, label_balance, concat_balance),
  its Block's (resample_filter, channels_per_head, dropout, res_balance,
  attn_balance, clip_act) and `Precond`'s `logvar_channels`. Beyond NVlabs:
  `label_dropout` (classifier-free guidance training: the labels of a fraction of
  the batch are zeroed, NVlabs/edm's SongUNet option; EDM2 trains a separate
  unconditional model instead) and `dtype`, the compute dtype of the image path.

  The presets of the paper are `model_channels` 64 / 128 / 192 / 256 / 320 / 384 / 448
  (XXS … XXL) with the other defaults; `img512` runs on 64×64×4 latents, `img64` on
  64×64×3 pixels. `img_resolution` names the levels and selects `attn_resolutions`;
  inputs of other sizes divisible by `2**(len(channel_mult) - 1)` are accepted.

  Variables: `'params'` and `'buffers'` (the Fourier features); pass both to `apply`,
  train only `'params'`, and call `renormalize(params)` after each update.

  Example:
    >>> import jax, jax.numpy as jnp
    >>> net = EDM2UNet(img_resolution=8, img_channels=1, model_channels=16,
    ...                channel_mult=(1, 2), num_blocks=1, attn_resolutions=(4,),
    ...                channels_per_head=16)
    >>> x, c_noise = jnp.zeros((2, 8, 8, 1)), jnp.zeros((2,))
    >>> variables = net.init(jax.random.key(0), x, c_noise)
    >>> F, logvar = net.apply(variables, x, c_noise, return_logvar=True)
    >>> F.shape, logvar.shape
    ((2, 8, 8, 1), (2,))
  """
  img_resolution: int
  img_channels: int
  label_dim: int = 0
  model_channels: int = 192
  channel_mult: Sequence[int] = (1, 2, 3, 4)
  channel_mult_noise: int | None = None
  channel_mult_emb: int | None = None
  num_blocks: int = 3
  attn_resolutions: Sequence[int] = (16, 8)
  label_balance: float = 0.5
  concat_balance: float = 0.5
  resample_filter: Sequence[float] = (1, 1)
  channels_per_head: int = 64
  dropout: float = 0.0
  res_balance: float = 0.3
  attn_balance: float = 0.3
  clip_act: float | None = 256
  logvar_channels: int = 128
  label_dropout: float = 0.0
  dtype: Dtype = jnp.float32

  renormalize = staticmethod(renormalize)

  @nn.compact
  def __call__(self, x, noise_labels, class_labels=None, augment_labels=None, *,
               train: bool = False, return_logvar: bool = False):
    """Evaluates F(x; c_noise) and, with `return_logvar`, u(σ) (Eq. 21).

    Args:
      x: NHWC `(B, H, W, img_channels)`, already scaled by c_in.
      noise_labels: `(B,)` c_noise = ¼ ln σ.
      class_labels: one-hot `(B, label_dim)`; None means zeros (NVlabs'
        unconditional input). Must be None when `label_dim == 0`.
      augment_labels: must be None (EDM2 has no augmentation); accepted so the
        network takes the calling convention of the other edmjax networks.
      train: enables dropout and label dropout (`'dropout'` rng).
      return_logvar: also return the uncertainty u, `(B,)` float32.

    Returns:
      F, NHWC in `dtype`; or `(F, logvar)`.
    """
    name = type(self).__name__
    m = 2 ** (len(self.channel_mult) - 1)
    if x.ndim != 4 or x.shape[-1] != self.img_channels or x.shape[1] % m or x.shape[2] % m:
      raise ValueError(f"{name}: x must be NHWC (B, H, W, {self.img_channels}) with H and W "
                       f"multiples of {m}, got shape {x.shape}.")
    batch = x.shape[0]
    if noise_labels.shape != (batch,):
      raise ValueError(f"{name}: noise_labels must have shape ({batch},), got "
                       f"{noise_labels.shape}.")
    if augment_labels is not None:
      raise ValueError(f"{name}: augment_labels must be None (EDM2 has no augmentation "
                       "labels).")
    if class_labels is not None and self.label_dim == 0:
      raise ValueError(f"{name}: got class_labels but label_dim=0; pass class_labels=None "
                       "or build the network with label_dim > 0.")
    if self.label_dim:
      if class_labels is None:
        class_labels = jnp.zeros((batch, self.label_dim), jnp.float32)
      if class_labels.shape != (batch, self.label_dim):
        raise ValueError(f"{name}: class_labels must have shape ({batch}, {self.label_dim}), "
                         f"got {class_labels.shape}.")
      class_labels = class_labels.astype(jnp.float32)

    block_kwargs = dict(resample_filter=tuple(self.resample_filter),
                        channels_per_head=self.channels_per_head, dropout=self.dropout,
                        res_balance=self.res_balance, attn_balance=self.attn_balance,
                        clip_act=self.clip_act)
    F = _UNet(img_resolution=self.img_resolution, img_channels=self.img_channels,
              label_dim=self.label_dim, model_channels=self.model_channels,
              channel_mult=tuple(self.channel_mult),
              channel_mult_noise=self.channel_mult_noise,
              channel_mult_emb=self.channel_mult_emb, num_blocks=self.num_blocks,
              attn_resolutions=tuple(self.attn_resolutions),
              label_balance=self.label_balance, concat_balance=self.concat_balance,
              label_dropout=self.label_dropout, block_kwargs=block_kwargs,
              name="unet")(x.astype(self.dtype), noise_labels, class_labels, train)
    # The head always runs (so that `init` creates it); unused, it is dead code to XLA.
    logvar = MPConv(1, (), name="logvar_linear")(
        MPFourier(self.logvar_channels, name="logvar_fourier")(
            noise_labels.astype(jnp.float32)))[:, 0]
    return (F, logvar) if return_logvar else F


# ----------------------------------------------------------------------------- checkpoints


def _split_key(key: str):
  parts = key.split(".")
  if parts[-1] in ("freqs", "phases"):
    return BUFFERS, parts
  return "params", parts


def variables_from_state_dict(state_dict: Mapping[str, Any]) -> dict:
  """EDM2UNet variables from NVlabs/edm2 `Precond.state_dict()` arrays (NumPy, no torch).

  Keys map `.` -> `/`; `freqs` and `phases` go to `'buffers'`, the rest to `'params'`;
  4-D weights OIHW -> HWIO, 2-D `(out, in)` -> `(in, out)`; float32.

  Raises:
    ValueError: a key that is not one of a `Precond`'s (`unet.*`, `logvar_*`).
  """
  out: dict = {"params": {}, BUFFERS: {}}
  for key, value in state_dict.items():
    if not (key.startswith("unet.") or key.startswith("logvar_")):
      raise ValueError(f"state_dict key {key!r} is not an NVlabs/edm2 Precond key "
                       "(expected 'unet.*', 'logvar_fourier.*' or 'logvar_linear.*').")
    collection, parts = _split_key(key)
    v = np.asarray(value, np.float32)
    if v.ndim == 4:
      v = v.transpose(2, 3, 1, 0)
    elif v.ndim == 2:
      v = v.T
    node = out[collection]
    for p in parts[:-1]:
      node = node.setdefault(p, {})
    node[parts[-1]] = v
  return out


def state_dict_from_variables(variables: Mapping[str, Any]) -> dict[str, np.ndarray]:
  """The inverse of `variables_from_state_dict`: NVlabs' flat keys and layouts."""
  out = {}
  for collection in ("params", BUFFERS):
    flat = jax.tree_util.tree_flatten_with_path(variables.get(collection, {}))[0]
    for path, value in flat:
      key = ".".join(str(getattr(p, "key", p)) for p in path)
      v = np.asarray(value, np.float32)
      if v.ndim == 4:
        v = v.transpose(3, 2, 0, 1)
      elif v.ndim == 2:
        v = v.T
      out[key] = v
  return out
