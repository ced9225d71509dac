"""PyTorch tensors in and out of files, without importing torch (NumPy only).

Reading. Three encodings of tensors are understood:

* the zip format of `torch.save` (default since PyTorch 1.6): a zip archive with
  `<name>/data.pkl` (the pickled object graph) and one raw little-endian file per
  storage `<name>/data/<key>`;
* the legacy format (PyTorch < 1.6, `_use_new_zipfile_serialization=False`): a stream
  of pickles (magic number, protocol version, system info, object graph, storage keys)
  followed by the raw storages, each preceded by its int64 element count;
* tensors inside a *plain* pickle (`pickle.dump` of an object holding tensors, as
  NVlabs' network pickles are): each storage pickles itself as
  `torch.storage._load_from_bytes(b)`, where `b` is a legacy-format stream of that one
  storage (`read_legacy`), and each tensor as `torch._utils._rebuild_tensor_v2(storage,
  offset, size, stride, ...)`.

Object graphs are unpickled by a restricted `pickle.Unpickler` that resolves only the
globals a tensor needs (`TENSOR_GLOBALS`: `collections.OrderedDict`, the tensor and
parameter rebuilders, the typed storage classes such as `torch.FloatStorage`, and
`torch.storage._load_from_bytes`); anything else raises, so reading never executes
code from the file (`RefusedGlobalError` names the global). Tensors are rebuilt from (storage, offset, size, stride) with
`numpy.lib.stride_tricks.as_strided` and copied.

Writing. `save_torch_state_dict` writes a flat state dict of NumPy arrays in the zip
format of `torch.save`, which `torch.load(path)` (with the default `weights_only=True`)
reads back as an `OrderedDict` of tensors, ready for `module.load_state_dict`.

Example:
  >>> import os, tempfile, numpy as np
  >>> path = os.path.join(tempfile.mkdtemp(), "sd.pt")
  >>> save_torch_state_dict(path, {"w": np.arange(6, dtype=np.float32).reshape(2, 3)})
  >>> load_torch_state_dict(path)["w"].T
  array([[0., 3.],
         [1., 4.],
         [2., 5.]], dtype=float32)
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import zipfile
from typing import Any, BinaryIO, Mapping

import numpy as np

__all__ = ["TENSOR_GLOBALS", "RefusedGlobalError", "load_torch_checkpoint",
           "load_torch_state_dict", "read_legacy", "save_torch_state_dict"]

_STORAGE_DTYPES = {
    "DoubleStorage": np.float64,
    "FloatStorage": np.float32,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}
_STORAGE_OF_DTYPE = {np.dtype(v): k for k, v in _STORAGE_DTYPES.items()}
_LEGACY_MAGIC = 0x1950a86a20f9469cfc6c
_LEGACY_PROTOCOL = 1001


class _StorageType:
  """Stand-in for `torch.<Type>Storage`: only its element dtype matters."""

  def __init__(self, name: str):
    self.name = name
    self.dtype = np.dtype(_STORAGE_DTYPES[name])

  def __repr__(self):
    return f"torch.{self.name}"


class _StorageRef:
  """A legacy-format storage whose bytes follow the pickle (resolved afterwards)."""

  def __init__(self, key: str):
    self.key = key


class _LazyTensor:
  """A tensor on a `_StorageRef` (legacy format), materialised after the pickle."""

  def __init__(self, storage, offset, size, stride):
    self.storage, self.offset, self.size, self.stride = storage, offset, size, stride


def _as_strided(flat: np.ndarray, offset: int, size, stride) -> np.ndarray:
  size = tuple(int(s) for s in size)
  stride = tuple(int(s) for s in stride)
  offset = int(offset)
  if len(size) != len(stride) or offset < 0 or any(s < 0 for s in size + stride):
    raise ValueError(f"invalid tensor view (offset {offset}, size {size}, stride "
                     f"{stride}); corrupt file?")
  if not size:
    if offset >= flat.size:
      raise ValueError(f"scalar tensor at offset {offset} exceeds its storage of "
                       f"{flat.size} elements; corrupt file?")
    return np.array(flat[offset])
  n = 1 + sum((s - 1) * st for s, st in zip(size, stride)) if all(size) else 0
  if offset + n > flat.size:
    raise ValueError(f"tensor view (offset {offset}, size {size}, stride {stride}) "
                     f"exceeds its storage of {flat.size} elements; corrupt file?")
  view = np.lib.stride_tricks.as_strided(
      flat[offset:], shape=size, strides=[s * flat.itemsize for s in stride])
  return np.array(view)


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False,
                       backward_hooks=None, metadata=None):
  del requires_grad, backward_hooks, metadata
  if isinstance(storage, np.ndarray):
    return _as_strided(storage, storage_offset, size, stride)
  if isinstance(storage, _StorageRef):
    return _LazyTensor(storage, storage_offset, size, stride)
  raise pickle.UnpicklingError(
      f"a tensor's storage is a {type(storage).__name__}, not a torch storage.")


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
  del requires_grad, backward_hooks
  return data


def _rebuild_parameter_with_state(data, requires_grad, backward_hooks, state):
  del requires_grad, backward_hooks, state
  return data


def _load_from_bytes(b):
  """`torch.storage._load_from_bytes`: one storage in the legacy format."""
  if not isinstance(b, (bytes, bytearray)):
    raise pickle.UnpicklingError(
        f"torch.storage._load_from_bytes expects bytes, got {type(b).__name__}.")
  storage = read_legacy(io.BytesIO(b))
  if not isinstance(storage, np.ndarray):
    raise pickle.UnpicklingError("a pickled torch storage holds a "
                                 f"{type(storage).__name__}, not a storage.")
  return storage


TENSOR_GLOBALS: Mapping[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter_with_state,
    ("torch.storage", "_load_from_bytes"): _load_from_bytes,
    **{("torch", name): _StorageType(name) for name in _STORAGE_DTYPES},
}
"""The globals a pickled tensor needs, (module, name) -> the torch-free stand-in.

