"""NVlabs/edm network pickles in edmjax, loaded safely; and edmjax networks out as state dicts.

The published EDM networks (`edm-cifar10-32x32-cond-vp.pkl`, ..., `baseline-*.pkl`) and
NVlabs' training snapshots (`network-snapshot-*.pkl`) are plain pickles of a dict
(`ema`, and in snapshots `loss_fn`, `augment_pipe`, `dataset_kwargs`) whose modules
are `torch_utils.persistence` objects: each carries its class's whole source code as
text, its constructor arguments (`_init_kwargs`) and its state (parameters and buffers
as torch tensors). `pickle.load` would execute that source. `load_network` never does:

* its unpickler resolves only the globals this format needs: persistence's
  `_reconstruct_persistent_obj` (read as a record: class name, source text, state),
  the tensor rebuilders and storage classes of `edmjax.torchio.TENSOR_GLOBALS`
  (tensors become NumPy arrays, parsed without torch), `collections.OrderedDict`,
  `builtins.set`/`frozenset`, torch's container modules (`torch.nn.modules.*`, read
  as inert records whose code never runs), NumPy scalars of numeric dtypes, and
  `dnnlib.util.EasyDict` (read as a dict);
* any other global (a `__reduce__` calling `os.system`, `builtins.eval`, an import)
  is replaced while parsing by an inert placeholder that runs nothing, and the load
  then fails with a `RefusedPickleError` naming every such global;
* the embedded source is kept as text (`PretrainedNetwork.source`) and never run;
  the network is rebuilt from edmjax's own `SongUNet` / `DhariwalUNet` with the
  pickled constructor arguments, and the weights are mapped by
  `edmjax.nn.state_dict` (strict: every tensor used, every variable filled).

Preconditionings (NVlabs' `training/networks.py`; all evaluated in float32, as
NVlabs' `forward` does, D returned in the input's dtype):

=============  =======  ==============================  ============================
NVlabs class   precond  sigma_min / sigma_max           round_sigma
=============  =======  ==============================  ============================
EDMPrecond     'edm'    as constructed (0 and inf)      identity
VPPrecond      'vp'     σ(ε_t), σ(1) of the VP schedule identity
VEPrecond      've'     as constructed (0.02 and 100)   identity
iDDPMPrecond   'iddpm'  u_{M-1}, u_0 of its table u     nearest level of u
=============  =======  ==============================  ============================

The values are the ones stored in the
pickle: NVlabs computes VP's range and iDDPM's table `u` in float32, and those
float32 values are what its samplers clip and round to; iDDPM's c_noise is
M − 1 − argmin_j |σ − u_j| over the stored `u`, and its network's extra
(learned-variance) output channels are dropped. Class labels are one-hot
`(B, label_dim)` or integers `(B,)`; None is NVlabs' zeros. Images are NHWC.

Other pickles get a ValueError naming what was found: a StyleGAN network (`G`,
`D`, `G_ema`), a bare state dict (load it with `from_state_dict` and NVlabs'
constructor arguments), a persistence format version other than 6, or an unknown
structure.

NVlabs/edm2's `Precond` (the magnitude-preserving UNet with its uncertainty head)
loads too: `class_name` 'Precond', `arch` 'EDM2UNet', preconditioning 'edm2'
(`sigma_data` as pickled), σ range [0, ∞) as NVlabs' (its samplers bring their own);
a latent-space network (edm2-img512-*) denoises latents, the VAE is not included.

The reverse: `save_state_dict(path, net)` writes a plain `torch.save` state dict
(keys `model.<NVlabs module path>.<tensor>`, plus `u` for iDDPM and the
`resample_filter` buffers; the mapping is `edmjax.nn.state_dict`'s) and returns the
constructor arguments, so that NVlabs users can run an edmjax network with their own
code::

    net = training.networks.EDMPrecond(**kwargs)      # kwargs returned by save_state_dict
    net.load_state_dict(torch.load('net.pt'))          # strict, weights_only

Example:
  >>> import jax, numpy as np
  >>> from edmjax import nn, pretrained
  >>> unet = nn.SongUNet(img_resolution=8, in_channels=1, out_channels=1,
  ...                    model_channels=8, channel_mult=(1, 2), num_blocks=1,
  ...                    attn_resolutions=())
  >>> shapes = nn.variable_shapes(unet).variables
  >>> variables = jax.tree_util.tree_map(lambda s: np.zeros(s.shape, s.dtype), shapes)
  >>> net = pretrained.from_flax(unet, variables, "VPPrecond")
  >>> net.precond, net.label_dim, net.sigma_min, net.sigma_max   # NVlabs' float32 values
  ('vp', 0, 0.0009765625, 152.16697692871094)
  >>> x = np.ones((2, 8, 8, 1), np.float32)
  >>> d = jax.jit(net.model)(x, np.full((2,), 2.0, np.float32))     # F = 0 here: D = x
  >>> float(d[0, 0, 0, 0])
  1.0
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import os
import pickle
import zipfile
from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np

from edmjax import nn as ednn
from edmjax.nn import edm2_unet
from edmjax import precond as precond_lib
from edmjax import schedules
from edmjax import torchio
from edmjax.model import Denoiser

__all__ = ["PretrainedNetwork", "RefusedPickleError", "PRECONDITIONINGS", "load_network",
           "from_state_dict", "from_flax", "save_state_dict"]

PRECONDITIONINGS = {"EDMPrecond": "edm", "VPPrecond": "vp", "VEPrecond": "ve",
                    "iDDPMPrecond": "iddpm"}
"""NVlabs/edm's preconditioning classes and edmjax's names for them."""

_ARCHS = {"SongUNet": ednn.SongUNet, "DhariwalUNet": ednn.DhariwalUNet}
_PERSISTENCE_VERSION = 6
EDM2_PRECOND = "Precond"   # NVlabs/edm2 training/networks_edm2.py
_EDM2_PRECOND_ARGS = ("img_resolution", "img_channels", "label_dim", "use_fp16", "sigma_data")

# NVlabs' constructor defaults of each preconditioning (training/networks.py).
_PRECOND_DEFAULTS = {
    "EDMPrecond": dict(use_fp16=False, sigma_min=0.0, sigma_max=float("inf"),
                       sigma_data=0.5, model_type="DhariwalUNet"),
    "VPPrecond": dict(use_fp16=False, beta_d=19.9, beta_min=0.1, M=1000, epsilon_t=1e-5,
                      model_type="SongUNet"),
    "VEPrecond": dict(use_fp16=False, sigma_min=0.02, sigma_max=100.0,
                      model_type="SongUNet"),
    "iDDPMPrecond": dict(use_fp16=False, C_1=0.001, C_2=0.008, M=1000,
                         model_type="DhariwalUNet"),
}


class RefusedPickleError(ValueError, pickle.UnpicklingError):
  """A pickle referenced globals that NVlabs' network format never needs (nothing ran)."""


