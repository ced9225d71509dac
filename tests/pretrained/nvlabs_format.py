"""Writes network pickles in NVlabs/edm's format without torch (a test helper, NumPy only).

What `pickle.dump(dict(ema=net, ...))` of an NVlabs/edm network produces, opcode for
opcode where it matters to a reader:

* every module of `training/networks.py` is a `torch_utils.persistence` object:
  `_reconstruct_persistent_obj(dict(type='class', version=6, module_src=<its module's
  source text>, class_name=..., state=<the module's __dict__>))`;
* the `__dict__` holds torch's bookkeeping (`_parameters`, `_buffers`, `_modules`,
  hook dicts, `_non_persistent_buffers_set`, `training`), the persistence record of
  the constructor arguments (`_init_args`, `_init_kwargs`; NumPy scalars such as
  `np.sqrt(0.2)` among them) and the class's own attributes;
* the `enc` / `dec` containers are `torch.nn.ModuleDict`s (NEWOBJ + BUILD);
* a parameter is `torch._utils._rebuild_parameter(tensor, requires_grad, hooks)`, a
  tensor `torch._utils._rebuild_tensor_v2(storage, offset, size, stride,
  requires_grad, hooks)`, a storage `torch.storage._load_from_bytes(b)` with `b` a
  legacy `torch.save` stream of that storage.

Globals are written by name and never imported, so this module needs neither torch
nor NVlabs' code. It is also imported by `make_pickle_fixtures.py` (run with torch) to
generate the same random weights on both sides: `random_weights`.
"""

from __future__ import annotations

import collections
import io
import pickle
import struct

import numpy as np

LEGACY_MAGIC = 0x1950a86a20f9469cfc6c
_STORAGE = {np.dtype(np.float32): "FloatStorage", np.dtype(np.float64): "DoubleStorage",
            np.dtype(np.float16): "HalfStorage", np.dtype(np.int64): "LongStorage"}
_TORCH_BOOKKEEPING = ("_backward_hooks", "_backward_pre_hooks", "_forward_hooks",
                      "_forward_hooks_always_called", "_forward_hooks_with_kwargs",
                      "_forward_pre_hooks", "_forward_pre_hooks_with_kwargs",
                      "_state_dict_hooks", "_state_dict_pre_hooks",
                      "_load_state_dict_pre_hooks", "_load_state_dict_post_hooks")
BUFFER_NAMES = ("resample_filter", "freqs", "u")  # NVlabs' buffers; the rest are params


def random_weights(keys_and_shapes, seed: int) -> dict:
  """O(1)-scale float32 weights for every parameter, drawn in the given key order.

  Weights of rank >= 2 ~ N(0, 1/fan_in) (fan_in = prod(shape[1:]), PyTorch layout);
  GroupNorm scales (keys `...norm*.weight`) ~ 1 + N(0, 0.1²); other vectors (biases,
  NCSN++'s `freqs`) ~ N(0, 0.1²), freqs times 16 (its scale). Buffers other than
  `freqs` (`resample_filter`, `u`) are not drawn.
  """
  rng = np.random.default_rng(seed)
  out = {}
  for key, shape in keys_and_shapes:
    leaf = key.rsplit(".", 1)[-1]
    if leaf in ("resample_filter", "u"):
      continue
    shape = tuple(int(s) for s in shape)
    z = rng.standard_normal(shape)
    if len(shape) >= 2:
      w = z / np.sqrt(np.prod(shape[1:]))
    elif leaf == "freqs":
      w = 16 * z
    elif leaf == "weight" and "norm" in key.rsplit(".", 2)[-2]:
      w = 1 + 0.1 * z
    else:
      w = 0.1 * z
    out[key] = w.astype(np.float32)
  return out


class Global:
  """The global `module.name`, written by name."""

  def __init__(self, module, name):
    self.module, self.name = module, name

  def __call__(self, *args):
    raise TypeError("only a name")


class Call:
  """Pickled as `func(*args)` (REDUCE)."""

  def __init__(self, func, *args):
    self.func, self.args = func, args

  def __reduce__(self):
    return (self.func, self.args)


class NewObj:
  """Pickled as NEWOBJ of `cls` followed by BUILD(state), as protocol 2+ pickles an object."""

  def __init__(self, cls: Global, state):
    self.cls, self.state = cls, state


class EasyDict:
  """`dnnlib.util.EasyDict(items)`, pickled as NEWOBJ plus SETITEMS (a dict subclass)."""

  def __init__(self, **items):
    self.items = items


class _Storage:
  def __init__(self, array):
    self.array = array


class _Pickler(pickle._Pickler):  # pylint: disable=protected-access
  dispatch = dict(pickle._Pickler.dispatch)  # pylint: disable=protected-access

  def save_global_ref(self, obj):
    if self.proto >= 4:
      self.save(obj.module)
      self.save(obj.name)
      self.write(pickle.STACK_GLOBAL)
    else:
      self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())
    self.memoize(obj)

  def save_newobj(self, obj):
    self.save(obj.cls)
    self.save(())
    self.write(pickle.NEWOBJ)
    self.memoize(obj)
    self.save(obj.state)
    self.write(pickle.BUILD)

  def save_easydict(self, obj):
    self.save(Global("dnnlib.util", "EasyDict"))
    self.save(())
    self.write(pickle.NEWOBJ)
    self.memoize(obj)
    self.write(pickle.MARK)
    for k, v in obj.items.items():
      self.save(k)
      self.save(v)
    self.write(pickle.SETITEMS)

  dispatch[Global] = save_global_ref
  dispatch[NewObj] = save_newobj
  dispatch[EasyDict] = save_easydict

  def persistent_id(self, obj):
    if isinstance(obj, _Storage):
      return ("storage", Global("torch", _STORAGE[obj.array.dtype]), "0", "cpu",
              int(obj.array.size), None)
    return None


