"""Facts about EDM2's preconditioning, loss with learned uncertainty and lr schedule.

Reference numbers come from NVlabs/edm2 (commit 4bf8162: `EDM2Loss` and
`learning_rate_schedule` of `training/training_loop.py`), written by
tests/fixtures/make_edm2_fixture.py; this file reads them without torch.
"""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from edmjax import losses, precond
from edmjax.nn import EDM2UNet
from edmjax.nn import edm2_unet
from edmjax.train import optim

FIXTURE = os.path.join(os.path.dirname(__file__), "fixtures", "edm2_reference.npz")


@pytest.fixture(scope="module")
def ref():
  return np.load(FIXTURE)


def test_edm2_loss_equals_nvlabs_on_the_same_randomness(ref):
  cfg = json.loads(str(ref["meta/configs"]))["cond"]
  net = EDM2UNet(**{k: tuple(v) if isinstance(v, list) else v for k, v in cfg.items()})
  sd = {k[len("cond/sd/"):]: ref[k] for k in ref.files if k.startswith("cond/sd/")}
  variables = edm2_unet.variables_from_state_dict(sd)
  labels = jnp.asarray(ref["loss/labels"])
  denoise = precond.make_uncertainty_denoiser(
      lambda x_in, c: net.apply(variables, x_in, c, labels, return_logvar=True), "edm2")
  loss = jax.jit(lambda y, s, n: losses.edm2_loss(
      denoise, y, None, sigma=s, noise=n, **losses.EDM2_SIGMA_DENSITY["img64"]))(
          jnp.asarray(ref["loss/images"].transpose(0, 2, 3, 1)),
          jnp.asarray(ref["loss/sigma"]), jnp.asarray(ref["loss/noise"].transpose(0, 2, 3, 1)))
  expected = ref["loss/loss"].transpose(0, 2, 3, 1)
  assert loss.shape == expected.shape
  # float32: the loss reaches 71 and is a difference of two terms where it is near 0
  # (measured max |Δ| 2.7e-6), so the bound is relative to its largest value.
  np.testing.assert_allclose(loss, expected, rtol=1e-5, atol=1e-6 * np.abs(expected).max())


def test_optimal_uncertainty_is_the_log_of_the_weighted_loss():
  # For a fixed D, E[λ/e^u (D − y)² + u] is minimal at u = ln E[λ (D − y)²]: the
  # learned u(σ) normalises each σ's loss to 1 (Karras et al. 2024, Sec. 2, Eq. 21).
  y = jnp.asarray(np.random.default_rng(0).uniform(-1, 1, (4, 8, 8, 1)), jnp.float32)
  sigma, noise = jnp.full((4,), 0.7), jnp.asarray(
      np.random.default_rng(1).standard_normal(y.shape), jnp.float32)
  D = lambda x: 0.6 * x   # some imperfect denoiser

  def mean_loss(u):
    return jnp.mean(losses.edm2_loss(lambda x, s: (D(x), jnp.full((4,), u)), y, None,
                                     sigma=sigma, noise=noise))

  weighted = jnp.mean(losses.edm_loss(lambda x, s: D(x), y, None, sigma=sigma, noise=noise))
  u_star = jnp.log(weighted)
  assert abs(float(jax.grad(mean_loss)(u_star))) < 1e-6
  assert float(mean_loss(u_star)) == pytest.approx(1 + float(u_star), rel=1e-6)
  assert mean_loss(u_star) < mean_loss(u_star + 0.1)
  assert mean_loss(u_star) < mean_loss(u_star - 0.1)


def test_edm2_preconditioning_is_edms_with_quarter_log_sigma():
  sigma = jnp.array([0.002, 0.1, 0.5, 2.0, 80.0])
  c = precond.get_scalings("edm2")(sigma)
  for a, b in zip(c, precond.edm_scalings(sigma, 0.5)):
    np.testing.assert_array_equal(a, b)
  np.testing.assert_allclose(c.c_noise, np.log(np.asarray(sigma)) / 4, rtol=1e-6)


def test_learning_rate_schedule_equals_nvlabs(ref):
  for cur_nimg, batch, ref_lr, ref_batches, rampup, expected in ref["lr/grid"]:
    kw = dict(ref_lr=ref_lr, ref_batches=ref_batches, rampup_Mimg=rampup)
    host = optim.learning_rate_schedule(int(cur_nimg), int(batch), **kw)
    assert isinstance(host, float)
    assert host == pytest.approx(expected, rel=1e-15, abs=0)
    traced = jax.jit(lambda n, batch=int(batch), kw=kw: optim.learning_rate_schedule(
        n, batch, **kw))(jnp.asarray(cur_nimg, jnp.float32))
    assert traced.dtype == jnp.float32
    assert float(traced) == pytest.approx(expected, rel=1e-6, abs=1e-12)


def test_edm2_presets():
  assert losses.EDM2_SIGMA_DENSITY["img512"] == dict(P_mean=-0.4, P_std=1.0)
  assert losses.EDM2_SIGMA_DENSITY["img64"] == dict(P_mean=-0.8, P_std=1.6)
  assert optim.EDM2_ADAM["beta2"] == 0.99