# ----------------------------------------------------------------------------- unpickling


@dataclasses.dataclass
class _Persistent:
  """A `torch_utils.persistence` object, read as data: its source is never executed."""
  class_name: str
  module_src: str
  state: Any
  version: Any
  type: Any


def _reconstruct_persistent_obj(meta):
  if not isinstance(meta, dict):
    raise pickle.UnpicklingError(
        f"torch_utils.persistence metadata is a {type(meta).__name__}, not a dict.")
  return _Persistent(class_name=str(meta.get("class_name")),
                     module_src=meta.get("module_src") if isinstance(
                         meta.get("module_src"), str) else "",
                     state=meta.get("state"), version=meta.get("version"),
                     type=meta.get("type"))


class _TorchModule:
  """An inert stand-in for a torch.nn container module; keeps its pickled __dict__."""
  torch_name = "torch.nn.Module"

  def __setstate__(self, state):
    self.state = state


@functools.lru_cache(maxsize=None)
def _torch_module_type(module: str, name: str):
  return type(name, (_TorchModule,), {"torch_name": f"{module}.{name}"})


class _EasyDict(dict):
  """`dnnlib.util.EasyDict` read as a plain dict."""


class _Refused:
  """Placeholder for a refused global: constructing or calling it runs nothing."""
  global_name = "?"

  def __new__(cls, *args, **kwargs):
    del args, kwargs
    return object.__new__(cls)

  def __init__(self, *args, **kwargs):
    del args, kwargs

  def __setstate__(self, state):
    del state


_NUMERIC_KINDS = "biufc?"


def _numpy_dtype(spec, align=False, copy=False):
  del align, copy
  if not isinstance(spec, str):
    raise pickle.UnpicklingError(f"numpy.dtype({spec!r}) is not a numeric dtype name.")
  dt = np.dtype(spec, False, True)  # a copy: the pickle's BUILD must not touch numpy's own
  if dt.kind not in _NUMERIC_KINDS or dt.hasobject:
    raise pickle.UnpicklingError(f"numpy dtype {spec!r} is not numeric; refused.")
  return dt


def _numpy_scalar(dtype, data=None):
  if not isinstance(dtype, np.dtype) or dtype.kind not in _NUMERIC_KINDS or dtype.hasobject:
    raise pickle.UnpicklingError(f"numpy scalar of dtype {dtype!r} refused.")
  if not isinstance(data, (bytes, bytearray)) or len(data) != dtype.itemsize:
    raise pickle.UnpicklingError("malformed numpy scalar.")
  return np.frombuffer(bytes(data), dtype=dtype, count=1)[0].item()


def _reconstructor(cls, base, state):
  if not (isinstance(cls, type) and issubclass(cls, (_TorchModule, _Refused))) or (
      base is not object):
    raise pickle.UnpicklingError(f"copyreg._reconstructor({cls!r}, {base!r}) refused.")
  del state
  return cls.__new__(cls)


