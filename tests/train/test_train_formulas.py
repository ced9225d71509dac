"""Closed forms of NVlabs/edm's training loop (lr ramp-up, EMA) and the config parser."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from edmjax.train import config as C
from edmjax.train import optim


def _nvlabs_lr(lr, cur_nimg, lr_rampup_kimg):
  # training_loop.py: optimizer_kwargs['lr'] * min(cur_nimg / max(lr_rampup_kimg * 1000, 1e-8), 1)
  return lr * min(cur_nimg / max(lr_rampup_kimg * 1000, 1e-8), 1)


def _nvlabs_ema_beta(batch_size, cur_nimg, ema_halflife_kimg, ema_rampup_ratio):
  ema_halflife_nimg = ema_halflife_kimg * 1000
  if ema_rampup_ratio is not None:
    ema_halflife_nimg = min(ema_halflife_nimg, cur_nimg * ema_rampup_ratio)
  return 0.5 ** (batch_size / max(ema_halflife_nimg, 1e-8))


@pytest.mark.parametrize("ratio", [0.05, None])
def test_lr_and_ema_match_nvlabs_closed_forms(ratio):
  cfg = C.OptimConfig(lr=10e-4, lr_rampup_kimg=2.0, ema_halflife_kimg=0.5,
                      ema_rampup_ratio=ratio)
  batch = 64
  for step in [0, 1, 2, 10, 31, 32, 100, 1000]:
    nimg = step * batch  # cur_nimg before the step
    np.testing.assert_allclose(float(optim.learning_rate(cfg, nimg)),
                               _nvlabs_lr(cfg.lr, nimg, cfg.lr_rampup_kimg), rtol=1e-6)
    np.testing.assert_allclose(
        float(optim.ema_beta(cfg, nimg, batch)),
        _nvlabs_ema_beta(batch, nimg, cfg.ema_halflife_kimg, ratio), rtol=1e-5, atol=1e-30)
  # The very first step has lr 0 and (with the ramp-up) beta 0: EMA = net, as NVlabs.
  assert float(optim.learning_rate(cfg, 0)) == 0.0
  if ratio is not None:
    assert float(optim.ema_beta(cfg, 0, batch)) == 0.0


def test_ema_update_is_torch_lerp_over_steps():
  """Several EMA steps equal p_net.lerp(p_ema, beta) iterated in float64."""
  cfg = C.OptimConfig(ema_halflife_kimg=0.1, ema_rampup_ratio=0.05)
  batch = 16
  rng = np.random.default_rng(0)
  ema = jnp.asarray(rng.normal(size=5), jnp.float32)
  ema_ref = np.asarray(ema, np.float64)
  for step in range(6):
    net = rng.normal(size=5)
    beta = optim.ema_beta(cfg, step * batch, batch)
    ema = optim.ema_update({"w": ema}, {"w": jnp.asarray(net, jnp.float32)}, beta)["w"]
    b = _nvlabs_ema_beta(batch, step * batch, cfg.ema_halflife_kimg, cfg.ema_rampup_ratio)
    ema_ref = net + b * (ema_ref - net)
  np.testing.assert_allclose(np.asarray(ema), ema_ref, rtol=1e-5, atol=1e-6)


def test_overrides_are_parsed_by_field_type():
  cfg = C.apply_overrides(C.TrainConfig(), [
      "net.model_channels=64", "net.channel_mult=1,2,2", "optim.lr=2e-4",
      "optim.ema_rampup_ratio=none", "data.cond=true", "total_steps=1e3",
      "loss.sigma_data=None", "net.dtype=bfloat16"])
  assert cfg.net.model_channels == 64 and cfg.net.channel_mult == (1, 2, 2)
  assert cfg.optim.lr == 2e-4 and cfg.optim.ema_rampup_ratio is None
  assert cfg.data.cond is True and cfg.total_steps == 1000
  assert cfg.loss.sigma_data is None and cfg.net.dtype == "bfloat16"
  hash(cfg)  # usable as a static argument
  assert C.from_json(C.to_json(cfg)) == cfg


def test_unknown_field_lists_the_fields():
  with pytest.raises(ValueError, match=r"Unknown field 'net.channels'.*net.model_channels"):
    C.apply_overrides(C.TrainConfig(), ["net.channels=3"])
  with pytest.raises(ValueError, match="field=value"):
    C.apply_overrides(C.TrainConfig(), ["total_steps"])
  with pytest.raises(ValueError, match="not an integer"):
    C.apply_overrides(C.TrainConfig(), ["total_steps=1.5"])
  with pytest.raises(ValueError, match="allowed values"):
    C.apply_overrides(C.TrainConfig(), ["loss.objective=score"])
  with pytest.raises(ValueError, match="multiple of"):
    dataclasses.replace(C.TrainConfig(), batch_size=10, accum_steps=3)
