"""The torch-free checkpoint reader (edmjax.eval.torch_state) on files torch wrote."""

import collections
import pickle

import numpy as np
import pytest

from edmjax.eval import torch_state

torch = pytest.importorskip("torch", reason="torch writes the reference files")


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_reads_state_dict_tensors_bit_exactly(tmp_path, zip_format):
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
  got = torch_state.load_torch_state_dict(path)
  assert list(got) == list(sd)
  for k, v in sd.items():
    want = v.detach().numpy()
    assert got[k].dtype == want.dtype and got[k].shape == want.shape, k
    np.testing.assert_array_equal(got[k], want, err_msg=k)


def test_refuses_arbitrary_globals(tmp_path):
  path = tmp_path / "evil.pth"
  torch.save({"x": torch.zeros(1), "f": collections.Counter()}, path)
  with pytest.raises(pickle.UnpicklingError, match="refusing to load global "
                     "collections.Counter"):
    torch_state.load_torch_state_dict(path)
