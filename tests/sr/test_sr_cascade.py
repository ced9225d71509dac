"""Cascade: one call from a base generator through SR stages; shapes and conditioning."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from edmjax import oracle
from edmjax.sr import cascade as cascade_lib
from edmjax.sr import degrade
from edmjax.sr import inference
from edmjax.sr import model as model_lib


def _stage(scale, mode="headstart"):
  cfg = model_lib.SRConfig(degrade=degrade.DegradeConfig(scale=scale))

  def make(lr, key):
    u, _ = model_lib.condition(lr, cfg)
    return oracle.gaussian_denoiser(u, 0.3), u  # an ideal denoiser centred on u

  return cascade_lib.SRStage(make_denoiser=make, mode=mode, sigma_start=0.5, num_steps=2)


def test_cascade_output_shapes_and_consistency():
  base = lambda key: jnp.tanh(jax.random.normal(key, (2, 4, 4, 1)))  # noqa: E731
  levels = cascade_lib.cascade(base, [_stage(2), _stage(4, mode="full")], jax.random.key(0))
  assert [lv.shape for lv in levels] == [(2, 4, 4, 1), (2, 8, 8, 1), (2, 32, 32, 1)]
  # Each level stays close to its condition: its downsampling is near the level below.
  cons = degrade.lr_consistency(jnp.clip(levels[1], -1, 1), levels[0], 2)
  assert np.all(np.asarray(cons) > 10)


def test_cascade_needs_a_stage_and_modes_are_checked():
  with pytest.raises(ValueError, match="at least one SR stage"):
    cascade_lib.cascade(lambda k: jnp.zeros((1, 4, 4, 1)), [], jax.random.key(0))
  with pytest.raises(ValueError, match="mode='fast'"):
    cascade_lib.SRStage(make_denoiser=None, mode="fast")
  with pytest.raises(ValueError, match="sigma_start must be > 0, got 0.0"):
    cascade_lib.SRStage(make_denoiser=None, sigma_start=0.0)


def test_super_resolve_metrics_report_infinite_consistency_for_the_projection():
  hr = jax.random.uniform(jax.random.key(0), (1, 16, 16, 3), minval=-1, maxval=1)
  cfg = degrade.DegradeConfig(scale=4)
  lr = degrade.degrade_clean(hr, cfg)
  u = degrade.upsample(lr, 4)
  sr = inference.super_resolve(oracle.gaussian_denoiser(u, 0.3), u, jax.random.key(1),
                               mode="headstart", sigma_start=0.2, num_steps=1,
                               project_lr=lr, scale=4)
  m = inference.sr_metrics(sr, hr, lr, cfg)
  assert set(m) == {"psnr", "ssim", "consistency", "colour_error"}
  assert float(m["consistency"][0]) > 60 and float(jnp.max(m["colour_error"])) < 1e-3
