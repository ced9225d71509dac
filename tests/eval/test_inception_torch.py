"""The Flax FID Inception-v3 equals torch-fidelity's FeatureExtractorInceptionV3.

torch and torch-fidelity are test-only references (never runtime dependencies):
  .venv/bin/pip install torch torch-fidelity
The network is built with random weights (no download): BatchNorm statistics are
calibrated on one batch so activations stay O(1) through all 94 convolutions, the
state_dict is saved with torch.save and read back by edmjax without torch.
"""

import importlib
import importlib.util
import sys
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="torch is needed only as a reference")
if importlib.util.find_spec("torch_fidelity") is None:
  pytest.skip("torch-fidelity is not installed (pip install torch-fidelity)",
              allow_module_level=True)

from edmjax.eval import inception  # noqa: E402


def _import_fe():
  """torch_fidelity.feature_extractor_inceptionv3, even when torchvision is broken.

  The package __init__ imports torchvision (for CLIP/VGG extractors); the Inception
  module itself needs only torch, so on an import failure the package is bypassed.
  """
  name = "torch_fidelity.feature_extractor_inceptionv3"
  try:
    return importlib.import_module(name)
  except Exception:  # e.g. a torchvision build that does not match torch
    for k in [k for k in sys.modules if k.startswith("torch_fidelity")]:
      del sys.modules[k]
    spec = importlib.util.find_spec("torch_fidelity")
    pkg = types.ModuleType("torch_fidelity")
    pkg.__path__ = list(spec.submodule_search_locations)
    sys.modules["torch_fidelity"] = pkg
    return importlib.import_module(name)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
  """(torch-fidelity network with random weights, path of its saved state_dict)."""
  fe = _import_fe()
  cls = fe.FeatureExtractorInceptionV3
  mp = pytest.MonkeyPatch()
  # Skip the weight download/load inside __init__; the weights are set below.
  mp.setattr(cls, "load_state_dict", lambda self, sd, strict=True: None)
  mp.setattr(fe, "load_state_dict_from_url", lambda *a, **k: {})
  try:
    net = cls("inception-v3-compat", ["2048", "logits"])
  finally:
    mp.undo()
  g = torch.Generator().manual_seed(0)
  with torch.no_grad():
    for m in net.modules():
      if isinstance(m, torch.nn.BatchNorm2d):
        m.weight.uniform_(0.5, 1.5, generator=g)
        m.bias.uniform_(-0.2, 0.2, generator=g)
        m.momentum = 1.0  # running stats := statistics of the calibration batch
    net.fc.bias.uniform_(-1, 1, generator=g)
    net.train()
    net(torch.randint(0, 256, (2, 3, 32, 32), generator=g, dtype=torch.uint8))
    net.eval()
  path = tmp_path_factory.mktemp("inception") / "random_inception.pth"
  torch.save(net.state_dict(), path)
  return net, path, g


def test_resize_equals_torch_fidelity_tf1_bilinear(reference):
  del reference
  from torch_fidelity.interpolate_compat_tensorflow import (  # pylint: disable=g-import-not-at-top
      interpolate_bilinear_2d_like_tensorflow1x)
  x = np.random.default_rng(0).uniform(0, 255, (2, 3, 37, 21)).astype(np.float32)
  want = interpolate_bilinear_2d_like_tensorflow1x(
      torch.from_numpy(x), size=(299, 299), align_corners=False).numpy()
  got = np.asarray(inception.resize_bilinear_tf1(x.transpose(0, 2, 3, 1), (299, 299)))
  np.testing.assert_allclose(got.transpose(0, 3, 1, 2), want, atol=1e-4)  # measured 0


def test_flax_inception_equals_torch_fidelity(reference):
  net, path, g = reference
  variables = inception.load_inception_params(path)
  # The network is jitted once (299×299 input); the resize runs eagerly per size.
  net_fn = jax.jit(lambda v, x: inception.FIDInceptionV3().apply(v, x, logits=True))
  for h, w in [(32, 32), (64, 48)]:
    x = torch.randint(0, 256, (2, 3, h, w), generator=g, dtype=torch.uint8)
    with torch.no_grad():
      want_feats, want_logits = (t.numpy() for t in net(x))
    prepared = inception.preprocess_inception(jnp.asarray(x.numpy().transpose(0, 2, 3, 1)))
    feats, logits = net_fn(variables, prepared)
    feats, logits = np.asarray(feats), np.asarray(logits)
    assert feats.shape == (x.shape[0], 2048)
    # float32 through 94 conv layers; measured max |diff| ~ 4e-4 for features of
    # mean magnitude 0.5-10 (relative ~1e-4), logits ~ 8e-5.
    scale = np.abs(want_feats).max()
    assert np.abs(feats - want_feats).max() <= 2e-3 * scale, (h, w)
    assert np.abs(logits - want_logits).max() <= 2e-3 * np.abs(want_logits).max()


def test_flax_inception_body_is_exact_in_float64(reference):
  """With float64 on both sides the two networks agree to round-off (1e-12).

  The body (after the resize) is fully convolutional; a 107×107 input exercises every
  layer (grids 53, 51, 25, 23, 11, 5, 2) at an eighth of the cost of 299×299.
  """
  net, path, g = reference
  variables = inception.load_inception_params(path)
  x = torch.randn(1, 3, 107, 107, generator=g, dtype=torch.float64)
  net64 = net.double()
  try:
    with torch.no_grad():
      h = x
      for name in ["Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "MaxPool_1",
                   "Conv2d_3b_1x1", "Conv2d_4a_3x3", "MaxPool_2", "Mixed_5b",
                   "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c",
                   "Mixed_6d", "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c"]:
        h = getattr(net64, name)(h)
      want = h.mean((2, 3)).numpy()
  finally:
    net.float()
  with jax.enable_x64(True):
    v64 = jax.tree_util.tree_map(lambda a: jnp.asarray(a, jnp.float64), variables)
    got = jax.jit(inception.FIDInceptionV3().apply)(
        v64, jnp.asarray(x.numpy().transpose(0, 2, 3, 1)))
  np.testing.assert_allclose(np.asarray(got), want, rtol=0,
                             atol=1e-12 * np.abs(want).max())  # measured 7e-15 rel