_NETWORK_GLOBALS = {
    **torchio.TENSOR_GLOBALS,
    ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "object"): object,
    ("copyreg", "_reconstructor"): _reconstructor,
    ("numpy", "dtype"): _numpy_dtype,
    ("numpy.core.multiarray", "scalar"): _numpy_scalar,
    ("numpy._core.multiarray", "scalar"): _numpy_scalar,
    ("dnnlib.util", "EasyDict"): _EasyDict,
}


class _NetworkUnpickler(pickle.Unpickler):
  """Resolves `_NETWORK_GLOBALS` and torch container modules; records everything else."""

  def __init__(self, file):
    super().__init__(file)
    self.refused: list[str] = []

  def find_class(self, module, name):
    if (module, name) in _NETWORK_GLOBALS:
      return _NETWORK_GLOBALS[module, name]
    if module.startswith("torch.nn.modules.") and name[:1].isupper() and name.isidentifier():
      return _torch_module_type(module, name)
    full = f"{module}.{name}"
    if full not in self.refused:
      self.refused.append(full)
    return type(f"Refused_{len(self.refused)}", (_Refused,), {"global_name": full})

  def persistent_load(self, pid):
    raise pickle.UnpicklingError(f"unexpected persistent id {pid!r} in a network pickle.")


def _refused_error(path, refused, cause=None):
  shown = ", ".join(refused[:6]) + (f" and {len(refused) - 6} more" if len(refused) > 6 else "")
  return RefusedPickleError(
      f"refusing to load {os.fspath(path)!r}: it references the global(s) {shown}, "
      "which an NVlabs/edm network pickle never needs. Nothing from the file was "
      "executed." + (f" (Parsing then stopped: {cause})" if cause else ""))


def _read_pickle(path):
  with open(path, "rb") as f:
    up = _NetworkUnpickler(f)
    try:
      obj = up.load()
    except Exception as e:  # pylint: disable=broad-except
      if isinstance(e, torchio.RefusedGlobalError):  # inside a pickled tensor's storage
        up.refused.append(e.global_name)
        e = None
      if up.refused:
        raise _refused_error(path, up.refused, e) from None
      raise ValueError(f"{os.fspath(path)!r} is not a readable network pickle: "
                       f"{type(e).__name__}: {e}") from None
  if up.refused:
    raise _refused_error(path, up.refused)
  return obj


# ----------------------------------------------------------------------------- structure


def _module_dict(obj, where):
  """The pickled `__dict__` of a torch module (persistent or container)."""
  st = getattr(obj, "state", None) if isinstance(obj, (_Persistent, _TorchModule)) else None
  if not isinstance(st, dict):
    raise ValueError(f"{where} is not a torch module with a state dict "
                     f"(found {type(obj).__name__}).")
  return st


def _module_state_dict(obj, prefix="", out=None, where="ema"):
  """NVlabs' `module.state_dict()` rebuilt from the pickled module tree."""
  out = collections.OrderedDict() if out is None else out
  st = _module_dict(obj, where)
  skip = st.get("_non_persistent_buffers_set") or set()
  for group in ("_parameters", "_buffers"):
    for name, t in (st.get(group) or {}).items():
      if t is None or (group == "_buffers" and name in skip):
        continue
      if not isinstance(t, np.ndarray):
        raise ValueError(f"{where}.{name} is a {type(t).__name__}, not a tensor.")
      out[prefix + name] = t
  for name, m in (st.get("_modules") or {}).items():
    if m is not None:
      _module_state_dict(m, f"{prefix}{name}.", out, f"{where}.{name}")
  return out


def _plain(v):
  """Constructor arguments as hashable Python values (lists -> tuples)."""
  if isinstance(v, (list, tuple)):
    return tuple(_plain(x) for x in v)
  if isinstance(v, np.generic):
    return v.item()
  return v


def _describe(obj) -> str:
  if isinstance(obj, _Persistent):
    return f"a torch_utils.persistence object of class {obj.class_name!r}"
  if isinstance(obj, _TorchModule):
    return f"a {obj.torch_name}"
  if isinstance(obj, dict):
    keys = list(obj)[:8]
    return f"a {type(obj).__name__} with keys {keys}{' ...' if len(obj) > 8 else ''}"
  if isinstance(obj, np.ndarray):
    return f"a tensor of shape {obj.shape}"
  return f"a {type(obj).__name__}"


def _is_state_dict(obj) -> bool:
  return isinstance(obj, dict) and bool(obj) and all(
      isinstance(v, np.ndarray) for v in obj.values())


