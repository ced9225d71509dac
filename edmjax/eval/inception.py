"""The FID Inception-v3 network in Flax, with the weights "pt_inception-2015-12-05".

FID (Heusel et al. 2017, arXiv 1706.08500) is defined by the 2048-d pool features of
the TensorFlow Inception graph of 2015-12-05. The PyTorch ports that reproduce it --
pytorch-fid (`FIDInceptionA/C/E_1/E_2`) and torch-fidelity
(`FeatureExtractorInceptionV3`, the same weights) -- differ from torchvision's
Inception-v3 in three places, all kept here:

* the average-pool branches of the A, C and first E blocks exclude the zero padding
  from the mean (`count_include_pad=False`, TensorFlow's behaviour);
* the pool branch of the second E block (`Mixed_7c`) is a 3×3 *max* pool, stride 1;
* BatchNorm has eps = 1e-3, convolutions have no bias, and the classifier has 1008
  outputs.

Inputs are resized to 299×299 with TensorFlow-1.x bilinear resizing
(`align_corners=False`, no half-pixel centres: source coordinate = dst·in/out), exactly
as torch-fidelity's `interpolate_bilinear_2d_like_tensorflow1x`, then mapped from
[0, 255] to [-1, 1] by (x - 128)/128 as in the TensorFlow graph.

NVlabs/edm's detector. NVlabs' `fid.py` (and its published reference statistics,
e.g. `cifar10-32x32.npz`) uses another port of the same graph: StyleGAN3's TorchScript
`inception-2015-12-05.pkl`, "a direct PyTorch translation" of the TensorFlow graph,
downloaded at run time; it takes uint8 images and resizes them to 299x299 inside the
TorchScript code. Its weights are the graph's, as pytorch-fid's are, so the
convolutional part should agree to float rounding (pytorch-fid measured ~1e-8 mean
absolute difference against TensorFlow on identical inputs); what can differ is the
resize to 299x299 and accumulation order. The difference between edmjax's features
and NVlabs' detector is UNMEASURED here: the detector needs a download, and this
project's machines have no network. For scale, pytorch-fid reports its FID differing
from TensorFlow's by 0.08 absolute (0.09% relative) on LSUN with ProGAN images, from
image interpolation and backends (pytorch-fid README). Mixing edmjax features with
NVlabs' published reference statistics therefore gives an FID comparable to NVlabs'
to about that order, not to the last digit; for exact comparability compute the
reference statistics with the same network as the samples.

Weights. The network needs the converted TensorFlow weights, a file the user supplies:
torch-fidelity's `weights-inception-2015-12-05-6726825d.pth`
(https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/weights-inception-2015-12-05-6726825d.pth)
or pytorch-fid's `pt_inception-2015-12-05-6726825d.pth` (same tensors, same names).
Pass its path to `load_inception_params(path)` or set `EDMJAX_INCEPTION_WEIGHTS`. The
`.pth` is read without torch (`edmjax.torchio`); an `.npz` holding the same
state-dict names works too (`save_inception_npz` writes one).

Example:
  >>> variables = load_inception_params("/no/such/pt_inception.pth")  # doctest: +ELLIPSIS
  Traceback (most recent call last):
  FileNotFoundError: Inception weights file '/no/such/pt_inception.pth' does not exist. ...

With the file, `jax.jit(inception_features)(variables, images)` gives the (batch,
2048) pool features of NHWC images in [-1, 1].
"""

from __future__ import annotations

import functools
import os
from typing import Any, Mapping

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from edmjax import _checks
from edmjax import torchio

INCEPTION_SIZE = 299
WEIGHTS_ENV = "EDMJAX_INCEPTION_WEIGHTS"
WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
WEIGHTS_URL = ("https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
               "weights-inception-2015-12-05-6726825d.pth")


# ------------------------------------------------------------------------- network

class BasicConv2d(nn.Module):
  """Conv (no bias) -> BatchNorm(eps=1e-3, running statistics) -> ReLU."""
  features: int
  kernel_size: tuple[int, int]
  strides: int = 1
  padding: tuple[int, int] = (0, 0)

  @nn.compact
  def __call__(self, x):
    ph, pw = self.padding
    x = nn.Conv(self.features, self.kernel_size, strides=self.strides,
                padding=((ph, ph), (pw, pw)), use_bias=False, name="conv")(x)
    x = nn.BatchNorm(use_running_average=True, epsilon=1e-3, name="bn")(x)
    return nn.relu(x)


