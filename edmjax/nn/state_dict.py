"""NVlabs/edm PyTorch state dicts <-> Flax variables of `SongUNet` and `DhariwalUNet`.

The networks of `edmjax.nn` keep NVlabs' module names, so the mapping is one to one
(`edmjax.nn.layers` states it per layer):

==========================================  ==========================================
PyTorch key (NVlabs `training/networks.py`)  Flax variable
==========================================  ==========================================
`a.b.weight` of a `Linear`, `(out, in)`      `params/a/b/weight`, `(in, out)`: `w.T`
`a.b.weight` of a `Conv2d`, OIHW             `params/a/b/weight`, HWIO:
                                             `w.transpose(2, 3, 1, 0)`
`a.b.bias`, `GroupNorm` `weight` / `bias`    `params/a/b/...`, unchanged
`map_noise.freqs` (NCSN++'s Fourier buffer)  `buffers/map_noise/freqs`, unchanged
`a.b.resample_filter` (a `Conv2d` buffer     not stored: it is `f fᵀ / (Σ f)²` of the
 that resamples, `(1, 1, k, k)`)             configuration's `resample_filter`
==========================================  ==========================================

Keys are relative to the network; a preconditioning wrapper (`EDMPrecond` etc.) adds
the prefix `model.` (pass `prefix='model.'`). The shape of a leaf decides its
conversion (4-D: a convolution, 2-D: a linear layer, else unchanged): NVlabs' networks
have no other multi-dimensional tensors.

Both directions are strict: every tensor of the state dict is used, every variable is
filled, shapes must agree, and a stored `resample_filter` must equal the one the
configuration implies; a mismatch raises a ValueError listing the keys.

Example:
  >>> from edmjax.nn import SongUNet
  >>> net = SongUNet(img_resolution=8, in_channels=1, out_channels=1, model_channels=8,
  ...                channel_mult=(1, 2), num_blocks=1, attn_resolutions=())
  >>> shapes = variable_shapes(net)
  >>> shapes.params["enc"]["8x8_conv"]["weight"].shape     # HWIO
  (3, 3, 1, 8)
  >>> variables = jax.tree_util.tree_map(lambda s: np.ones(s.shape, s.dtype),
  ...                                    shapes.variables)
  >>> sd = state_dict_from_variables(net, variables, prefix="model.")
  >>> sd["model.enc.8x8_conv.weight"].shape                # OIHW
  (8, 1, 3, 3)
  >>> sd["model.enc.4x4_down.conv0.resample_filter"].shape
  (1, 1, 2, 2)
"""

from __future__ import annotations

import collections
from typing import Any, Mapping, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from edmjax.nn.layers import Conv2d, resample_kernel

__all__ = ["VariableShapes", "variable_shapes", "variables_from_state_dict",
           "state_dict_from_variables", "torch_key"]


class VariableShapes(NamedTuple):
  """The variables a network creates and the resampling buffers NVlabs stores.

  Attributes:
    variables: the abstract variable tree (`jax.ShapeDtypeStruct` leaves) of
      `net.init`: `'params'` and, for NCSN++, `'buffers'`.
    resample_filters: PyTorch key (no prefix) -> the `(1, 1, k, k)` float32
      `resample_filter` buffer of each resampling `Conv2d`.
  """
  variables: Any
  resample_filters: dict

  @property
  def params(self):
    return self.variables["params"]


def variable_shapes(net: nn.Module) -> VariableShapes:
  """Traces `net.init` abstractly (nothing is allocated) for a `SongUNet` / `DhariwalUNet`."""
  for attr in ("img_resolution", "in_channels", "label_dim", "augment_dim"):
    if not hasattr(net, attr):
      raise ValueError(f"variable_shapes needs a SongUNet or DhariwalUNet; "
                       f"{type(net).__name__} has no {attr!r}.")
  filters = {}

  def record(next_fun, args, kwargs, context):
    m = context.module
    if isinstance(m, Conv2d) and context.method_name == "__call__" and (m.up or m.down):
      f = resample_kernel(m.resample_filter)
      filters[".".join(m.path) + ".resample_filter"] = f.reshape((1, 1) + f.shape)
    return next_fun(*args, **kwargs)

  f32 = jnp.float32
  r = net.img_resolution
  args = [jax.ShapeDtypeStruct((1, r, r, net.in_channels), f32),
          jax.ShapeDtypeStruct((1,), f32),
          jax.ShapeDtypeStruct((1, net.label_dim), f32) if net.label_dim else None,
          jax.ShapeDtypeStruct((1, net.augment_dim), f32) if net.augment_dim else None]
  with nn.intercept_methods(record):
    variables = jax.eval_shape(net.init, jax.random.key(0), *args)
  return VariableShapes(variables, filters)


def torch_key(path) -> str:
  """The PyTorch key of a Flax variable path `(collection, module, ..., leaf)`."""
  return ".".join(str(getattr(p, "key", p)) for p in path[1:])


def _relayout(a: np.ndarray, to_torch: bool) -> np.ndarray:
  """HWIO <-> OIHW for convolutions, a transpose for linear weights, else unchanged."""
  if a.ndim == 4:
    return a.transpose((3, 2, 0, 1) if to_torch else (2, 3, 1, 0))
  return a.T if a.ndim == 2 else a