def _find_network(obj, path, key):
  """The preconditioned network inside a loaded pickle, or a ValueError saying what it is."""
  name = os.fspath(path)
  if _is_state_dict(obj):
    raise ValueError(
        f"{name!r} holds a bare state dict of {len(obj)} tensors (e.g. "
        f"{list(obj)[:3]}), without the network's configuration. Load it with "
        "edmjax.pretrained.from_state_dict(state_dict, 'EDMPrecond', **NVlabs' "
        "constructor arguments) (read the tensors with edmjax.torchio).")
  if isinstance(obj, dict):
    if key in obj:
      net = obj[key]
    elif {"G", "D", "G_ema"} & set(obj):
      g = obj.get("G_ema", obj.get("G"))
      raise ValueError(
          f"{name!r} is a StyleGAN-family pickle (keys {sorted(map(str, obj))}; G_ema "
          f"is {_describe(g)}), a GAN generator, not an NVlabs/edm diffusion network.")
    else:
      raise ValueError(f"{name!r} holds {_describe(obj)}; an NVlabs/edm network pickle "
                       f"is a dict with the network under {key!r}.")
  else:
    net = obj
  if not isinstance(net, _Persistent):
    raise ValueError(f"{name!r}: {key!r} is {_describe(net)}, not an NVlabs/edm "
                     "network (a torch_utils.persistence object).")
  if net.type != "class" or net.version != _PERSISTENCE_VERSION:
    raise ValueError(
        f"{name!r}: {key!r} is a torch_utils.persistence object of format "
        f"type={net.type!r}, version={net.version!r}; edmjax reads type='class', "
        f"version={_PERSISTENCE_VERSION} (NVlabs/edm's). A newer format is not supported.")
  if net.class_name not in PRECONDITIONINGS and net.class_name != EDM2_PRECOND:
    raise ValueError(
        f"{name!r}: {key!r} is {_describe(net)}; edmjax reads the NVlabs/edm "
        f"preconditionings {sorted(PRECONDITIONINGS)} and NVlabs/edm2's {EDM2_PRECOND!r}.")
  return net


# ----------------------------------------------------------------------------- the network


def _edm_scalings(sigma_data):
  return functools.partial(precond_lib.edm_scalings, sigma_data=sigma_data)


def _iddpm_scalings(u: np.ndarray, M: int):
  """iDDPMPrecond's scalings over its stored table u (float32), as NVlabs computes them."""

  def scalings(sigma):
    levels = jnp.reshape(jnp.asarray(u, sigma.dtype), (1,) * sigma.ndim + (-1,))
    index = jnp.argmin(jnp.abs(sigma[..., None] - levels), axis=-1)
    one = jnp.ones_like(sigma)
    return precond_lib.Scalings(c_skip=one, c_out=-sigma, c_in=1 / jnp.sqrt(sigma**2 + 1),
                                c_noise=(M - 1 - index).astype(sigma.dtype))

  return scalings


def _round_to_table(u: np.ndarray):
  """NVlabs' iDDPM `round_sigma`: the nearest stored level (float32 value), NumPy or JAX."""
  u64 = np.asarray(u, np.float64)

  def round_sigma(sigma):
    if isinstance(sigma, (jax.Array, jax.core.Tracer)):
      levels = jnp.asarray(u64, sigma.dtype)
      shaped = jnp.reshape(levels, (1,) * sigma.ndim + (-1,))
      return levels[jnp.argmin(jnp.abs(sigma[..., None] - shaped), axis=-1)]
    s = np.asarray(sigma, np.float64)
    return u64[np.argmin(np.abs(s[..., None] - u64), axis=-1)]

  return round_sigma


