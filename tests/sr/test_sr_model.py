"""The SR3 conditioned U-Net and the conditional denoiser: conditioning, shapes, residual."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from edmjax import losses
from edmjax import precond
from edmjax.nn.sr3_unet import SR3UNet, aug_labels
from edmjax.sr import model as model_lib


def _net(noise_aug=False):
  return SR3UNet(img_resolution=8, channels=3, noise_aug=noise_aug, model_channels=8,
                 channel_mult=(1,), channel_mult_emb=2, num_blocks=1, attn_resolutions=(),
                 dropout=0.0)


@pytest.fixture(scope="module")
def net_and_vars():
  net = _net(noise_aug=True)
  k = jax.random.split(jax.random.key(0), 3)
  x = jax.random.normal(k[0], (2, 8, 8, 3))
  u = jax.random.normal(k[1], (2, 8, 8, 3))
  variables = jax.jit(net.init)(k[2], x, jnp.zeros((2,)), u, None, jnp.zeros((2,)))
  # Perturb every parameter so the output head is not ~0 (init_weight=1e-5).
  leaves, tree = jax.tree.flatten(variables)
  keys = jax.random.split(jax.random.key(1), len(leaves))
  leaves = [v + 0.1 * jax.random.normal(kk, v.shape) for v, kk in zip(leaves, keys)]
  return net, jax.tree.unflatten(tree, leaves), x, u


def test_output_shape_and_dependence_on_the_condition(net_and_vars):
  net, variables, x, u = net_and_vars
  f = jax.jit(lambda x, u, s: net.apply(variables, x, jnp.full((2,), 0.3), u, None, s))
  zero = jnp.zeros((2,))
  y = f(x, u, zero)
  assert y.shape == (2, 8, 8, 3)
  y_other = f(x, u.at[1].multiply(-1.0), zero)
  # Sample 1's output changes with its condition; sample 0's does not.
  assert float(jnp.max(jnp.abs(y_other[1] - y[1]))) > 1e-3
  np.testing.assert_allclose(y_other[0], y[0], atol=1e-6)
  # The σ_aug label reaches the network; σ_aug = 0 is the zero label.
  assert float(jnp.max(jnp.abs(f(x, u, jnp.full((2,), 0.2)) - y))) > 1e-4
  np.testing.assert_array_equal(aug_labels(zero), np.zeros((2, 2)))


def test_bad_condition_shape_is_an_error(net_and_vars):
  net, variables, x, u = net_and_vars
  with pytest.raises(ValueError, match="cond must be the upsampled"):
    net.apply(variables, x, jnp.zeros((2,)), u[:, :4], None, jnp.zeros((2,)))
  with pytest.raises(ValueError, match="noise_aug=False"):
    _net().init(jax.random.key(0), x, jnp.zeros((2,)), u, None, jnp.zeros((2,)))


def test_residual_denoiser_is_a_change_of_variables():
  """D(x | u) = u + D_r(x − u) and the EDM loss of D on y is that of D_r on y − u."""
  k = jax.random.split(jax.random.key(3), 4)
  y = jax.random.normal(k[0], (2, 8, 8, 3))
  u = jax.random.normal(k[1], (2, 8, 8, 3))
  w = jax.random.normal(k[2], (3, 3))

  def apply(x_in, c_noise, u_in, sa):  # a toy "net": channel mix of input and condition
    return jnp.tanh(x_in @ w + 0.5 * u_in + c_noise[:, None, None, None])

  den = model_lib.make_sr_denoiser(apply, u, residual=True, sigma_data=0.2)
  inner = precond.make_denoiser(lambda x, c: apply(x, c, u, None),
                                lambda s: precond.edm_scalings(s, 0.2))
  sigma = jnp.array([0.1, 3.0])
  np.testing.assert_allclose(den(y, sigma), u + inner(y - u, sigma), atol=1e-5)
  n = jax.random.normal(k[3], y.shape)
  l_img = losses.edm_loss(den, y, None, sigma=sigma, noise=n, sigma_data=0.2)
  l_res = losses.edm_loss(inner, y - u, None, sigma=sigma, noise=n, sigma_data=0.2)
  np.testing.assert_allclose(l_img, l_res, rtol=1e-4, atol=1e-5)
