"""Reads PyTorch `state_dict` checkpoints into NumPy arrays, without importing torch.

Two on-disk formats are understood:

* the zip format of `torch.save` (default since PyTorch 1.6): a zip archive with
  `<name>/data.pkl` (the pickled object graph) and one raw little-endian file per
  storage `<name>/data/<key>`;
* the legacy format (PyTorch < 1.6, `_use_new_zipfile_serialization=False`): a stream
  of pickles (magic number, protocol version, system info, object graph, storage keys)
  followed by the raw storages, each preceded by its int64 element count.

The object graph is unpickled by a restricted `pickle.Unpickler` that resolves only
the few globals a state dict needs (`collections.OrderedDict`,
`torch._utils._rebuild_tensor_v2`, `torch._utils._rebuild_parameter`, the typed
storage classes such as `torch.FloatStorage`); anything else raises, so loading a
checkpoint never executes arbitrary code. Tensors are rebuilt from (storage, offset,
size, stride) with `numpy.lib.stride_tricks.as_strided` and copied.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import zipfile
from typing import Any

import numpy as np

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
_LEGACY_MAGIC = 0x1950a86a20f9469cfc6c


class _StorageType:
  """Stand-in for `torch.<Type>Storage`: only its element dtype matters."""

  def __init__(self, name: str):
    self.name = name
    self.dtype = np.dtype(_STORAGE_DTYPES[name])


class _LazyTensor:
  """A tensor whose storage bytes are read after the pickle (legacy format)."""

  def __init__(self, storage, offset, size, stride):
    self.storage, self.offset, self.size, self.stride = storage, offset, size, stride


def _as_strided(flat: np.ndarray, offset: int, size, stride) -> np.ndarray:
  size = tuple(int(s) for s in size)
  stride = tuple(int(s) for s in stride)
  if not size:
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
  return _LazyTensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None):
  del requires_grad, backward_hooks
  return data


class _Unpickler(pickle.Unpickler):
  """Unpickler that resolves only the globals of a plain tensor state dict."""

  def __init__(self, file, persistent_load_fn):
    super().__init__(file)
    self._persistent_load_fn = persistent_load_fn

  def find_class(self, module, name):
    if module == "collections" and name == "OrderedDict":
      return collections.OrderedDict
    if module == "torch._utils" and name == "_rebuild_tensor_v2":
      return _rebuild_tensor_v2
    if module == "torch._utils" and name == "_rebuild_parameter":
      return _rebuild_parameter
    if module == "torch" and name in _STORAGE_DTYPES:
      return _StorageType(name)
    if module == "torch" and name == "BFloat16Storage":
      raise ValueError("bfloat16 tensors are not supported by this reader; save the "
                       "state_dict in float32.")
    raise pickle.UnpicklingError(
        f"refusing to load global {module}.{name}: only tensor state dicts "
        "(OrderedDict of tensors) can be read without torch.")

  def persistent_load(self, pid):
    return self._persistent_load_fn(pid)


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
      if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
        raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}.")
      storage_type, key = pid[1], str(pid[2])
      if not isinstance(storage_type, _StorageType):
        raise pickle.UnpicklingError(f"unsupported storage type {storage_type!r}.")
      if key not in cache:
        raw = zf.read(f"{prefix}data/{key}")
        cache[key] = np.frombuffer(raw, dtype=storage_type.dtype.newbyteorder(order))
      return cache[key]

    return _Unpickler(io.BytesIO(zf.read(pkl[0])), persistent_load).load()


def _materialise(obj, storages):
  if isinstance(obj, _LazyTensor):
    return _as_strided(storages[obj.storage], obj.offset, obj.size, obj.stride)
  if isinstance(obj, dict):
    out = type(obj)() if isinstance(obj, collections.OrderedDict) else {}
    for k, v in obj.items():
      out[k] = _materialise(v, storages)
    return out
  if isinstance(obj, (list, tuple)):
    return type(obj)(_materialise(v, storages) for v in obj)
  return obj


def _load_legacy(path) -> Any:
  with open(path, "rb") as f:
    magic = pickle.load(f)
    if magic != _LEGACY_MAGIC:
      raise ValueError(f"{os.fspath(path)!r} is neither a zip nor a legacy PyTorch "
                       "checkpoint (bad magic number).")
    pickle.load(f)  # protocol version
    pickle.load(f)  # system info (endianness, type sizes)
    types: dict[str, _StorageType] = {}
    views: dict[str, tuple[str, int, int]] = {}

    def persistent_load(pid):
      if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
        raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}.")
      storage_type, root_key, _, _, view_metadata = pid[1:6]
      types[root_key] = storage_type
      if view_metadata is not None:
        view_key, offset, view_size = view_metadata
        views[view_key] = (root_key, int(offset), int(view_size))
        return view_key
      return root_key

    obj = _Unpickler(f, persistent_load).load()
    keys = pickle.load(f)
    storages: dict[str, np.ndarray] = {}
    for key in keys:
      dtype = types[key].dtype.newbyteorder("<")
      (numel,) = struct.unpack("<q", f.read(8))
      storages[key] = np.frombuffer(f.read(numel * dtype.itemsize), dtype=dtype)
    for view_key, (root, offset, size) in views.items():
      storages[view_key] = storages[root][offset:offset + size]
  return _materialise(obj, storages)


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
  return _load_legacy(path)


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


__all__ = ["load_torch_checkpoint", "load_torch_state_dict"]