@dataclasses.dataclass(frozen=True, eq=False)
class PretrainedNetwork:
  """An NVlabs/edm preconditioned network as edmjax values.

  Sampling: `net.model` is the `edmjax.model.Denoiser` (with `sigma_min`,
  `sigma_max`, `round_sigma`, `label_dim`) to pass to `edmjax.sampling.sample`;
  `net.denoise(x, sigma, class_labels=None)` evaluates it (NHWC). Under `jax.jit`,
  pass the variables as an argument rather than closing over them:
  `jax.jit(lambda v, z: sampling.sample(net.make_model(v), z, spec=spec))(net.variables, z)`.

  Attributes:
    class_name: NVlabs' preconditioning class ('EDMPrecond', 'VPPrecond',
      'VEPrecond', 'iDDPMPrecond'; NVlabs/edm2's 'Precond').
    precond_kwargs: its constructor arguments other than the network's
      (`use_fp16`, and `sigma_data` / `beta_d, beta_min, M, epsilon_t` /
      `sigma_min, sigma_max` / `C_1, C_2, M`).
    arch: 'SongUNet' or 'DhariwalUNet' ('EDM2UNet' under 'Precond').
    arch_kwargs: the network's NVlabs constructor arguments (edmjax's are the same).
    network: the edmjax flax module built from them.
    variables: `{'params': ..., ('buffers': ...)}`, float32 NumPy arrays.
    img_resolution, img_channels, label_dim: NVlabs' interface attributes.
    sigma_min, sigma_max: the noise range the network supports (NVlabs'
      `net.sigma_min`, `net.sigma_max`, as stored).
    sigma_levels: iDDPM's table u (M + 1 float32 values, decreasing to 0), else None.
    source: the embedded source text of the preconditioning's module ('' when not
      loaded from a pickle); kept for reading, never executed.
  """
  class_name: str
  precond_kwargs: Mapping[str, Any]
  arch: str
  arch_kwargs: Mapping[str, Any]
  network: Any
  variables: Any
  img_resolution: int
  img_channels: int
  label_dim: int
  sigma_min: float
  sigma_max: float
  sigma_levels: np.ndarray | None = None
  source: str = ""

  @property
  def precond(self) -> str:
    """edmjax's name of the preconditioning: 'edm', 'vp', 've', 'iddpm' or 'edm2'."""
    return "edm2" if self.class_name == EDM2_PRECOND else PRECONDITIONINGS[self.class_name]

  def scalings(self) -> Callable:
    """σ ↦ `edmjax.precond.Scalings` of this network (NVlabs' formulas and constants)."""
    kw = self.precond_kwargs
    if self.class_name == "EDMPrecond":
      return _edm_scalings(kw["sigma_data"])
    if self.class_name == EDM2_PRECOND:
      return functools.partial(precond_lib.edm2_scalings, sigma_data=kw["sigma_data"])
    if self.class_name == "VPPrecond":
      return functools.partial(precond_lib.vp_scalings, beta_d=kw["beta_d"],
                               beta_min=kw["beta_min"], M=kw["M"])
    if self.class_name == "VEPrecond":
      return precond_lib.ve_scalings
    return _iddpm_scalings(self.sigma_levels, kw["M"])

  def make_model(self, variables=None, *, compute_dtype=None) -> Denoiser:
    """The `Denoiser` of this network with `variables` (default: the loaded ones).

    Args:
      variables: the network's variables (e.g. traced jit arguments); None uses
        `self.variables`.
      compute_dtype: the network's compute dtype (e.g. `jnp.bfloat16`); the
        preconditioning stays float32. None is float32 (NVlabs' `use_fp16` is
        recorded in `precond_kwargs` but, as NVlabs does off CUDA, not applied).
    """
    variables = self.variables if variables is None else variables
    network = self.network if compute_dtype is None else self.network.clone(
        dtype=compute_dtype)
    labelled = self.label_dim > 0

    def apply(x_in, c_noise, class_labels=None):
      return network.apply(variables, x_in, c_noise, class_labels)

    denoise = precond_lib.make_denoiser(apply, self.scalings())

    def fn(x, sigma, class_labels=None):
      x32 = jnp.asarray(x).astype(jnp.float32)
      sigma32 = jnp.asarray(sigma).astype(jnp.float32)
      d = denoise(x32, sigma32, class_labels) if labelled else denoise(x32, sigma32)
      return d.astype(jnp.asarray(x).dtype)

    round_sigma = None if self.sigma_levels is None else _round_to_table(self.sigma_levels)
    return Denoiser(fn, sigma_min=self.sigma_min, sigma_max=self.sigma_max,
                    round_sigma=round_sigma, label_dim=self.label_dim)

  @functools.cached_property
  def model(self) -> Denoiser:
    """The `Denoiser` with the loaded variables (on the default device)."""
    return self.make_model(jax.device_put(self.variables))

  def denoise(self, x, sigma, class_labels=None):
    """D(x; σ) in NHWC; `sigma` of shape (B,); labels one-hot or integers, or None."""
    return self.model(x, sigma, class_labels)

  @property
  def round_sigma(self):
    """NVlabs' `net.round_sigma` (None: the identity)."""
    return self.model.round_sigma

  @property
  def nvlabs_kwargs(self) -> dict:
    """Keyword arguments of `training.networks.<class_name>(...)` that rebuild this network."""
    arch = {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.arch_kwargs.items()
            if k not in ("img_resolution", "in_channels", "out_channels", "label_dim")}
    kw = dict(self.precond_kwargs)
    if self.class_name == EDM2_PRECOND:   # training.networks_edm2.Precond(**kwargs)
      return dict(img_resolution=self.img_resolution, img_channels=self.img_channels,
                  label_dim=self.label_dim, **kw, **arch)
    if self.class_name == "VPPrecond":
      kw.pop("sigma_min", None)
      kw.pop("sigma_max", None)
    return dict(img_resolution=self.img_resolution, img_channels=self.img_channels,
                label_dim=self.label_dim, **kw, model_type=self.arch, **arch)

  def state_dict(self) -> "collections.OrderedDict[str, np.ndarray]":
    """NVlabs' `net.state_dict()` of this network (float32 NumPy, PyTorch layout)."""
    if self.class_name == EDM2_PRECOND:
      return collections.OrderedDict(edm2_unet.state_dict_from_variables(self.variables))
    sd = ednn.state_dict_from_variables(self.network, self.variables, prefix="model.")
    if self.sigma_levels is not None:
      sd["u"] = np.asarray(self.sigma_levels, np.float32)
      sd.move_to_end("u", last=False)
    return sd


def _build_network(arch: str, arch_kwargs: Mapping[str, Any]):
  if arch not in _ARCHS:
    raise ValueError(f"model_type={arch!r} is not supported; allowed: {sorted(_ARCHS)}.")
  kw = {k: _plain(v) for k, v in arch_kwargs.items()}
  cls = _ARCHS[arch]
  fields = {f.name for f in dataclasses.fields(cls)} - {"parent", "name", "dtype",
                                                          "param_dtype"}
  unknown = sorted(set(kw) - fields)
  if unknown:
    raise ValueError(f"{arch} has no constructor argument(s) {unknown} in edmjax "
                     f"(NVlabs/edm's {arch} arguments are {sorted(fields)}).")
  try:
    return cls(**kw), kw
  except TypeError as e:
    raise ValueError(f"{arch}({kw}): {e}") from None


