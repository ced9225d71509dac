"""The per-sample key rule every sampler follows, so a sample depends on its own key only.

A sampler takes one key or one key per sample (shape (B,)); with one key, sample b
gets `fold_in(key, b)`. Noise is drawn per sample from that key:

============================  ===============================================
what                          draw for sample b (key_b = its key)
============================  ===============================================
step i's noise                `normal(fold_in(key_b, i), image_shape)`
step i's further draws        `normal(fold_in(fold_in(key_b, i), j), image_shape)`,
(j = 1, 2, ...: a sampler     j = 1, 2, ...
that draws twice per step)
starting noise (headstart,    `normal(fold_in(key_b, 2**31 − 1), image_shape)`
SDEdit, inpainting)
============================  ===============================================

so a sample is the same at batch 4 and batch 16, and on 1 or 8 devices. Scripts draw
from integer seeds as NVlabs' `generate.py` does, one generator per seed
(`seed_latents_and_keys`): seed s gives latents `normal(fold_in(key(s), 0))` and the
sampler's key `fold_in(key(s), 1)`. (NVlabs' per-seed torch generator cannot be
reproduced in JAX; pass latents explicitly to compare with it.)

A reference implementation is handed the same noise by drawing it with these
functions (`step_noise(keys, i, x)`) and passing it in.

Example:
  >>> import jax
  >>> from edmjax import keys
  >>> latents, sampler_keys = keys.seed_latents_and_keys([0, 1, 2], (8, 8, 1))
  >>> latents.shape, sampler_keys.shape
  ((3, 8, 8, 1), (3,))
  >>> a = keys.step_noise(keys.per_sample_keys(jax.random.key(0), 4), 0, latents)
  >>> b = keys.step_noise(keys.per_sample_keys(jax.random.key(0), 2), 0, latents[:2])
  >>> bool((a[:2] == b).all())
  True
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from edmjax import _checks

__all__ = ["START_NOISE", "per_sample_keys", "step_noise", "start_noise",
           "seed_latents_and_keys", "check_key_given"]

START_NOISE = 0x7FFFFFFF  # fold_in data of the starting noise (steps use 0, 1, ...)


def check_key_given(key, why: str) -> None:
  """Raises ValueError when `key` is None although `why` adds noise."""
  if key is None:
    raise ValueError(
        f"key=None, but {why} adds noise; pass a jax.random key (one key, or one "
        "key per sample).")


def per_sample_keys(key, batch: int) -> jax.Array:
  """One key per sample: `key` itself if it is already a (batch,) vector of keys,
  else `fold_in(key, b)` for sample b."""
  _checks.check_batch_keys(key, batch)
  typed = jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
  single_ndim = 0 if typed else 1
  if key.ndim == single_ndim:
    return jax.vmap(lambda b: jax.random.fold_in(key, b))(jnp.arange(batch))
  return key


def step_noise(keys, i, x, draw: int = 0) -> jax.Array:
  """N(0, I) noise of step i shaped like `x`: sample b's is
  `normal(fold_in(keys[b], i), x.shape[1:])`, in x's dtype.

  `i` is one step index, or one per sample (shape (B,)) for samplers whose samples
  are at different steps (adaptive step sizes). `draw` = j > 0 is the j-th further
  draw of the same step, `normal(fold_in(fold_in(keys[b], i), j))` (static).
  """
  _checks.check_int_at_least("draw", draw, 0)

  def one(k, step):
    k = jax.random.fold_in(k, step)
    if draw:
      k = jax.random.fold_in(k, draw)
    return jax.random.normal(k, x.shape[1:], x.dtype)

  steps = jnp.asarray(i)
  return jax.vmap(one, in_axes=(0, 0 if steps.ndim else None))(keys, steps)


def start_noise(key, x) -> jax.Array:
  """Unit-Gaussian starting noise shaped like `x` (one key or one per sample):
  sample b's is `normal(fold_in(key_b, 2**31 − 1), x.shape[1:])`."""
  check_key_given(key, "the starting noise")
  return step_noise(per_sample_keys(key, x.shape[0]), START_NOISE, x)


def seed_latents_and_keys(seeds, image_shape):
  """Per-seed unit-Gaussian latents and sampler keys (NHWC), as NVlabs' generate.py.

  Seed s gives latents `normal(fold_in(key(s), 0))` and the sampler's key
  `fold_in(key(s), 1)`, so an image depends on its seed only, not on the batch it
  is drawn in, the batch size or the device count.

  Args:
    seeds: (n,) integer array (uint32 range).
    image_shape: (H, W, C).

  Returns:
    (latents (n, H, W, C) float32, keys (n,) typed keys).
  """
  base = jax.vmap(jax.random.key)(jnp.asarray(seeds, jnp.uint32))
  latents = jax.vmap(lambda k: jax.random.normal(jax.random.fold_in(k, 0),
                                                 tuple(image_shape), jnp.float32))(base)
  sampler_keys = jax.vmap(lambda k: jax.random.fold_in(k, 1))(base)
  return latents, sampler_keys
