"""edmjax.torchio: torch files read and written without torch.

The torch-free tests write files with `save_torch_state_dict` and read them back; the
tests that need torch (files torch wrote, files torch reads) skip without it.
"""

import collections
import io
import pickle
import struct

import numpy as np
import pytest

from edmjax import torchio


def _arrays():
  rng = np.random.default_rng(0)
  return collections.OrderedDict(
      conv=rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
      transposed=rng.standard_normal((5, 6)).T,  # non-contiguous float64
      scalar=np.array(3.25),  # 0-d
      f16=rng.standard_normal(3).astype(np.float16),
      ints=np.arange(6, dtype=np.int64).reshape(2, 3)[:, 1:],
      flags=np.array([True, False]),
      empty=np.zeros((0, 2), np.float32))


def test_state_dict_round_trip_without_torch(tmp_path):
  sd = _arrays()
  torchio.save_torch_state_dict(tmp_path / "sd.pt", sd)
  got = torchio.load_torch_state_dict(tmp_path / "sd.pt")
  assert list(got) == list(sd)
  for k, v in sd.items():
    assert got[k].dtype == v.dtype and got[k].shape == v.shape, k
    np.testing.assert_array_equal(got[k], v, err_msg=k)
  with pytest.raises(ValueError, match=r"state_dict\['bad'\] has dtype complex128"):
    torchio.save_torch_state_dict(tmp_path / "x.pt", {"bad": np.zeros(2, np.complex128)})


def test_legacy_stream_of_one_storage():
  # torch.save(storage, _use_new_zipfile_serialization=False), written by hand.
  a = np.arange(5, dtype=np.float32)
  pid_pickle = (b"\x80\x02(X\x07\x00\x00\x00storageq\x00ctorch\nFloatStorage\nq\x01"
                b"X\x01\x00\x00\x000q\x02X\x03\x00\x00\x00cpuq\x03K\x05Ntq\x04Q.")
  stream = b"".join([pickle.dumps(0x1950a86a20f9469cfc6c, protocol=2),
                     pickle.dumps(1001, protocol=2),
                     pickle.dumps(dict(protocol_version=1001, little_endian=True), protocol=2),
                     pid_pickle, pickle.dumps(["0"], protocol=2), struct.pack("<q", 5),
                     a.tobytes()])
  np.testing.assert_array_equal(torchio.read_legacy(io.BytesIO(stream)), a)
  with pytest.raises(ValueError, match="truncated"):
    torchio.read_legacy(io.BytesIO(stream[:-4]))
  with pytest.raises(ValueError, match="bad magic number"):
    torchio.read_legacy(io.BytesIO(pickle.dumps(12345)))


def test_refuses_globals_other_than_tensors(tmp_path):
  import zipfile  # pylint: disable=import-outside-toplevel
  path = tmp_path / "evil.pt"
  with zipfile.ZipFile(path, "w") as zf:
    zf.writestr("evil/data.pkl", b"\x80\x02cposix\nsystem\nX\x04\x00\x00\x00trueq\x00\x85R.")
  with pytest.raises(pickle.UnpicklingError, match="refusing to load global posix.system"):
    torchio.load_torch_checkpoint(path)


torch_needed = pytest.mark.skipif(
    not __import__("importlib").util.find_spec("torch"),
    reason="torch is not installed: it writes and reads the reference files")


@torch_needed
@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_reads_files_torch_wrote_bit_exactly(tmp_path, zip_format):
  import torch  # pylint: disable=import-outside-toplevel
  g = torch.Generator().manual_seed(0)
  sd = collections.OrderedDict(
      conv=torch.randn(4, 3, 3, 3, generator=g),
      transposed=torch.randn(5, 6, generator=g).t(),  # non-contiguous strides
      offset_view=torch.randn(10, generator=g)[3:7],  # storage offset
      f64=torch.tensor(3.25, dtype=torch.float64),  # 0-d
      f16=torch.randn(3, generator=g).half(),
      ints=torch.arange(6).view(2, 3)[:, 1:],
      param=torch.nn.Parameter(torch.randn(2, generator=g)),
      count=torch.tensor(7))
  path = tmp_path / "sd.pth"
  torch.save(sd, path, _use_new_zipfile_serialization=zip_format)
  got = torchio.load_torch_state_dict(path)
  assert list(got) == list(sd)
  for k, v in sd.items():
    want = v.detach().numpy()
    assert got[k].dtype == want.dtype and got[k].shape == want.shape, k
    np.testing.assert_array_equal(got[k], want, err_msg=k)


@torch_needed
def test_torch_reads_what_edmjax_wrote(tmp_path):
  import torch  # pylint: disable=import-outside-toplevel
  sd = _arrays()
  torchio.save_torch_state_dict(tmp_path / "sd.pt", sd)
  got = torch.load(tmp_path / "sd.pt", weights_only=True)
  assert list(got) == list(sd)
  for k, v in sd.items():
    np.testing.assert_array_equal(got[k].numpy(), v, err_msg=k)


@torch_needed
def test_refuses_arbitrary_globals_in_files_torch_wrote(tmp_path):
  import torch  # pylint: disable=import-outside-toplevel
  path = tmp_path / "evil.pth"
  torch.save({"x": torch.zeros(1), "f": collections.Counter()}, path)
  with pytest.raises(pickle.UnpicklingError, match="refusing to load global "
                     "collections.Counter"):
    torchio.load_torch_state_dict(path)
