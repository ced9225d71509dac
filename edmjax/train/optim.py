"""Adam, the learning-rate ramp-up and the EMA of NVlabs/edm's `training_loop.py`.

With `nimg` the number of training images consumed *before* the step (NVlabs'
`cur_nimg`; so the very first step has learning rate 0, as there):

.. math::
  lr(nimg) = lr \\cdot \\min\\Big(\\frac{nimg}{\\max(lr\\_rampup\\_kimg \\cdot 1000,
  10^{-8})}, 1\\Big)

  h = ema\\_halflife\\_kimg \\cdot 1000,\\quad
  h \\leftarrow \\min(h, nimg \\cdot ema\\_rampup\\_ratio)\\ \\text{(if the ratio is set)},
  \\quad β = 0.5^{batch / \\max(h, 10^{-8})}

  θ_{ema} \\leftarrow θ + β (θ_{ema} − θ)\\quad (\\texttt{torch.lerp}(θ, θ_{ema}, β))

Adam is `optax.scale_by_adam(b1, b2, eps)` (PyTorch's Adam: ε added to sqrt(v̂)),
followed by −lr(nimg); the learning rate is computed here, not by an optax schedule,
because it is a function of images (not of optimizer updates, which skipped steps
do not advance).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from edmjax.train.config import OptimConfig

__all__ = ["make_optimizer", "learning_rate", "ema_beta", "ema_update"]


def make_optimizer(cfg: OptimConfig) -> optax.GradientTransformation:
  """Adam's direction m̂/(sqrt(v̂) + ε), without the learning rate (see `apply_updates`)."""
  return optax.scale_by_adam(b1=cfg.beta1, b2=cfg.beta2, eps=cfg.eps)


def learning_rate(cfg: OptimConfig, nimg):
  """lr · min(nimg / max(lr_rampup_kimg·1000, 1e-8), 1), float32."""
  nimg = jnp.asarray(nimg, jnp.float32)
  ramp = max(cfg.lr_rampup_kimg * 1000, 1e-8)
  return jnp.float32(cfg.lr) * jnp.minimum(nimg / jnp.float32(ramp), 1.0)


def ema_beta(cfg: OptimConfig, nimg, batch_size: int):
  """β = 0.5^(batch / max(h, 1e-8)), h = min(halflife·1000, nimg·ratio), float32."""
  nimg = jnp.asarray(nimg, jnp.float32)
  halflife = jnp.float32(cfg.ema_halflife_kimg * 1000)
  if cfg.ema_rampup_ratio is not None:
    halflife = jnp.minimum(halflife, nimg * jnp.float32(cfg.ema_rampup_ratio))
  return jnp.float32(0.5) ** (jnp.float32(batch_size) / jnp.maximum(halflife, 1e-8))


def ema_update(ema_params, params, beta):
  """θ_ema ← θ + β (θ_ema − θ), leaf by leaf (NVlabs: `p_net.lerp(p_ema, beta)`)."""
  return jax.tree.map(lambda e, p: p + beta.astype(p.dtype) * (e - p), ema_params, params)
