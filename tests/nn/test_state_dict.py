"""edmjax.nn.state_dict: the NVlabs key/layout mapping is one to one and strict.

(The mapping's numerical parity with NVlabs' networks is tested through the
preconditioned networks in tests/pretrained, against NVlabs' own outputs.)
"""

import jax
import numpy as np
import pytest

from edmjax.nn import (DhariwalUNet, SongUNet, state_dict_from_variables, variable_shapes,
                       variables_from_state_dict)

NCSNPP = SongUNet(img_resolution=8, in_channels=3, out_channels=3, model_channels=8,
                  channel_mult=(1, 2), num_blocks=1, attn_resolutions=(4,),
                  embedding_type="fourier", encoder_type="residual", decoder_type="skip",
                  channel_mult_noise=2, resample_filter=(1, 3, 3, 1), label_dim=4)


def _random(shapes, seed=0):
  rng = np.random.default_rng(seed)
  return jax.tree_util.tree_map(
      lambda s: rng.standard_normal(s.shape).astype(np.float32), shapes)


def test_round_trip_and_layouts():
  shapes = variable_shapes(NCSNPP)
  v = _random(shapes.variables)
  sd = state_dict_from_variables(NCSNPP, v, prefix="model.", shapes=shapes)
  # NVlabs layouts: Linear (out, in), Conv2d OIHW, the Fourier buffer unchanged.
  np.testing.assert_array_equal(sd["model.map_label.weight"], v["params"]["map_label"]["weight"].T)
  np.testing.assert_array_equal(sd["model.enc.8x8_conv.weight"],
                                v["params"]["enc"]["8x8_conv"]["weight"].transpose(3, 2, 0, 1))
  np.testing.assert_array_equal(sd["model.map_noise.freqs"], v["buffers"]["map_noise"]["freqs"])
  # Resampling convolutions (incl. the kernel-0 resamplers of the skip decoder).
  f = np.outer([1, 3, 3, 1], [1, 3, 3, 1]) / 64
  for k in ("model.enc.4x4_down.conv0.resample_filter", "model.dec.8x8_aux_up.resample_filter",
            "model.enc.4x4_aux_residual.resample_filter"):
    np.testing.assert_array_equal(sd[k], f[None, None].astype(np.float32))
  back = variables_from_state_dict(NCSNPP, sd, prefix="model.", shapes=shapes)
  jax.tree_util.tree_map(np.testing.assert_array_equal, back, v)
  n_vars = len(jax.tree_util.tree_leaves(v))
  assert len(sd) == n_vars + len(shapes.resample_filters)


def test_mismatches_are_named():
  net = DhariwalUNet(img_resolution=8, in_channels=3, out_channels=6, model_channels=16,
                     channel_mult=(1, 2), num_blocks=1, attn_resolutions=())
  shapes = variable_shapes(net)
  sd = state_dict_from_variables(net, _random(shapes.variables), shapes=shapes)
  bad = dict(sd, **{"enc.4x4_down.conv0.resample_filter": np.ones((1, 1, 2, 2), np.float32)})
  with pytest.raises(ValueError, match=r"enc.4x4_down.conv0.resample_filter is \[1.0, 1.0, "
                     r"1.0, 1.0\]; the configuration .* gives \[0.25, 0.25, 0.25, 0.25\]"):
    variables_from_state_dict(net, bad, shapes=shapes)
  partial = {k: v for k, v in sd.items() if k != "dec.8x8_up.skip.resample_filter"}
  with pytest.raises(ValueError, match=r"lacks resample_filter buffers dec.8x8_up.skip"):
    variables_from_state_dict(net, partial, shapes=shapes)
  # No resample_filter at all is accepted (they are derived from the configuration).
  bare = {k: v for k, v in sd.items() if not k.endswith("resample_filter")}
  variables_from_state_dict(net, bare, shapes=shapes)
  with pytest.raises(ValueError, match=r"variables do not match DhariwalUNet.*missing "
                     r"params.out_conv.bias|missing out_conv.bias"):
    v = _random(shapes.variables)
    del v["params"]["out_conv"]["bias"]
    state_dict_from_variables(net, v, shapes=shapes)