def dumps(obj, protocol=4) -> bytes:
  buf = io.BytesIO()
  _Pickler(buf, protocol=protocol).dump(obj)
  return buf.getvalue()


def legacy_storage_bytes(array: np.ndarray) -> bytes:
  """`torch.save(storage, _use_new_zipfile_serialization=False)` of a flat storage."""
  a = np.ascontiguousarray(array).reshape(-1)
  out = io.BytesIO()
  for obj in (LEGACY_MAGIC, 1001, dict(protocol_version=1001, little_endian=True,
                                       type_sizes=dict(short=2, int=4, long=4))):
    out.write(pickle.dumps(obj, protocol=2))
  out.write(dumps(_Storage(a), protocol=2))
  out.write(pickle.dumps(["0"], protocol=2))
  out.write(struct.pack("<q", a.size))
  out.write(a.astype(a.dtype.newbyteorder("<")).tobytes())
  return out.getvalue()


def tensor(array, parameter=False):
  """A torch tensor (or parameter) as NVlabs' pickle holds it."""
  a = np.asarray(array)
  stride = tuple(s // a.itemsize for s in a.strides) if a.size else (0,) * a.ndim
  storage = Call(Global("torch.storage", "_load_from_bytes"), legacy_storage_bytes(a))
  t = Call(Global("torch._utils", "_rebuild_tensor_v2"), storage, 0, tuple(a.shape),
           stride, False, collections.OrderedDict())
  if parameter:
    return Call(Global("torch._utils", "_rebuild_parameter"), t, False,
                collections.OrderedDict())
  return t


def module_state(params, buffers, modules, attrs=None, init_kwargs=None):
  """A torch module's pickled `__dict__`: torch's bookkeeping, its tensors and children,
  its attributes and (for a persistence object) its constructor arguments."""
  st = {k: collections.OrderedDict() for k in _TORCH_BOOKKEEPING}
  st.update(training=False, _parameters=params, _buffers=buffers, _modules=modules,
            _non_persistent_buffers_set=set(), _is_full_backward_hook=None)
  if init_kwargs is not None:
    st.update(_init_args=(), _init_kwargs=init_kwargs)
  st.update(attrs or {})
  return st


def persistent(class_name, state, module_src):
  """A `torch_utils.persistence` object of class `class_name`."""
  meta = dict(type="class", version=6, module_src=module_src, class_name=class_name,
              state=state)
  return Call(Global("torch_utils.persistence", "_reconstruct_persistent_obj"), meta)


def module_tree(state_dict, module_src, containers=("enc", "dec")):
  """(params, buffers, modules) of a module from its state dict (keys relative to it).

  Top-level children named in `containers` are `torch.nn.ModuleDict`s, the rest
  persistence objects (their class names do not matter to a reader).
  """
  params, buffers = collections.OrderedDict(), collections.OrderedDict()
  children = collections.OrderedDict()
  for key, value in state_dict.items():
    head, _, rest = key.partition(".")
    if rest:
      children.setdefault(head, collections.OrderedDict())[rest] = value
    elif head in BUFFER_NAMES:
      buffers[head] = tensor(value)
    else:
      params[head] = tensor(value, parameter=True)
  modules = collections.OrderedDict()
  for name, sub in children.items():
    p, b, m = module_tree(sub, module_src, containers=())
    if name in containers:
      modules[name] = NewObj(Global("torch.nn.modules.container", "ModuleDict"),
                             module_state(p, b, m))
    else:
      kwargs = {"init_weight": np.float64(np.sqrt(0.2))} if "weight" in sub else {}
      modules[name] = persistent("Module", module_state(p, b, m, init_kwargs=kwargs),
                                 module_src)
  return params, buffers, modules


def network_pickle(class_name, precond_attrs, arch, arch_kwargs, state_dict, module_src,
                   *, extra=None, protocol=4) -> bytes:
  """The bytes of `pickle.dump(dict(ema=<class_name over arch>, **extra))`.

  Args:
    class_name: 'EDMPrecond', ..., the preconditioning.
    precond_attrs: its attributes (`img_resolution`, ..., `sigma_min`, ...) and, under
      `'_init_kwargs'`, its constructor arguments.
    arch: 'SongUNet' or 'DhariwalUNet'; `arch_kwargs` its constructor arguments.
    state_dict: the preconditioning's state dict (`model.*`, and `u` for iDDPM).
    module_src: the source text every persistence object carries.
    extra: more entries of the top-level dict (e.g. `loss_fn`, `dataset_kwargs`).
  """
  model_sd = {k[len("model."):]: v for k, v in state_dict.items() if k.startswith("model.")}
  mp, mb, mm = module_tree(model_sd, module_src)
  model = persistent(arch, module_state(mp, mb, mm, init_kwargs=dict(arch_kwargs)),
                     module_src)
  attrs = dict(precond_attrs)
  init_kwargs = attrs.pop("_init_kwargs", {})
  buffers = collections.OrderedDict(
      (k, tensor(v)) for k, v in state_dict.items() if not k.startswith("model."))
  ema = persistent(class_name, module_state(
      collections.OrderedDict(), buffers, collections.OrderedDict(model=model), attrs,
      init_kwargs=init_kwargs), module_src)
  return dumps(dict(ema=ema, **(extra or {})), protocol=protocol)