def _precond_kwargs(class_name: str, given: Mapping[str, Any]) -> dict:
  defaults = _PRECOND_DEFAULTS[class_name]
  kw = {k: _plain(given.get(k, v)) for k, v in defaults.items() if k != "model_type"}
  if class_name == "VPPrecond":
    # NVlabs: sigma_min = σ(ε_t), sigma_max = σ(1), evaluated in float32 (torch's
    # default dtype; exp correctly rounded here, which torch's float32 exp may miss by
    # an ulp). A pickle stores NVlabs' own values, which are used as they are.
    t = np.float32
    for name, tt in (("sigma_min", kw["epsilon_t"]), ("sigma_max", 1.0)):
      if name in given:
        kw[name] = float(given[name])
      else:
        v = t(0.5 * kw["beta_d"]) * t(tt)**2 + t(kw["beta_min"]) * t(tt)
        kw[name] = float(np.sqrt(t(np.exp(np.float64(v))) - t(1)))
  return kw


def _make(class_name, given, arch, arch_kwargs, variables=None, state_dict=None,
          source="") -> PretrainedNetwork:
  """A `PretrainedNetwork` from NVlabs' constructor arguments and weights (one of two)."""
  if class_name not in PRECONDITIONINGS:
    raise ValueError(f"class_name={class_name!r} is not supported; allowed: "
                     f"{sorted(PRECONDITIONINGS)}.")
  for k in ("img_resolution", "img_channels"):
    if k not in given:
      raise ValueError(f"{class_name} needs {k}.")
  img_resolution, img_channels = int(given["img_resolution"]), int(given["img_channels"])
  label_dim = int(given.get("label_dim", 0))
  network, arch_kwargs = _build_network(arch, arch_kwargs)
  out_channels = img_channels * (2 if class_name == "iDDPMPrecond" else 1)
  expect = dict(img_resolution=img_resolution, in_channels=img_channels,
                out_channels=out_channels, label_dim=label_dim)
  bad = {k: (getattr(network, k), v) for k, v in expect.items() if getattr(network, k) != v}
  if bad:
    raise ValueError(f"{class_name} over {arch}: the network's " + ", ".join(
        f"{k}={a!r}" for k, (a, _) in bad.items()) + " disagree with the "
        "preconditioning, which needs " + ", ".join(f"{k}={b!r}" for k, (_, b) in bad.items())
        + ".")
  kw = _precond_kwargs(class_name, given)
  shapes = ednn.variable_shapes(network)
  levels = None
  if class_name == "iDDPMPrecond":
    M = int(kw["M"])
    if state_dict is not None and "u" in state_dict:
      levels = np.asarray(state_dict["u"], np.float32)
    else:
      levels = schedules.iddpm_u_table(kw["C_1"], kw["C_2"], M).astype(np.float32)
    if levels.shape != (M + 1,):
      raise ValueError(f"iDDPMPrecond's table u has shape {levels.shape}; M={M} needs "
                       f"({M + 1},).")
  if state_dict is not None:
    extra = sorted(k for k in state_dict if not k.startswith("model.")
                   and not (k == "u" and levels is not None))
    if extra:
      raise ValueError(f"{class_name}'s state dict has unexpected tensors {extra[:8]}.")
    variables = ednn.variables_from_state_dict(network, state_dict, prefix="model.",
                                               shapes=shapes)
  else:
    ednn.state_dict_from_variables(network, variables, shapes=shapes)  # checks the tree
    variables = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float32), variables)
  if class_name == "iDDPMPrecond":  # NVlabs: float(u[M - 1]), float(u[0]), as stored
    sigma_min = float(given.get("sigma_min", levels[int(kw["M"]) - 1]))
    sigma_max = float(given.get("sigma_max", levels[0]))
  else:
    sigma_min, sigma_max = float(kw["sigma_min"]), float(kw["sigma_max"])
  return PretrainedNetwork(
      class_name=class_name, precond_kwargs=kw, arch=arch, arch_kwargs=arch_kwargs,
      network=network, variables=variables, img_resolution=img_resolution,
      img_channels=img_channels, label_dim=label_dim, sigma_min=sigma_min,
      sigma_max=sigma_max, sigma_levels=levels, source=source)


# ----------------------------------------------------------------------------- public entry