def _avg_pool_3x3(x):
  """3×3 stride-1 average pool that ignores the zero padding (TensorFlow 'SAME')."""
  return nn.avg_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)),
                     count_include_pad=False)


def _max_pool_3x3_s2(x):
  return nn.max_pool(x, (3, 3), strides=(2, 2), padding="VALID")


class InceptionA(nn.Module):
  """Mixed_5b/c/d (pytorch-fid's FIDInceptionA): avg pool without padding counts."""
  pool_features: int

  @nn.compact
  def __call__(self, x):
    b1 = BasicConv2d(64, (1, 1), name="branch1x1")(x)
    b5 = BasicConv2d(48, (1, 1), name="branch5x5_1")(x)
    b5 = BasicConv2d(64, (5, 5), padding=(2, 2), name="branch5x5_2")(b5)
    b3 = BasicConv2d(64, (1, 1), name="branch3x3dbl_1")(x)
    b3 = BasicConv2d(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(b3)
    b3 = BasicConv2d(96, (3, 3), padding=(1, 1), name="branch3x3dbl_3")(b3)
    bp = BasicConv2d(self.pool_features, (1, 1), name="branch_pool")(_avg_pool_3x3(x))
    return jnp.concatenate([b1, b5, b3, bp], axis=-1)


class InceptionB(nn.Module):
  """Mixed_6a: grid reduction 35 -> 17."""

  @nn.compact
  def __call__(self, x):
    b3 = BasicConv2d(384, (3, 3), strides=2, name="branch3x3")(x)
    bd = BasicConv2d(64, (1, 1), name="branch3x3dbl_1")(x)
    bd = BasicConv2d(96, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(bd)
    bd = BasicConv2d(96, (3, 3), strides=2, name="branch3x3dbl_3")(bd)
    return jnp.concatenate([b3, bd, _max_pool_3x3_s2(x)], axis=-1)


class InceptionC(nn.Module):
  """Mixed_6b..e (FIDInceptionC): factorised 7×7, avg pool without padding counts."""
  channels_7x7: int

  @nn.compact
  def __call__(self, x):
    c7 = self.channels_7x7
    b1 = BasicConv2d(192, (1, 1), name="branch1x1")(x)
    b7 = BasicConv2d(c7, (1, 1), name="branch7x7_1")(x)
    b7 = BasicConv2d(c7, (1, 7), padding=(0, 3), name="branch7x7_2")(b7)
    b7 = BasicConv2d(192, (7, 1), padding=(3, 0), name="branch7x7_3")(b7)
    bd = BasicConv2d(c7, (1, 1), name="branch7x7dbl_1")(x)
    bd = BasicConv2d(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_2")(bd)
    bd = BasicConv2d(c7, (1, 7), padding=(0, 3), name="branch7x7dbl_3")(bd)
    bd = BasicConv2d(c7, (7, 1), padding=(3, 0), name="branch7x7dbl_4")(bd)
    bd = BasicConv2d(192, (1, 7), padding=(0, 3), name="branch7x7dbl_5")(bd)
    bp = BasicConv2d(192, (1, 1), name="branch_pool")(_avg_pool_3x3(x))
    return jnp.concatenate([b1, b7, bd, bp], axis=-1)


class InceptionD(nn.Module):
  """Mixed_7a: grid reduction 17 -> 8."""

  @nn.compact
  def __call__(self, x):
    b3 = BasicConv2d(192, (1, 1), name="branch3x3_1")(x)
    b3 = BasicConv2d(320, (3, 3), strides=2, name="branch3x3_2")(b3)
    b7 = BasicConv2d(192, (1, 1), name="branch7x7x3_1")(x)
    b7 = BasicConv2d(192, (1, 7), padding=(0, 3), name="branch7x7x3_2")(b7)
    b7 = BasicConv2d(192, (7, 1), padding=(3, 0), name="branch7x7x3_3")(b7)
    b7 = BasicConv2d(192, (3, 3), strides=2, name="branch7x7x3_4")(b7)
    return jnp.concatenate([b3, b7, _max_pool_3x3_s2(x)], axis=-1)


class InceptionE(nn.Module):
  """Mixed_7b (FIDInceptionE_1, avg pool) and Mixed_7c (FIDInceptionE_2, max pool)."""
  pool: str  # "avg" (Mixed_7b) or "max" (Mixed_7c)

  @nn.compact
  def __call__(self, x):
    b1 = BasicConv2d(320, (1, 1), name="branch1x1")(x)
    b3 = BasicConv2d(384, (1, 1), name="branch3x3_1")(x)
    b3 = jnp.concatenate([
        BasicConv2d(384, (1, 3), padding=(0, 1), name="branch3x3_2a")(b3),
        BasicConv2d(384, (3, 1), padding=(1, 0), name="branch3x3_2b")(b3)], axis=-1)
    bd = BasicConv2d(448, (1, 1), name="branch3x3dbl_1")(x)
    bd = BasicConv2d(384, (3, 3), padding=(1, 1), name="branch3x3dbl_2")(bd)
    bd = jnp.concatenate([
        BasicConv2d(384, (1, 3), padding=(0, 1), name="branch3x3dbl_3a")(bd),
        BasicConv2d(384, (3, 1), padding=(1, 0), name="branch3x3dbl_3b")(bd)], axis=-1)
    if self.pool == "avg":
      p = _avg_pool_3x3(x)
    else:  # The 2015 TF graph uses a max pool here (pytorch-fid's FIDInceptionE_2).
      p = nn.max_pool(x, (3, 3), strides=(1, 1), padding=((1, 1), (1, 1)))
    bp = BasicConv2d(192, (1, 1), name="branch_pool")(p)
    return jnp.concatenate([b1, b3, bd, bp], axis=-1)


class FIDInceptionV3(nn.Module):
  """Inception-v3 of the FID weights, on prepared NHWC input (299×299, [-1, 1]).

  Returns the 2048-d global-average-pool features, or with `logits=True` the pair
  (features, 1008 logits) for the Inception Score. Submodule names equal the
  state-dict names of pytorch-fid / torch-fidelity (`Mixed_6b.branch7x7_2.conv`, ...).
  """

  @nn.compact
  def __call__(self, x, logits: bool = False):
    x = BasicConv2d(32, (3, 3), strides=2, name="Conv2d_1a_3x3")(x)  # 149
    x = BasicConv2d(32, (3, 3), name="Conv2d_2a_3x3")(x)  # 147
    x = BasicConv2d(64, (3, 3), padding=(1, 1), name="Conv2d_2b_3x3")(x)
    x = _max_pool_3x3_s2(x)  # 73
    x = BasicConv2d(80, (1, 1), name="Conv2d_3b_1x1")(x)
    x = BasicConv2d(192, (3, 3), name="Conv2d_4a_3x3")(x)  # 71
    x = _max_pool_3x3_s2(x)  # 35
    x = InceptionA(32, name="Mixed_5b")(x)
    x = InceptionA(64, name="Mixed_5c")(x)
    x = InceptionA(64, name="Mixed_5d")(x)
    x = InceptionB(name="Mixed_6a")(x)  # 17
    x = InceptionC(128, name="Mixed_6b")(x)
    x = InceptionC(160, name="Mixed_6c")(x)
    x = InceptionC(160, name="Mixed_6d")(x)
    x = InceptionC(192, name="Mixed_6e")(x)
    x = InceptionD(name="Mixed_7a")(x)  # 8
    x = InceptionE("avg", name="Mixed_7b")(x)
    x = InceptionE("max", name="Mixed_7c")(x)
    feats = jnp.mean(x, axis=(1, 2))
    fc = nn.Dense(1008, name="fc")
    if logits:
      return feats, fc(feats)
    if self.is_initializing():
      fc(feats)  # create the classifier's parameters so the tree matches the file
    return feats


# -------------------------------------------------------------------- preprocessing

def resize_bilinear_tf1(images: jax.Array, size: tuple[int, int]) -> jax.Array:
  """TensorFlow-1.x `resize_bilinear(align_corners=False)` of NHWC float images.

  Source coordinate of output pixel i is :math:`s = i \\cdot n_{in}/n_{out}` (no
  half-pixel offset), :math:`i_0 = \\lfloor s \\rfloor`, :math:`i_1 = \\min(i_0+1,
  n_{in}-1)`, weight :math:`s - i_0`; interpolated along the width first, then the
  height -- torch-fidelity's `interpolate_bilinear_2d_like_tensorflow1x` ('slow',
  bit-exact on CPU) in float32.
  """
  _checks.check_nhwc("images", images)
  x = jnp.asarray(images, jnp.float32)
  out_h, out_w = size

  def grid(n_in, n_out):
    s = jnp.arange(n_out, dtype=jnp.float32) * jnp.float32(n_in / n_out)
    lo = s.astype(jnp.int32)
    hi = jnp.minimum(lo + 1, n_in - 1)
    return lo, hi, s - lo.astype(jnp.float32)

  ylo, yhi, dy = grid(x.shape[1], out_h)
  xlo, xhi, dx = grid(x.shape[2], out_w)
  dx = dx[None, None, :, None]
  dy = dy[None, :, None, None]
  rows_lo, rows_hi = x[:, ylo], x[:, yhi]
  in_0 = rows_lo[:, :, xlo] + (rows_lo[:, :, xhi] - rows_lo[:, :, xlo]) * dx
  in_1 = rows_hi[:, :, xlo] + (rows_hi[:, :, xhi] - rows_hi[:, :, xlo]) * dx
  return in_0 + (in_1 - in_0) * dy


def preprocess_inception(images: jax.Array) -> jax.Array:
  """NHWC images -> the network's 299×299 input in [-1, 1].

  `uint8` images are taken as [0, 255]; floating images as the library's [-1, 1]
  range and mapped to [0, 255] by (x + 1)·127.5 (no rounding). For numbers exactly
  comparable with torch-fidelity / NVlabs/edm, which quantise samples to uint8 first,
  pass `to_uint8(images)`. Grey images (1 channel) are repeated to RGB.
  """
  _checks.check_nhwc("images", images)
  if images.shape[-1] not in (1, 3):
    raise ValueError(f"images must have 1 or 3 channels, got shape {images.shape}.")
  if images.dtype == jnp.uint8:
    x = images.astype(jnp.float32)
  elif jnp.issubdtype(images.dtype, jnp.floating):
    x = (images.astype(jnp.float32) + 1.0) * 127.5
  else:
    raise ValueError(f"images must be uint8 in [0, 255] or float in [-1, 1], got "
                     f"dtype {images.dtype}.")
  if x.shape[-1] == 1:
    x = jnp.repeat(x, 3, axis=-1)
  x = resize_bilinear_tf1(x, (INCEPTION_SIZE, INCEPTION_SIZE))
  return (x - 128.0) / 128.0


def to_uint8(images: jax.Array) -> jax.Array:
  """[-1, 1] float images -> uint8, as NVlabs/edm: clip(x·127.5 + 128, 0, 255)."""
  return jnp.clip(jnp.asarray(images) * 127.5 + 128.0, 0, 255).astype(jnp.uint8)


def inception_features(variables: Mapping[str, Any], images: jax.Array, *,
                       logits: bool = False):
  """2048-d FID pool features of NHWC images (any size; resized to 299×299).

  Args:
    variables: `{'params': ..., 'batch_stats': ...}` from `load_inception_params`.
    images: NHWC, uint8 in [0, 255] or float in [-1, 1], 1 or 3 channels.
    logits: also return the 1008 classifier logits (for the Inception Score).

  Returns:
    (batch, 2048) float32 features, or (features, logits).
  """
  return FIDInceptionV3().apply(variables, preprocess_inception(images), logits=logits)


# -------------------------------------------------------------------------- weights

def _missing_weights_error(detail: str) -> FileNotFoundError:
  return FileNotFoundError(
      f"{detail}. The FID Inception-v3 needs the converted TensorFlow weights "
      f"'{WEIGHTS_FILE}'. Download torch-fidelity's copy from {WEIGHTS_URL} (pytorch-fid's "
      f"'{WEIGHTS_FILE}' from github.com/mseitzer/pytorch-fid/releases works too) and "
      f"pass its path: load_inception_params(path), the --inception flag of the "
      f"experiment scripts, or the environment variable {WEIGHTS_ENV}=/path/to/file. "
      "An .npz with the same state_dict names is accepted as well.")


@functools.lru_cache(maxsize=1)
def _expected_shapes():
  """Shapes of the Flax variables (a nested dict of tuples; do not mutate)."""
  shapes = jax.eval_shape(
      lambda: FIDInceptionV3().init(jax.random.key(0), jnp.zeros((1, 75, 75, 3))))
  return jax.tree_util.tree_map(lambda s: s.shape, shapes)


def state_dict_to_variables(state_dict: Mapping[str, np.ndarray]) -> dict:
  """Maps pytorch-fid / torch-fidelity state-dict names onto the Flax variables.

  `<path>.conv.weight` (O, I, kh, kw) -> params `<path>/conv/kernel` (kh, kw, I, O);
  `<path>.bn.weight|bias` -> params `bn/scale|bias`;
  `<path>.bn.running_mean|running_var` -> batch_stats `bn/mean|var`;
  `fc.weight` (1008, 2048) -> params `fc/kernel` (2048, 1008), `fc.bias` -> `fc/bias`.
  `num_batches_tracked` and `AuxLogits.*` entries are ignored. Every expected
  variable must be present with the right shape, else ValueError lists the problems.
  """
  expected = _expected_shapes()
  variables: dict = {"params": {}, "batch_stats": {}}
  unexpected = []
  for key, value in state_dict.items():
    parts = key.split(".")
    if parts[-1] == "num_batches_tracked" or parts[0] == "AuxLogits":
      continue
    value = np.asarray(value, np.float32)
    leaf = parts[-1]
    if parts[-2:-1] == ["conv"] and leaf == "weight" and value.ndim == 4:
      col, name, value = "params", "kernel", value.transpose(2, 3, 1, 0)
    elif parts[-2:-1] == ["bn"] and leaf in ("weight", "bias"):
      col, name = "params", {"weight": "scale", "bias": "bias"}[leaf]
    elif parts[-2:-1] == ["bn"] and leaf in ("running_mean", "running_var"):
      col, name = "batch_stats", {"running_mean": "mean", "running_var": "var"}[leaf]
    elif parts[:-1] == ["fc"] and leaf in ("weight", "bias"):
      col, name = "params", {"weight": "kernel", "bias": "bias"}[leaf]
      value = value.T if leaf == "weight" else value
    else:
      unexpected.append(key)
      continue
    node = variables[col]
    for p in parts[:-1]:
      node = node.setdefault(p, {})
    node[name] = value

  problems = []
  if unexpected:
    problems.append(f"unexpected keys {unexpected[:5]}")
  flat_exp = {jax.tree_util.keystr(k): v for k, v in
              jax.tree_util.tree_flatten_with_path(
                  expected, is_leaf=lambda s: isinstance(s, tuple))[0]}
  flat_got = {jax.tree_util.keystr(k): v.shape for k, v in
              jax.tree_util.tree_flatten_with_path(variables)[0]}
  missing = sorted(set(flat_exp) - set(flat_got))
  extra = sorted(set(flat_got) - set(flat_exp))
  wrong = [f"{k}: {flat_got[k]} != {flat_exp[k]}" for k in flat_exp
           if k in flat_got and tuple(flat_got[k]) != tuple(flat_exp[k])]
  if missing:
    problems.append(f"{len(missing)} missing variables, e.g. {missing[:3]}")
  if extra:
    problems.append(f"unexpected variables {extra[:3]}")
  if wrong:
    problems.append(f"wrong shapes {wrong[:3]}")
  if problems:
    raise ValueError("state_dict does not match the FID Inception-v3 "
                     f"({WEIGHTS_FILE}): " + "; ".join(problems) + ".")
  return jax.tree_util.tree_map(jnp.asarray, variables)


def load_inception_params(path: str | os.PathLike | None = None) -> dict:
  """Loads the FID Inception weights from `path` or `$EDMJAX_INCEPTION_WEIGHTS`.

  Args:
    path: a `.pth` state dict of torch-fidelity / pytorch-fid (zip or legacy
      format, read without torch) or an `.npz` with the same keys. None: use the
      environment variable `EDMJAX_INCEPTION_WEIGHTS`.

  Returns:
    Flax variables `{'params', 'batch_stats'}` for `FIDInceptionV3` /
    `inception_features`.

  Raises:
    FileNotFoundError: no path given or the file does not exist; the message says
      which file is needed and where to get it.
  """
  if path is None:
    path = os.environ.get(WEIGHTS_ENV) or None
    if path is None:
      raise _missing_weights_error(
          f"No Inception weights given (argument path=None and ${WEIGHTS_ENV} unset)")
  path = os.fspath(path)
  if not os.path.isfile(path):
    raise _missing_weights_error(f"Inception weights file {path!r} does not exist")
  if path.endswith(".npz"):
    with np.load(path, allow_pickle=False) as f:
      state_dict = {k: f[k] for k in f.files}
  else:
    state_dict = torchio.load_torch_state_dict(path)
  return state_dict_to_variables(state_dict)


def save_inception_npz(path: str | os.PathLike, state_dict: Mapping[str, Any]) -> None:
  """Writes a state dict (e.g. from `torchio.load_torch_state_dict`) as `.npz`."""
  np.savez(path, **{k: np.asarray(v) for k, v in state_dict.items()})


__all__ = [
    "FIDInceptionV3", "inception_features", "load_inception_params",
    "preprocess_inception", "resize_bilinear_tf1", "save_inception_npz",
    "state_dict_to_variables", "to_uint8", "INCEPTION_SIZE", "WEIGHTS_ENV",
    "WEIGHTS_FILE", "WEIGHTS_URL",
]
