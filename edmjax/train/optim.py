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

EDM2 (Karras et al. 2024, Eq. 4 and NVlabs/edm2 `learning_rate_schedule`) decays the
rate as the inverse square root of the training time after `ref_batches` steps and
ramps it up linearly over `rampup_Mimg` million images:

.. math::
  lr(nimg) = \\frac{ref\\_lr}{\\sqrt{\\max(nimg / (ref\\_batches \\cdot batch), 1)}}
  \\cdot \\min\\Big(\\frac{nimg}{rampup\\_Mimg \\cdot 10^6}, 1\\Big)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from edmjax.train.config import OptimConfig

__all__ = ["make_optimizer", "learning_rate", "ema_beta", "ema_update",
           "learning_rate_schedule", "EDM2_ADAM"]

EDM2_ADAM = dict(beta1=0.9, beta2=0.99, eps=1e-8)
"""Adam as NVlabs/edm2 trains (`betas=(0.9, 0.99)`), as `OptimConfig` fields."""


def make_optimizer(cfg: OptimConfig) -> optax.GradientTransformation:
  """Adam's direction m̂/(sqrt(v̂) + ε), without the learning rate (see `apply_updates`)."""
  return optax.scale_by_adam(b1=cfg.beta1, b2=cfg.beta2, eps=cfg.eps)


def learning_rate(cfg: OptimConfig, nimg, *, batch_size: int | None = None):
  """lr · min(nimg / max(lr_rampup_kimg·1000, 1e-8), 1), float32 (NVlabs/edm).

  With `cfg.lr_decay_batches` > 0, EDM2's `learning_rate_schedule(nimg, batch_size,
  ref_lr=lr, ref_batches=lr_decay_batches, rampup_Mimg=lr_rampup_kimg / 1000)`
  instead (then `batch_size` is required).
  """
  if cfg.lr_decay_batches > 0:
    if batch_size is None:
      raise ValueError("optim.lr_decay_batches > 0 (EDM2's schedule) needs the batch size.")
    return learning_rate_schedule(jnp.asarray(nimg, jnp.float32), batch_size,
                                  ref_lr=cfg.lr, ref_batches=cfg.lr_decay_batches,
                                  rampup_Mimg=cfg.lr_rampup_kimg / 1000)
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


def learning_rate_schedule(cur_nimg, batch_size, ref_lr=100e-4, ref_batches=70e3,
                           rampup_Mimg=10):
  """EDM2's learning rate: inverse-square-root decay with a linear ramp-up.

  NVlabs/edm2's signature and defaults; `ref_batches` 0 disables the decay and
  `rampup_Mimg` 0 the ramp-up. Host numbers (Python or NumPy) give a float64 float
  (NVlabs' arithmetic); a JAX array `cur_nimg` (inside a jitted step) gives float32.

  Example:
    >>> learning_rate_schedule(4 * 70e3 * 2048, batch_size=2048, ref_lr=0.012)  # 4x ref
    0.006
    >>> learning_rate_schedule(5e6, batch_size=2048, ref_lr=0.012)          # ramp-up
    0.006
  """
  if isinstance(cur_nimg, jax.Array):
    nimg = cur_nimg.astype(jnp.float32)
    lr = jnp.float32(ref_lr)
    if ref_batches > 0:
      lr = lr / jnp.sqrt(jnp.maximum(nimg / jnp.float32(ref_batches * batch_size), 1.0))
    if rampup_Mimg > 0:
      lr = lr * jnp.minimum(nimg / jnp.float32(rampup_Mimg * 1e6), 1.0)
    return lr
  nimg = float(cur_nimg)
  lr = float(ref_lr)
  if ref_batches > 0:
    lr /= float(np.sqrt(max(nimg / (ref_batches * batch_size), 1.0)))
  if rampup_Mimg > 0:
    lr *= min(nimg / (rampup_Mimg * 1e6), 1.0)
  return lr