def load_network(path: str | os.PathLike, *, key: str = "ema") -> PretrainedNetwork:
  """Loads an NVlabs/edm or NVlabs/edm2 network pickle safely (nothing in it is executed).

  Args:
    path: a `.pkl` written by NVlabs/edm (`edm-*.pkl`, `baseline-*.pkl`,
      `network-snapshot-*.pkl`), or a pickle of the network itself.
    key: the entry of the pickled dict that holds the network (NVlabs: 'ema').

  Returns:
    A `PretrainedNetwork`; `.model` is the `edmjax.model.Denoiser` for
    `edmjax.sampling.sample`.

  Raises:
    RefusedPickleError: the pickle references a global the format never needs
      (named in the message); nothing was executed.
    ValueError: another kind of file (a StyleGAN pickle, a bare state dict, a newer
      persistence format, an unknown structure), or weights that
      do not fit the pickled configuration; the message says what was found.
    FileNotFoundError: no such file.
  """
  name = os.fspath(path)
  if not os.path.isfile(name):
    raise FileNotFoundError(f"network pickle {name!r} does not exist.")
  if zipfile.is_zipfile(name):
    try:
      obj = torchio.load_torch_checkpoint(name)
    except torchio.RefusedGlobalError as e:
      raise _refused_error(name, [e.global_name]) from None
    except (ValueError, pickle.UnpicklingError) as e:
      raise ValueError(f"{name!r} is a torch.save file, not an NVlabs/edm network "
                       f"pickle; it could not be read as tensors either ({e}).") from None
    if _is_state_dict(obj):
      _find_network(obj, name, key)  # raises the bare-state-dict error
    raise ValueError(f"{name!r} is a torch.save file holding {_describe(obj)}, not an "
                     "NVlabs/edm network pickle.")
  net = _find_network(_read_pickle(name), name, key)
  if net.class_name == EDM2_PRECOND:
    return _load_edm2(name, net, key)
  state = _module_dict(net, key)
  model = (state.get("_modules") or {}).get("model")
  if not isinstance(model, _Persistent) or model.class_name not in _ARCHS:
    raise ValueError(f"{name!r}: {net.class_name}.model is "
                     f"{_describe(model) if model is not None else 'missing'}; "
                     f"edmjax supports {sorted(_ARCHS)}.")
  model_state = _module_dict(model, f"{key}.model")
  if model_state.get("_init_args"):
    raise ValueError(f"{name!r}: {model.class_name} was constructed with positional "
                     "arguments; NVlabs/edm passes keyword arguments only.")
  arch_kwargs = dict(model_state.get("_init_kwargs") or {})
  attrs = {k: v for k, v in state.items() if not k.startswith("_") and k != "training"}
  missing = [k for k in ("img_resolution", "img_channels", "label_dim") if k not in attrs]
  if missing:
    raise ValueError(f"{name!r}: {net.class_name} lacks the attributes {missing}.")
  state_dict = _module_state_dict(net, where=key)
  return _make(net.class_name, attrs, model.class_name, arch_kwargs,
               state_dict=state_dict, source=net.module_src)


def _load_edm2(name, net, key) -> PretrainedNetwork:
  """NVlabs/edm2's `Precond(img_resolution, img_channels, label_dim, use_fp16,
  sigma_data, logvar_channels, **unet_kwargs)` as an EDM2UNet."""
  state = _module_dict(net, key)
  unet = (state.get("_modules") or {}).get("unet")
  if not isinstance(unet, _Persistent) or unet.class_name != "UNet":
    raise ValueError(f"{name!r}: {EDM2_PRECOND}.unet is "
                     f"{_describe(unet) if unet is not None else 'missing'}; NVlabs/edm2's "
                     "Precond holds a UNet.")
  if state.get("_init_args"):
    raise ValueError(f"{name!r}: {EDM2_PRECOND} was constructed with positional "
                     "arguments; NVlabs/edm2 passes keyword arguments only.")
  given = {k: _plain(v) for k, v in (state.get("_init_kwargs") or {}).items()}
  given.update({k: _plain(state[k]) for k in _EDM2_PRECOND_ARGS if k in state})
  missing = [k for k in ("img_resolution", "img_channels") if k not in given]
  if missing:
    raise ValueError(f"{name!r}: {EDM2_PRECOND} lacks the attributes {missing}.")
  precond_kwargs = dict(use_fp16=bool(given.get("use_fp16", True)),
                        sigma_data=float(given.get("sigma_data", 0.5)))
  arch_kwargs = {k: v for k, v in given.items() if k not in _EDM2_PRECOND_ARGS}
  fields = {f.name for f in dataclasses.fields(ednn.EDM2UNet)} - {
      "parent", "name", "dtype", "label_dropout", *_EDM2_PRECOND_ARGS}
  unknown = sorted(set(arch_kwargs) - fields)
  if unknown:
    raise ValueError(f"{name!r}: EDM2UNet has no constructor argument(s) {unknown} "
                     f"(NVlabs/edm2's UNet and Precond arguments are {sorted(fields)}).")
  img_resolution, img_channels = int(given["img_resolution"]), int(given["img_channels"])
  label_dim = int(given.get("label_dim", 0))
  network = ednn.EDM2UNet(img_resolution=img_resolution, img_channels=img_channels,
                          label_dim=label_dim, **arch_kwargs)
  variables = edm2_unet.variables_from_state_dict(_module_state_dict(net, where=key))
  f32 = jnp.float32
  template = jax.eval_shape(
      network.init, jax.random.key(0),
      jax.ShapeDtypeStruct((1, img_resolution, img_resolution, img_channels), f32),
      jax.ShapeDtypeStruct((1,), f32),
      jax.ShapeDtypeStruct((1, label_dim), f32) if label_dim else None)
  want = {jax.tree_util.keystr(p): tuple(v.shape)
          for p, v in jax.tree_util.tree_flatten_with_path(template)[0]}
  got = {jax.tree_util.keystr(p): tuple(v.shape)
         for p, v in jax.tree_util.tree_flatten_with_path(variables)[0]}
  if want != got:
    diff = sorted(k for k in set(want) | set(got) if want.get(k) != got.get(k))
    raise ValueError(f"{name!r}: the pickled weights do not fit EDM2UNet({arch_kwargs}): "
                     + ", ".join(f"{k} {got.get(k)} (expected {want.get(k)})"
                                 for k in diff[:6]) + ".")
  return PretrainedNetwork(
      class_name=EDM2_PRECOND, precond_kwargs=precond_kwargs, arch="EDM2UNet",
      arch_kwargs=arch_kwargs, network=network, variables=variables,
      img_resolution=img_resolution, img_channels=img_channels, label_dim=label_dim,
      sigma_min=0.0, sigma_max=float("inf"), source=net.module_src)