def _leaves(tree):
  return jax.tree_util.tree_flatten_with_path(tree)[0]


def _listing(keys, limit=8):
  keys = sorted(keys)
  more = f" and {len(keys) - limit} more" if len(keys) > limit else ""
  return ", ".join(keys[:limit]) + more


def variables_from_state_dict(net: nn.Module, state_dict: Mapping[str, Any], *,
                              prefix: str = "", shapes: VariableShapes | None = None,
                              dtype=np.float32) -> dict:
  """The Flax variables of `net` from an NVlabs state dict (strict, see the module doc).

  Args:
    net: a `SongUNet` or `DhariwalUNet` with NVlabs' constructor arguments.
    state_dict: PyTorch key -> array (NumPy or anything `np.asarray` takes).
    prefix: the keys' prefix, e.g. `'model.'` under a preconditioning wrapper; keys
      without it are not part of the network and are not considered.
    shapes: `variable_shapes(net)`, if already computed.
    dtype: the dtype of the returned host arrays.

  Returns:
    `{'params': ..., 'buffers': ...}` (only the collections `net` has) of NumPy arrays.

  Raises:
    ValueError: missing or unexpected keys, shape mismatches, or a stored
      `resample_filter` that differs from the configuration's; each names the keys.
  """
  shapes = shapes or variable_shapes(net)
  given = {k[len(prefix):]: v for k, v in state_dict.items() if k.startswith(prefix)}
  leaves = _leaves(shapes.variables)
  expected = {torch_key(p) for p, _ in leaves}
  missing = expected - set(given)
  unexpected = set(given) - expected - set(shapes.resample_filters)
  absent_filters = set(shapes.resample_filters) - set(given)
  if missing or unexpected:
    raise ValueError(
        f"the state dict does not match {type(net).__name__}"
        f"({_config_summary(net)}): missing {len(missing)} tensors"
        f"{' (' + _listing(prefix + k for k in missing) + ')' if missing else ''}, "
        f"unexpected {len(unexpected)}"
        f"{' (' + _listing(prefix + k for k in unexpected) + ')' if unexpected else ''}.")
  if absent_filters and len(absent_filters) != len(shapes.resample_filters):
    raise ValueError(f"the state dict lacks resample_filter buffers "
                     f"{_listing(prefix + k for k in absent_filters)}.")
  for k, f in shapes.resample_filters.items():
    if k in given and not np.array_equal(np.asarray(given[k], np.float32), f):
      raise ValueError(
          f"{prefix}{k} is {np.asarray(given[k]).ravel().tolist()}; the configuration "
          f"(resample_filter={tuple(net.resample_filter) if hasattr(net, 'resample_filter') else None}) "
          f"gives {f.ravel().tolist()}.")
  wrong, out = [], []
  for path, s in leaves:
    k = torch_key(path)
    a = _relayout(np.asarray(given[k]), to_torch=False)
    if a.shape != tuple(s.shape):
      wrong.append(f"{prefix}{k} {tuple(np.shape(given[k]))} (expected "
                   f"{tuple(_relayout(np.empty(s.shape, np.uint8), to_torch=True).shape)})")
    out.append(np.ascontiguousarray(a, dtype=dtype))
  if wrong:
    raise ValueError(f"the state dict has tensors of the wrong shape for "
                     f"{type(net).__name__}({_config_summary(net)}): {', '.join(wrong[:8])}"
                     f"{' and more' if len(wrong) > 8 else ''}.")
  treedef = jax.tree_util.tree_structure(shapes.variables)
  return jax.tree_util.tree_unflatten(treedef, out)


def state_dict_from_variables(net: nn.Module, variables, *, prefix: str = "",
                              shapes: VariableShapes | None = None
                              ) -> "collections.OrderedDict[str, np.ndarray]":
  """The NVlabs state dict of `net`'s variables: the inverse of `variables_from_state_dict`.

  Includes the `resample_filter` buffers, so that NVlabs' `load_state_dict` (strict)
  accepts it. Arrays are float32 NumPy in PyTorch layout.

  Raises:
    ValueError: `variables` does not have the tree and shapes `net` creates.
  """
  shapes = shapes or variable_shapes(net)
  want = {torch_key(p): tuple(s.shape) for p, s in _leaves(shapes.variables)}
  got = {torch_key(p): np.asarray(v) for p, v in _leaves(variables)}
  if set(want) != set(got):
    raise ValueError(
        f"variables do not match {type(net).__name__}({_config_summary(net)}): missing "
        f"{_listing(set(want) - set(got)) or 'none'}; unexpected "
        f"{_listing(set(got) - set(want)) or 'none'}.")
  wrong = [f"{k} {got[k].shape} (expected {s})" for k, s in want.items()
           if got[k].shape != s]
  if wrong:
    raise ValueError(f"variables of the wrong shape: {', '.join(wrong[:8])}.")
  out = collections.OrderedDict()
  for k in want:
    out[prefix + k] = np.ascontiguousarray(_relayout(got[k], to_torch=True), dtype=np.float32)
  for k, f in shapes.resample_filters.items():
    out[prefix + k] = f.copy()
  return out


def _config_summary(net) -> str:
  fields = ("img_resolution", "model_channels", "channel_mult", "num_blocks")
  return ", ".join(f"{f}={getattr(net, f)!r}" for f in fields if hasattr(net, f))