Tensors come back as `numpy.ndarray` (a contiguous copy); parameters as their data.
"""


class RefusedGlobalError(ValueError, pickle.UnpicklingError):
  """A pickle referenced a global that a tensor file never needs (nothing was run)."""

  def __init__(self, module: str, name: str):
    self.global_name = f"{module}.{name}"
    super().__init__(
        f"refusing to load global {self.global_name}: only tensors and containers of "
        "them (e.g. an OrderedDict state dict) can be read without torch.")


class _Unpickler(pickle.Unpickler):
  """Unpickler that resolves only `TENSOR_GLOBALS`."""

  def __init__(self, file, persistent_load_fn):
    super().__init__(file)
    self._persistent_load_fn = persistent_load_fn

  def find_class(self, module, name):
    if (module, name) in TENSOR_GLOBALS:
      return TENSOR_GLOBALS[module, name]
    if module == "torch" and name == "BFloat16Storage":
      raise ValueError("bfloat16 tensors are not supported by this reader; save the "
                       "state_dict in float32.")
    raise RefusedGlobalError(module, name)

  def persistent_load(self, pid):
    return self._persistent_load_fn(pid)


def _storage_pid(pid):
  if not (isinstance(pid, tuple) and len(pid) >= 3 and pid[0] == "storage"):
    raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}.")
  if not isinstance(pid[1], _StorageType):
    raise pickle.UnpicklingError(f"unsupported storage type {pid[1]!r}.")
  return pid[1], str(pid[2])


def _load_zip(path) -> Any:
  with zipfile.ZipFile(path) as zf:
    names = zf.namelist()
    pkl = [n for n in names if n.endswith("data.pkl")]
    if not pkl:
      raise ValueError(f"{os.fspath(path)!r} is a zip file without data.pkl; not a "
                       "PyTorch checkpoint.")
    prefix = pkl[0][:-len("data.pkl")]
    order = "<"
    if prefix + "byteorder" in names:
      order = "<" if zf.read(prefix + "byteorder").decode().strip() == "little" else ">"
    cache: dict[str, np.ndarray] = {}

    def persistent_load(pid):
      storage_type, key = _storage_pid(pid)
      if key not in cache:
        raw = zf.read(f"{prefix}data/{key}")
        cache[key] = np.frombuffer(raw, dtype=storage_type.dtype.newbyteorder(order))
      return cache[key]

    return _Unpickler(io.BytesIO(zf.read(pkl[0])), persistent_load).load()


def _materialise(obj, storages):
  if isinstance(obj, _LazyTensor):
    return _as_strided(storages[obj.storage.key], obj.offset, obj.size, obj.stride)
  if isinstance(obj, _StorageRef):
    return storages[obj.key]
  if isinstance(obj, dict):
    out = type(obj)() if isinstance(obj, collections.OrderedDict) else {}
    for k, v in obj.items():
      out[k] = _materialise(v, storages)
    return out
  if isinstance(obj, (list, tuple)):
    return type(obj)(_materialise(v, storages) for v in obj)
  return obj


def read_legacy(f: BinaryIO) -> Any:
  """Reads one object in the legacy `torch.save` format from an open binary stream.

  Returns the object with tensors and storages as `numpy.ndarray`.

  Raises:
    ValueError: the stream does not start with the legacy magic number.
    pickle.UnpicklingError: the object graph needs a global other than a tensor's.
  """
  try:
    magic = _Unpickler(f, _no_pid).load()  # restricted too: the bytes are untrusted
  except RefusedGlobalError:
    raise
  except Exception as e:  # pylint: disable=broad-except
    raise ValueError(f"not a legacy PyTorch stream ({e}).") from None
  if magic != _LEGACY_MAGIC:
    raise ValueError("neither a zip nor a legacy PyTorch file (bad magic number).")
  _Unpickler(f, _no_pid).load()  # protocol version
  _Unpickler(f, _no_pid).load()  # system info (endianness, type sizes)
  types: dict[str, _StorageType] = {}
  views: dict[str, tuple[str, int, int]] = {}

  def persistent_load(pid):
    storage_type, root_key = _storage_pid(pid)
    types[root_key] = storage_type
    view_metadata = pid[5] if len(pid) > 5 else None
    if view_metadata is not None:
      view_key, offset, view_size = view_metadata
      views[str(view_key)] = (root_key, int(offset), int(view_size))
      return _StorageRef(str(view_key))
    return _StorageRef(root_key)

  obj = _Unpickler(f, persistent_load).load()
  keys = _Unpickler(f, _no_pid).load()
  storages: dict[str, np.ndarray] = {}
  for key in keys:
    key = str(key)
    if key not in types:
      raise ValueError(f"legacy stream lists storage {key!r} that no tensor uses.")
    dtype = types[key].dtype.newbyteorder("<")
    (numel,) = struct.unpack("<q", f.read(8))
    raw = f.read(numel * dtype.itemsize)
    if numel < 0 or len(raw) != numel * dtype.itemsize:
      raise ValueError(f"legacy stream is truncated in storage {key!r}.")
    storages[key] = np.frombuffer(raw, dtype=dtype)
  for view_key, (root, offset, size) in views.items():
    storages[view_key] = storages[root][offset:offset + size]
  return _materialise(obj, storages)


def _no_pid(pid):
  raise pickle.UnpicklingError(f"unexpected persistent id {pid!r}.")


def load_torch_checkpoint(path: str | os.PathLike) -> Any:
  """Loads a `torch.save` file holding tensors (e.g. a state dict) as NumPy arrays.

  Args:
    path: a `.pth`/`.pt` file in the zip or the legacy PyTorch format.

  Returns:
    The saved object with every tensor replaced by a `numpy.ndarray` (same dtype,
    shape and values; a contiguous copy).

  Raises:
    ValueError / pickle.UnpicklingError: the file is not a plain tensor checkpoint.
  """
  if zipfile.is_zipfile(path):
    return _load_zip(path)
  with open(path, "rb") as f:
    try:
      return read_legacy(f)
    except ValueError as e:
      raise ValueError(f"{os.fspath(path)!r}: {e}") from None


def load_torch_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
  """`load_torch_checkpoint` for a flat `state_dict`: a dict of name -> ndarray.

  A checkpoint that wraps the state dict as `{'state_dict': ...}` is unwrapped.
  """
  obj = load_torch_checkpoint(path)
  if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
    obj = obj["state_dict"]
  if not isinstance(obj, dict):
    raise ValueError(f"{os.fspath(path)!r} holds a {type(obj).__name__}, not a "
                     "state_dict (a dict of tensors).")
  out = {}
  for k, v in obj.items():
    if isinstance(v, np.ndarray):
      out[str(k)] = v
  return out


# ----------------------------------------------------------------------------- writing


class _Global:
  """A reference to `module.name`, pickled as that global (never imported here)."""

  def __init__(self, module: str, name: str):
    self.module, self.name = module, name

  def __call__(self, *args):  # pickle requires reduce functions to be callable
    raise TypeError(f"{self.module}.{self.name} is only a name for pickling.")


class _Storage:
  """An array's storage, written as a persistent id and a file `data/<key>`."""

  def __init__(self, key: str, array: np.ndarray):
    self.key, self.array = key, array