def from_state_dict(state_dict: Mapping[str, Any], class_name: str = "EDMPrecond",
                    **kwargs) -> PretrainedNetwork:
  """A network from an NVlabs state dict and NVlabs' constructor arguments.

  Args:
    state_dict: `net.state_dict()` of an NVlabs preconditioning (keys `model.*`,
      and `u` for iDDPM), e.g. read with `edmjax.torchio.load_torch_state_dict`.
    class_name: 'EDMPrecond', 'VPPrecond', 'VEPrecond' or 'iDDPMPrecond'.
    **kwargs: the arguments of `training.networks.<class_name>(...)`:
      `img_resolution`, `img_channels`, `label_dim`, the preconditioning's options,
      `model_type` and the network's arguments (`embedding_type`, ...).

  VP's range is computed as NVlabs does (float32); iDDPM's table is the state
  dict's `u` when present.
  """
  if class_name not in PRECONDITIONINGS:
    raise ValueError(f"class_name={class_name!r} is not supported; allowed: "
                     f"{sorted(PRECONDITIONINGS)}.")
  precond_keys = set(_PRECOND_DEFAULTS[class_name]) | {
      "img_resolution", "img_channels", "label_dim", "sigma_min", "sigma_max"}
  given = {k: v for k, v in kwargs.items() if k in precond_keys}
  arch = given.pop("model_type", _PRECOND_DEFAULTS[class_name]["model_type"])
  arch_kwargs = {k: v for k, v in kwargs.items() if k not in precond_keys}
  arch_kwargs.update(
      img_resolution=given.get("img_resolution"), in_channels=given.get("img_channels"),
      out_channels=(given.get("img_channels") or 0) * (
          2 if class_name == "iDDPMPrecond" else 1),
      label_dim=given.get("label_dim", 0))
  return _make(class_name, given, arch, arch_kwargs,
               state_dict={k: np.asarray(v) for k, v in state_dict.items()})


def from_flax(network, variables, class_name: str = "EDMPrecond",
              **precond_kwargs) -> PretrainedNetwork:
  """Wraps an edmjax `SongUNet` / `DhariwalUNet` and its variables as an NVlabs network.

  Args:
    network: the flax module (its attributes are NVlabs' constructor arguments).
    variables: its variables (`{'params': ..., ('buffers': ...)}`).
    class_name: the preconditioning it was trained with ('EDMPrecond', ...).
    **precond_kwargs: that preconditioning's options (e.g. `sigma_data=0.5`).
  """
  arch = type(network).__name__
  if arch not in _ARCHS:
    raise ValueError(f"network must be an edmjax SongUNet or DhariwalUNet, got {arch}.")
  fields = [f.name for f in dataclasses.fields(network)
            if f.name not in ("parent", "name", "dtype", "param_dtype")]
  arch_kwargs = {f: getattr(network, f) for f in fields}
  out = network.out_channels
  img_channels = out // 2 if class_name == "iDDPMPrecond" else out
  given = dict(precond_kwargs, img_resolution=network.img_resolution,
               img_channels=img_channels, label_dim=network.label_dim)
  return _make(class_name, given, arch, arch_kwargs, variables=variables)


def save_state_dict(path: str | os.PathLike, net: PretrainedNetwork) -> dict:
  """Writes `net.state_dict()` as a `torch.save` file; returns `net.nvlabs_kwargs`.

  NVlabs users load it with their own code, `torch.load` needing no pickled code::

      net = training.networks.<class_name>(**kwargs)
      net.load_state_dict(torch.load(path))
  """
  torchio.save_torch_state_dict(path, net.state_dict())
  return net.nvlabs_kwargs
