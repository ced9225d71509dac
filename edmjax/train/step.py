"""One training step as a pure function `train_step(state, images, labels)`.

Per step (NVlabs/edm `training_loop.py` + `training/loss.py`, with a non-finite
guard instead of NVlabs' `nan_to_num` of the gradients):

1. split the state's key into augmentation, noise-level, noise and dropout keys;
2. optionally augment the global batch (NVlabs' AugmentPipe; its labels condition the
   net) and one-hot the class labels (label dropout happens inside the net);
3. draw the noise levels (σ ~ p_train of the objective, or DDPM's t ~ U{0..T−1}) and
   the unit noise for the *global* batch, so the numbers do not depend on the device
   count or on `accum_steps`;
4. loss = Σ_pixels λ(σ)(D(y + σn; σ) − y)², averaged over the batch (NVlabs:
   `loss.sum().mul(1 / batch)`); for DDPM, Σ_pixels (ε_θ(x_t, t) − ε)² likewise;
   gradients accumulate over `accum_steps` microbatches in a `lax.scan`;
5. Adam with lr(nimg), then the EMA — kept only if the loss, every gradient and
   every value of the updated params, optimizer state and EMA are finite (a finite
   gradient can still overflow the update, e.g. with `optim.lr=1e39`); otherwise
   params, optimizer state and EMA are left unchanged and the step is counted as
   skipped. Step, key and data position always advance.

Nothing is jitted here: the loop (or the caller) jits `train_step` once; data, keys
and σ are array arguments, so they never cause a recompile.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from edmjax import ddpm
from edmjax import losses
from edmjax.train import models
from edmjax.train import optim
from edmjax.train import phema
from edmjax.train.config import TrainConfig
from edmjax.train.state import TrainState

__all__ = ["make_train_step", "sample_noise_levels", "SIGMA_BIN_EDGES", "all_finite",
           "apply_gradients", "divergence_message"]

# Edges of the σ bins of the per-σ loss metric (7 bins: below 0.01 ... above 20).
SIGMA_BIN_EDGES = (0.01, 0.05, 0.2, 1.0, 5.0, 20.0)


def all_finite(tree) -> jax.Array:
  """True when every floating leaf of `tree` is finite (a traced bool)."""
  flags = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
           if jnp.issubdtype(jnp.asarray(x).dtype, jnp.inexact)]
  return jnp.all(jnp.stack(flags)) if flags else jnp.bool_(True)


def apply_gradients(state: TrainState, grads: Any, loss: jax.Array,
                    optimizer: optax.GradientTransformation, optim_cfg: Any, batch: int,
                    next_key: jax.Array, *,
                    renormalize: Callable[[Any], Any] | None = None,
                    ) -> tuple[TrainState, jax.Array, jax.Array, jax.Array]:
  """One optimizer update with NVlabs' lr schedule and EMAs, skipped if non-finite.

  The learning rate and the EMA decay depend on the images consumed before this step
  (`state.position`); the power-function EMA tracks (`optim_cfg.ema_stds`) on the
  images after it (NVlabs/edm2's `cur_nimg` after the increment). Then, for EDM2's
  forced weight normalisation, `renormalize(params)` replaces the stored weights
  (after the EMAs, which average the updated weights as NVlabs' do: NVlabs
  normalises them in place at the next training forward pass). When the loss, any
  gradient or any value of the updated params, optimizer state, EMA or EMA tracks is
  not finite, params, EMAs and the optimizer state keep their old values and the skip
  counters advance; the step counter, data position and RNG key always advance. So
  the parameters of a state never become non-finite.

  Returns:
    `(new_state, finite, lr, ema_beta)`; `finite` is False for a skipped step.
  """
  nimg = state.position
  lr = optim.learning_rate(optim_cfg, nimg, batch_size=batch)
  updates, new_opt_state = optimizer.update(grads, state.opt_state, state.params)
  new_params = jax.tree.map(lambda p, u: p - lr.astype(p.dtype) * u, state.params, updates)
  beta = optim.ema_beta(optim_cfg, nimg, batch)
  new_ema = optim.ema_update(state.ema_params, new_params, beta)
  new_tracks = phema.update_tracks(state.ema_tracks, new_params,
                                   stds=tuple(optim_cfg.ema_stds), nimg=nimg + batch,
                                   batch_size=batch)
  if renormalize is not None:
    new_params = renormalize(new_params)
  finite = (jnp.isfinite(loss) & all_finite(grads) & all_finite(new_params)
            & all_finite(new_opt_state) & all_finite(new_ema) & all_finite(new_tracks))

  def keep(new, old):
    return jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)

  skipped = (~finite).astype(jnp.int32)
  new_state = TrainState(
      step=state.step + 1,
      params=keep(new_params, state.params),
      ema_params=keep(new_ema, state.ema_params),
      opt_state=keep(new_opt_state, state.opt_state),
      key=jax.random.key_data(next_key),
      position=state.position + batch,
      skipped_total=state.skipped_total + skipped,
      skipped_consecutive=jnp.where(finite, 0, state.skipped_consecutive + 1),
      buffers=state.buffers,
      ema_tracks=keep(new_tracks, state.ema_tracks))
  return new_state, finite, lr, beta


def divergence_message(skipped_consecutive: int, skipped_total: int,
                       max_consecutive_bad_steps: int, saved_steps, workdir: str) -> str:
  """The message of a run stopped after too many skipped (non-finite) steps in a row.

  It says what is on disk, truthfully: the checkpoints written so far (`saved_steps`,
  all finite: `edmjax.train.checkpoint.save` refuses a non-finite state) or that there
  are none yet, so that rerunning resumes from the last good state or starts again.
  """
  saved = sorted(int(s) for s in saved_steps)
  if saved:
    where = (f"The checkpoints in {workdir}/checkpoints (steps "
             f"{', '.join(map(str, saved))}) hold finite states; rerunning resumes from "
             f"step {saved[-1]}.")
  else:
    where = (f"No checkpoint has been written to {workdir}/checkpoints yet, so nothing "
             "is saved; rerunning starts the run again.")
  return (f"Stopping: {int(skipped_consecutive)} consecutive steps had a non-finite loss, "
          f"gradient or parameter update (max_consecutive_bad_steps="
          f"{max_consecutive_bad_steps}; {int(skipped_total)} skipped in total); their "
          f"updates were skipped. {where} Check the data for NaN/inf, lower optim.lr, or "
          "use float32 (net.dtype=float32).")


def sample_noise_levels(cfg: TrainConfig, key, batch: int):
  """Noise levels of a batch: σ (batch,) float32, or DDPM's t (batch,) int32.

  Returns:
    (level, sigma): `level` is what the loss takes (σ, or t for DDPM) and `sigma`
    the equivalent σ (for DDPM σ_t = sqrt(1/ᾱ_t − 1)), used by the per-σ metrics.
  """
  lc = cfg.loss
  if lc.objective in ("edm", "edm2"):
    s = losses.edm_sample_sigma(key, batch, P_mean=lc.P_mean, P_std=lc.P_std)
    return s, s
  if lc.objective == "vp":
    s = losses.vp_sample_sigma(key, batch, beta_d=lc.beta_d, beta_min=lc.beta_min,
                               epsilon_t=lc.epsilon_t)
    return s, s
  if lc.objective == "ve":
    s = losses.ve_sample_sigma(key, batch, sigma_min=lc.sigma_min, sigma_max=lc.sigma_max)
    return s, s
  T = lc.ddpm_T
  t = jax.random.randint(key, (batch,), 0, T)
  sigmas = jnp.asarray(np.sqrt(1.0 / ddpm.ddpm_tables(models.ddpm_betas(lc)).alpha_bars - 1.0),
                       jnp.float32)
  return t, sigmas[t]


def _per_element_loss(model, cfg: TrainConfig, variables, images, level, noise,
                      class_labels, augment_labels, dropout_key):
  """The objective's unreduced loss, shaped like `images` (float32)."""
  lc = cfg.loss
  dtype = models.compute_dtype(cfg.net)
  kw = dict(class_labels=class_labels, augment_labels=augment_labels, train=True,
            dropout_key=dropout_key)
  if lc.objective == "ddpm":
    eps_fn = models.make_eps_fn(model, variables, dtype=dtype, **kw)
    return ddpm.ddpm_loss(eps_fn, images, None, models.ddpm_betas(lc), t=level, noise=noise)
  if lc.objective == "edm2":
    denoise = models.make_uncertainty_denoiser(model, variables, lc, dtype=dtype, **kw)
    return losses.edm2_loss(denoise, images, None, sigma_data=lc.sigma_data, sigma=level,
                            noise=noise)
  denoise = models.make_model_denoiser(model, variables, lc, dtype=dtype, **kw)
  if lc.objective == "edm":
    return losses.edm_loss(denoise, images, None, sigma_data=lc.sigma_data, sigma=level,
                           noise=noise)
  if lc.objective == "vp":
    return losses.vp_loss(denoise, images, None, sigma=level, noise=noise)
  return losses.ve_loss(denoise, images, None, sigma_min=lc.sigma_min,
                        sigma_max=lc.sigma_max, sigma=level, noise=noise)


def _microbatches(x, accum: int):
  """(B, ...) -> (accum, B/accum, ...): microbatch a holds rows a, a + accum, ...

  Strided (not contiguous) so that every microbatch keeps rows from every device's
  shard of a batch sharded on its first axis.
  """
  b = x.shape[0]
  return jnp.swapaxes(x.reshape((b // accum, accum) + x.shape[1:]), 0, 1)


def _unmicrobatches(x):
  """Inverse of `_microbatches` on (accum, B/accum, ...)."""
  return jnp.swapaxes(x, 0, 1).reshape((-1,) + x.shape[2:])


def make_train_step(model, cfg: TrainConfig, *, label_dim: int = 0,
                    augment_fn: Callable[[Any, Any], tuple[Any, Any]] | None = None,
                    optimizer: optax.GradientTransformation | None = None):
  """Builds `train_step(state, images, labels) -> (state, metrics)` (pure, not jitted).

  Args:
    model: the flax module (`edmjax.train.models.build_net`), called as
      `model.apply(variables, x, c_noise, class_labels, augment_labels, train=True,
      rngs={'dropout': key})`.
    cfg: the run's config; `cfg.loss.sigma_data` must be a number for 'edm'.
    label_dim: number of classes when `cfg.data.cond` (labels are one-hot encoded).
    augment_fn: `augment_fn(key, images) -> (images, augment_labels)` or None.
    optimizer: defaults to `optim.make_optimizer(cfg.optim)` (it must match the one
      the state was initialised with).

  Returns:
    `train_step(state, images, labels)`: images NHWC float32 (the global batch,
    `cfg.batch_size` rows), labels int32 (batch,). Metrics (scalars unless noted):
    `loss` (mean per element, NVlabs' reported `Loss/loss`), `grad_norm`, `lr`,
    `ema_beta`, `finite`, `skipped_total`, `skipped_consecutive`, and the per-σ-bin
    sums `loss_bin_sum`, `loss_bin_count` (shape (len(SIGMA_BIN_EDGES) + 1,)).
  """
  optimizer = optimizer or optim.make_optimizer(cfg.optim)
  accum = cfg.accum_steps
  edges = jnp.asarray(SIGMA_BIN_EDGES, jnp.float32)
  num_bins = len(SIGMA_BIN_EDGES) + 1

  def train_step(state: TrainState, images, labels):
    batch = images.shape[0]
    if batch % accum:
      raise ValueError(f"The batch has {batch} rows, not a multiple of "
                       f"accum_steps={accum}.")
    images = images.astype(jnp.float32)
    key = jax.random.wrap_key_data(state.key)
    next_key, k_aug, k_level, k_noise, k_drop = jax.random.split(key, 5)

    augment_labels = None
    if augment_fn is not None:
      images, augment_labels = augment_fn(k_aug, images)
    class_labels = jax.nn.one_hot(labels, label_dim, dtype=jnp.float32) if label_dim else None
    level, sigma = sample_noise_levels(cfg, k_level, batch)
    noise = jax.random.normal(k_noise, images.shape, jnp.float32)

    def loss_fn(params, mb):
      variables = {"params": params, **state.buffers}
      per = _per_element_loss(model, cfg, variables, mb["images"], mb["level"], mb["noise"],
                              mb.get("class_labels"), mb.get("augment_labels"),
                              jax.random.fold_in(k_drop, mb["index"]))
      per_image = per.reshape(per.shape[0], -1).sum(axis=1)
      return per_image.sum() / batch, per_image

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)
    data = dict(images=images, level=level, noise=noise)
    if class_labels is not None:
      data["class_labels"] = class_labels
    if augment_labels is not None:
      data["augment_labels"] = augment_labels

    if accum == 1:
      (loss, per_image), grads = grad_fn(state.params, dict(data, index=jnp.int32(0)))
    else:
      mbs = jax.tree.map(lambda x: _microbatches(x, accum), data)
      mbs["index"] = jnp.arange(accum, dtype=jnp.int32)

      def body(carry, mb):
        g_sum, l_sum = carry
        (l, per_img), g = grad_fn(state.params, mb)
        return (jax.tree.map(jnp.add, g_sum, g), l_sum + l), per_img

      zeros = jax.tree.map(jnp.zeros_like, state.params)
      (grads, loss), per_image = jax.lax.scan(body, (zeros, jnp.float32(0)), mbs)
      per_image = _unmicrobatches(per_image)

    new_state, finite, lr, beta = apply_gradients(
        state, grads, loss, optimizer, cfg.optim, batch, next_key,
        renormalize=models.weight_renormalization(cfg.net))

    pixels = int(np.prod(images.shape[1:]))
    bins = jnp.searchsorted(edges, sigma)
    onehot = jax.nn.one_hot(bins, num_bins, dtype=jnp.float32)
    metrics = dict(
        loss=jnp.sum(per_image) / (batch * pixels),
        grad_norm=optax.tree.norm(grads),
        lr=lr, ema_beta=beta, finite=finite,
        skipped_total=new_state.skipped_total,
        skipped_consecutive=new_state.skipped_consecutive,
        loss_bin_sum=onehot.T @ (per_image / pixels),
        loss_bin_count=jnp.sum(onehot, axis=0))
    return new_state, metrics

  return train_step