class _Tensor:
  """An array pickled as torch pickles a CPU tensor in a `torch.save` zip file."""

  def __init__(self, storage: _Storage):
    self.storage = storage

  def __reduce__(self):
    a = self.storage.array
    stride = tuple(s // a.itemsize for s in a.strides) if a.size else (0,) * a.ndim
    return (_REBUILD_TENSOR, (self.storage, 0, a.shape, stride, False,
                              collections.OrderedDict()))


_REBUILD_TENSOR = _Global("torch._utils", "_rebuild_tensor_v2")
_ORDERED_DICT = _Global("collections", "OrderedDict")


class _ZipPickler(pickle._Pickler):  # pylint: disable=protected-access
  """Writes torch's `data.pkl`: globals by name, tensors' storages as persistent ids."""

  dispatch = dict(pickle._Pickler.dispatch)  # pylint: disable=protected-access

  def save_global_ref(self, obj):
    self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode())
    self.memoize(obj)

  dispatch[_Global] = save_global_ref

  def persistent_id(self, obj):
    if isinstance(obj, _Storage):
      name = _STORAGE_OF_DTYPE[obj.array.dtype]
      return ("storage", _Global("torch", name), obj.key, "cpu", int(obj.array.size))
    return None


class _OrderedDictOf:
  """An OrderedDict pickled as `collections.OrderedDict()` plus its items."""

  def __init__(self, items):
    self.items = items

  def __reduce__(self):
    return (_ORDERED_DICT, (), None, None, iter(self.items))


