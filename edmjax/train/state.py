"""The training state: one pytree holding everything a resumed run needs.

Every leaf is an array, so the state is checkpointed as is, shards as is (replicated
on the device mesh) and can be donated to the jitted step.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from edmjax.train import phema

__all__ = ["TrainState", "init_state", "init_variables", "count_params"]


class TrainState(NamedTuple):
  """The state of a training run (a pytree; every leaf an array).

  Attributes:
    step: int32 (), optimizer steps taken (skipped ones included).
    params: the trained network parameters ('params' collection), float32.
    ema_params: their exponential moving average (NVlabs' `ema`), float32.
    opt_state: the optax (Adam) state.
    key: uint32 (2,), raw threefry key data (`jax.random.key_data`); the step splits
      it into this step's randomness and the next key.
    position: int32 (), training examples consumed (the data pipeline's whole state;
      also NVlabs' `cur_nimg`, which drives the lr and EMA ramp-ups).
    skipped_total: int32 (), steps skipped for a non-finite loss or gradient.
    skipped_consecutive: int32 (), the current run of skipped steps.
    buffers: non-trained variables (e.g. {'buffers': {...}} for NCSN++'s Fourier
      frequencies), or {}; passed to `model.apply` beside the params.
    ema_tracks: power-function EMA tracks (EDM2; `edmjax.train.phema`), one params
      pytree per σ_rel of `optim.ema_stds`, in that order; () when there are none.
  """
  step: Any
  params: Any
  ema_params: Any
  opt_state: Any
  key: Any
  position: Any
  skipped_total: Any
  skipped_consecutive: Any
  buffers: Any
  ema_tracks: Any = ()


def init_variables(model, key, image_shape, *, label_dim: int = 0, augment_dim: int = 0):
  """`model.init` on one dummy NHWC image of shape `image_shape` (H, W, C)."""
  x = jnp.zeros((1,) + tuple(image_shape), jnp.float32)
  c_noise = jnp.zeros((1,), jnp.float32)
  labels = jnp.zeros((1, label_dim), jnp.float32) if label_dim else None
  aug = jnp.zeros((1, augment_dim), jnp.float32) if augment_dim else None
  k_params, k_dropout = jax.random.split(key)
  return model.init({"params": k_params, "dropout": k_dropout}, x, c_noise, labels, aug,
                    train=False)


def init_state(model, optimizer: optax.GradientTransformation, key, image_shape, *,
               label_dim: int = 0, augment_dim: int = 0,
               ema_stds: tuple[float, ...] = ()) -> TrainState:
  """A fresh state: initial params (EMA and EMA tracks = params), zero counters.

  Args:
    model: the flax module (see `edmjax.train.models.build_net`).
    optimizer: the optax transformation (see `edmjax.train.optim.make_optimizer`).
    key: a jax.random key (typed or raw); split into init and training keys.
    image_shape: (H, W, C) of one NHWC image.
    label_dim, augment_dim: as the model was built.
    ema_stds: σ_rel of the power-function EMA tracks (`phema.init_tracks`).
  """
  if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
    key = jax.random.key_data(key)
  key = jax.random.wrap_key_data(jnp.asarray(key, jnp.uint32))
  k_init, k_train = jax.random.split(key)
  variables = init_variables(model, k_init, image_shape, label_dim=label_dim,
                             augment_dim=augment_dim)
  params = variables["params"]
  buffers = {k: v for k, v in variables.items() if k != "params"}
  zero = jnp.zeros((), jnp.int32)
  return TrainState(step=zero, params=params,
                    ema_params=jax.tree.map(jnp.copy, params),
                    opt_state=optimizer.init(params),
                    key=jax.random.key_data(k_train), position=zero,
                    skipped_total=zero, skipped_consecutive=zero, buffers=buffers,
                    ema_tracks=phema.init_tracks(params, ema_stds))


def count_params(params) -> int:
  """Number of trained scalars."""
  return int(sum(x.size for x in jax.tree.leaves(params)))
