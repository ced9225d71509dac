"""The paper's networks wrapped by `make_denoiser` under each of the four preconditionings.

Fact checked: D(x; σ) = c_skip(σ) x + c_out(σ) F(c_in(σ) x; c_noise(σ)) with F the raw
network called directly, for SongUNet (DDPM++, NCSN++) and DhariwalUNet (ADM), and the
network only ever receives c_in·x and c_noise (never σ). iDDPM's networks have 2C output
channels (learned variance); the denoiser uses the first C, as NVlabs/edm does.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from edmjax import precond
from edmjax.nn import DhariwalUNet, SongUNet

B, R, C = 2, 8, 1
SIGMA = jnp.array([0.3, 7.0])


def _nets(out_channels):
  common = dict(img_resolution=R, in_channels=C, out_channels=out_channels,
                model_channels=8, channel_mult=(1, 2), num_blocks=1, dropout=0.0)
  return {
      "ddpmpp": SongUNet(attn_resolutions=(), **common),
      "ncsnpp": SongUNet(attn_resolutions=(), embedding_type="fourier", channel_mult_noise=2,
                         encoder_type="residual", resample_filter=(1, 3, 3, 1), **common),
      "adm": DhariwalUNet(attn_resolutions=(), **common),
  }


@pytest.fixture(scope="module")
def initialised():
  x = jnp.zeros((B, R, R, C))
  out = {}
  for out_channels in (C, 2 * C):
    for name, net in _nets(out_channels).items():
      variables = net.init(jax.random.key(0, impl="unsafe_rbg"), x, jnp.zeros(B))
      # Non-zero output layers, so that F actually contributes to D.
      variables = jax.tree.map(lambda v: v + 0.01, variables)
      out[name, out_channels] = (net, variables)
  return out


@pytest.mark.parametrize("name", ["ddpmpp", "ncsnpp", "adm"])
@pytest.mark.parametrize("family", ["edm", "vp", "ve", "iddpm"])
def test_network_under_preconditioning(initialised, name, family):
  out_channels = 2 * C if family == "iddpm" else C
  net, variables = initialised[name, out_channels]
  x = jnp.asarray(np.random.default_rng(1).standard_normal((B, R, R, C)), jnp.float32) * 3
  seen = {}

  def apply_fn(x_in, c_noise):
    seen["x_in"], seen["c_noise"] = x_in, c_noise
    return net.apply(variables, x_in, c_noise)

  denoised = precond.make_denoiser(apply_fn, family)(x, SIGMA)
  chex.assert_shape(denoised, x.shape)
  assert denoised.dtype == jnp.float32 and bool(jnp.all(jnp.isfinite(denoised)))

  c = precond.get_scalings(family)(SIGMA)
  b = lambda v: v[:, None, None, None]
  chex.assert_trees_all_close(seen["x_in"], b(c.c_in) * x)
  chex.assert_trees_all_close(seen["c_noise"], c.c_noise)
  F = net.apply(variables, b(c.c_in) * x, c.c_noise)
  assert F.shape[-1] == out_channels
  expected = b(c.c_skip) * x + b(c.c_out) * F[..., :C]
  chex.assert_trees_all_close(denoised, expected, rtol=1e-5, atol=1e-6)