def save_torch_state_dict(path: str | os.PathLike,
                          state_dict: Mapping[str, np.ndarray]) -> None:
  """Writes `state_dict` (name -> array) as a `torch.save` zip file.

  `torch.load(path)` returns an `OrderedDict` of CPU tensors with the same names,
  dtypes, shapes and values (it needs only the globals `weights_only=True` allows).

  Raises:
    ValueError: a value that is not an array of a dtype torch has a storage for
      (float64/32/16, int64/32/16/8, uint8, bool), naming the key.
  """
  arrays = []
  for k, v in state_dict.items():
    a = np.asarray(v)
    if a.dtype.newbyteorder("=") not in _STORAGE_OF_DTYPE or a.dtype.hasobject:
      raise ValueError(f"state_dict[{k!r}] has dtype {a.dtype}; allowed are "
                       f"{sorted(str(d) for d in _STORAGE_OF_DTYPE)}.")
    arrays.append((str(k), a.astype(a.dtype.newbyteorder("<"), order="C")))  # keeps 0-d
  tensors = [(k, _Tensor(_Storage(str(i), a))) for i, (k, a) in enumerate(arrays)]
  buf = io.BytesIO()
  _ZipPickler(buf, protocol=2).dump(_OrderedDictOf(tensors))
  name = os.path.splitext(os.path.basename(os.fspath(path)))[0] or "archive"
  with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as zf:
    zf.writestr(f"{name}/data.pkl", buf.getvalue())
    zf.writestr(f"{name}/byteorder", "little")
    for i, (_, a) in enumerate(arrays):
      zf.writestr(f"{name}/data/{i}", a.tobytes())
    zf.writestr(f"{name}/version", "3\n")
