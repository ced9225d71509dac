"""Training SR3 with the EDM loss: SR's config, data pairs, step and strip hook.

The loop is `edmjax.train.runner`'s, as for `edmjax.train.train`; what is SR's own
lives here: the config (`SRTrainConfig`), the HR data and held-out photograph
(`load_sr_data`, `edmjax.data.patches`), the step and the strips hook.

`edmjax.train.make_train_step` takes (images, labels) batches and has no place for a
per-image condition, so super-resolution has its own small step, built from the
same parts: `edmjax.losses.edm_loss` on the conditional denoiser of
`edmjax.sr.model.make_sr_denoiser` (itself `edmjax.precond.make_denoiser`), Adam,
learning-rate ramp-up and EMA from `edmjax.train.optim`, the `TrainState` pytree,
the non-finite guard of `edmjax.train.step`, orbax through `edmjax.train.checkpoint`,
metrics and grids through `edmjax.train.monitor` and batches through
`edmjax.data.pipeline` (so a resumed run sees the same batches).

One SR step, for HR patches y (the degradation runs inside the jitted step):

1. x_LR = A(y) + σ_n ε (`edmjax.sr.degrade.degrade`), u = up_s(x_LR), optionally
   u ← u + σ_aug ε' with σ_aug ~ U(0, aug_sigma_max) for a fraction aug_prob;
2. σ ~ exp(N(P_mean, P_std²)), loss = Σ_pixels λ(σ)‖D(y + σn; σ | u) − y‖²
   averaged over the batch (NVlabs' reduction), with D residual or not;
   with `headstart_prob` > 0, that fraction of the examples is instead a headstart
   example: σ ~ log-uniform over `headstart_sigma` and the input is u + σn (what
   `edmjax.sr.headstart` starts from), with the same target y and weight λ(σ);
3. Adam with lr(nimg), then the EMA; skipped (state kept) when not finite.

Why headstart examples: a denoiser trained only on y + σn has never seen u + σn.
At a small σ it reads the missing detail y − u as part of the clean image and
returns nearly u: one-step SR from a small σ_start then barely beats bicubic. Trained
on u + σn as well, D(u + σn; σ | u) learns E[y | x_LR], the MMSE (best-PSNR) estimate,
in one evaluation — the training of one-step SR from a noised upsampled input
(arXiv 2507.13607). On inputs that show the residual (y + σn, as full sampling makes
them) the net still denoises, so full sampling is unchanged where the two kinds of
input can be told apart.

`train_sr` jits the step once, with the state replicated and the batch sharded
over the devices (as `edmjax.train`): on a CPU split into one device per core
(`edmjax.train.parallel.split_cpu_into_devices`) every core works.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

from edmjax import _checks
from edmjax import losses
from edmjax.data import pipeline
from edmjax.data import sources
from edmjax.data import stats
from edmjax.sr import degrade
from edmjax.sr import inference
from edmjax.sr import model as model_lib
from edmjax.data import patches
from edmjax.train import checkpoint
from edmjax.train import config as config_lib
from edmjax.train import monitor
from edmjax.train import optim
from edmjax.train import parallel
from edmjax.train import runner
from edmjax.train.config import LossConfig, NetConfig, OptimConfig
from edmjax.train.state import TrainState
from edmjax.train.step import apply_gradients

__all__ = ["SRDataConfig", "SRTrainConfig", "validate_sr", "load_sr_data", "estimate_sr_sigma_data",
           "init_sr_state", "make_sr_train_step", "training_noise", "sr_mesh", "train_sr",
           "load_sr", "read_sr_config", "sr_config_from_json"]


@dataclasses.dataclass(frozen=True)
class SRDataConfig:
  """HR training data.

  Attributes:
    name: 'photos' (patches of scikit-image's photographs, `edmjax.data.patches`, one
      held out) or any `edmjax.data.load_dataset` name ('lfw_subset', 'digits',
      'folder:<path>', ...), whose images are the HR targets.
    patch: HR patch side for 'photos' (the net's training size).
    holdout: the held-out photograph ('photos'), or the number of held-out
      examples (other sources: a seeded sample, stratified by class where there are
      classes, `edmjax.data.split_holdout`; given as a string of an int).
    resolution, channels: for `load_dataset` sources.
    seed: the crops' / shuffling seed.
    min_std: 'photos' only: reject crops flatter than this pixel std
      (`patches.PatchSource`); 0 keeps every crop.
    photo_set: 'photos' only: 'colour' (scikit-image's RGB photographs), 'all'
      (also `patches.EXTRA_PHOTOGRAPHS`: scikit-learn's two photographs and
      scikit-image's greyscale ones) or 'natural' ('all' but the microscope,
      telescope and fundus images).
    augment: 'photos' only: 'hflip' or 'dihedral' (flips and quarter turns).
    image_shape: (H, W, C) of the training targets, filled in from the data when the
      run starts (None: not yet known) and saved in config.json, so that `load_sr`
      builds the net without the data.
  """
  name: str = "photos"
  patch: int = 32
  holdout: str = "chelsea"
  resolution: int | None = None
  channels: int | None = None
  seed: int = 0
  min_std: float = 0.0
  photo_set: str = "colour"
  augment: str = "hflip"
  image_shape: tuple[int, ...] | None = None

  def __post_init__(self):
    _checks.check_choice("data.photo_set", self.photo_set, patches.PHOTO_SETS)
    _checks.check_choice("data.augment", self.augment, patches.AUGMENTS)


@dataclasses.dataclass(frozen=True)
class SRTrainConfig:
  """A whole SR training run (frozen; `--set a.b=v` overrides as for `TrainConfig`).

  Attributes:
    net: the SongUNet of the SR3 net (`arch` 'ddpmpp' or 'ncsnpp').
    sr: degradation, residual learning, upsampling, noise augmentation.
    data: the HR images.
    loss: EDM's P_mean, P_std and σ_data (None: estimated from the training
      targets — the residuals when `sr.residual`).
    optim: Adam, ramp-up and EMA (`edmjax.train.optim`).
    batch_size, total_steps, seed: as `TrainConfig`.
    max_minutes: stop (with a checkpoint) after this much wall time; 0 means no limit.
    log_every, checkpoint_every, sample_every, keep_checkpoints: as `TrainConfig`
      (`sample_every` writes a PNG strip LR | bicubic | headstart | HR).
    strip_sigma_start, strip_steps: the headstart of the strips.
    headstart_prob: the fraction of training examples that start from u + σn instead
      of y + σn (see the module docstring); 0 is plain SR3/EDM training.
    headstart_sigma: (low, high), the log-uniform σ range of those examples.
  """
  net: NetConfig = NetConfig(model_channels=16, channel_mult=(1, 2, 2), num_blocks=1,
                             attn_resolutions=(), dropout=0.0)
  sr: model_lib.SRConfig = model_lib.SRConfig()
  data: SRDataConfig = SRDataConfig()
  loss: LossConfig = LossConfig(P_mean=-2.0, P_std=1.5, sigma_data=None)
  optim: OptimConfig = OptimConfig(lr=2e-3, lr_rampup_kimg=2.0, ema_halflife_kimg=5.0,
                                   ema_rampup_ratio=0.05)
  batch_size: int = 16
  total_steps: int = 4000
  seed: int = 0
  max_minutes: float = 0.0
  log_every: int = 50
  checkpoint_every: int = 500
  sample_every: int = 500
  keep_checkpoints: int = 2
  strip_sigma_start: float = 0.5
  strip_steps: int = 1
  headstart_prob: float = 0.0
  headstart_sigma: tuple[float, float] = (0.1, 1.0)

  def __post_init__(self):
    _checks.check_int_at_least("batch_size", self.batch_size, 1)
    if not 0.0 <= self.headstart_prob <= 1.0:
      raise ValueError(f"headstart_prob={self.headstart_prob} must be in [0, 1].")
    lo_hi = tuple(self.headstart_sigma)
    if len(lo_hi) != 2 or not 0 < lo_hi[0] <= lo_hi[1]:
      raise ValueError(f"headstart_sigma={self.headstart_sigma} must be (low, high) with "
                       "0 < low <= high.")
    _checks.check_int_at_least("total_steps", self.total_steps, 0)
    _checks.check_nonnegative("max_minutes", self.max_minutes)
    if self.loss.objective != "edm":
      raise ValueError(f"loss.objective={self.loss.objective!r}: SR training uses the "
                       "EDM loss; set loss.objective=edm.")


def sr_config_from_json(text: str) -> SRTrainConfig:
  return config_lib.from_json(text, SRTrainConfig)


def read_sr_config(workdir: str) -> SRTrainConfig:
  with open(os.path.join(workdir, "config.json"), encoding="utf-8") as f:
    return sr_config_from_json(f.read())


# ----------------------------------------------------------------------------- data


def validate_sr(cfg: SRTrainConfig) -> int:
  """Checks what involves several fields of an SR config before any work; returns the
  multiple every HR side must be (the scale times 2**(len(channel_mult) − 1)).

  Raises:
    ValueError: naming the field(s), the value and what is allowed (a 'photos' patch
      that is not a multiple of it).
  """
  multiple = cfg.sr.scale * 2 ** (len(cfg.net.channel_mult) - 1)
  if cfg.data.name == "photos" and cfg.data.patch % multiple:
    lo, hi = (cfg.data.patch // multiple) * multiple, (cfg.data.patch // multiple + 1) * multiple
    raise ValueError(
        f"data.patch={cfg.data.patch} is not allowed: it must be a multiple of "
        f"sr.degrade.scale={cfg.sr.scale} × 2**(levels − 1) = {multiple} (net.channel_mult="
        f"{cfg.net.channel_mult}); e.g. {', '.join(str(r) for r in (lo, hi) if r > 0)}.")
  return multiple


def load_sr_data(cfg: SRTrainConfig):
  """(training source of HR images, held-out HR images (n, H, W, C)), NHWC in [-1, 1].

  For 'photos' the held-out image is the whole photograph, centre-cropped to a
  multiple of the scale times 2**(len(channel_mult) − 1).
  """
  dc = cfg.data
  multiple = validate_sr(cfg)
  if dc.name == "photos":
    src, held = patches.photo_patches(dc.patch, holdout=dc.holdout, seed=dc.seed,
                                      min_std=dc.min_std, photo_set=dc.photo_set,
                                      augment=dc.augment)
    return src, patches.crop_to_multiple(held, multiple)
  ds = sources.load_dataset(dc.name, resolution=dc.resolution, channels=dc.channels)
  n_hold = int(dc.holdout) if str(dc.holdout).isdigit() else 0
  if ds.images.shape[1] % multiple or ds.images.shape[2] % multiple:
    raise ValueError(f"images of {dc.name!r} are {ds.images.shape[1]}x{ds.images.shape[2]}; "
                     f"set data.resolution to a multiple of {multiple}.")
  if n_hold >= len(ds):
    raise ValueError(f"data.holdout={n_hold} leaves no training images ({len(ds)}).")
  # The held-out images are a seeded sample, stratified by class where there are
  # classes (as the main loop's), not the last images of the source's order.
  train, held = sources.split_holdout(ds, n_hold, seed=dc.seed)
  return train, (held if held is not None else ds.images[:0])


def _targets(hr, cfg: SRTrainConfig):
  """The training targets whose std is σ_data: residuals y − up(A(y)), or y."""
  if not cfg.sr.residual:
    return hr
  lr = degrade.degrade_clean(jnp.asarray(hr), cfg.sr.degrade)
  u, _ = model_lib.condition(lr, cfg.sr)
  return np.asarray(hr - u)


def estimate_sr_sigma_data(source, cfg: SRTrainConfig, num: int = 1024) -> float:
  """σ_data of the training targets (residuals when `sr.residual`), from `num` examples."""
  idx = np.linspace(0, len(source) - 1, min(num, len(source))).astype(np.int64)
  hr = source.get(idx)[0]
  return stats.estimate_sigma_data(_targets(hr, cfg))


# ----------------------------------------------------------------------------- step


def init_sr_state(model, optimizer, key, image_shape, *, noise_aug: bool) -> TrainState:
  """A fresh `TrainState` of an SR3 net (params = EMA, zero counters).

  The same layout as `edmjax.train.init_state`, initialised with a dummy condition.
  """
  if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
    key = jax.random.key_data(key)
  key = jax.random.wrap_key_data(jnp.asarray(key, jnp.uint32))
  k_init, k_train = jax.random.split(key)
  x = jnp.zeros((1,) + tuple(image_shape), jnp.float32)
  sa = jnp.zeros((1,), jnp.float32) if noise_aug else None
  k_params, k_drop = jax.random.split(k_init)
  variables = model.init({"params": k_params, "dropout": k_drop}, x, jnp.zeros((1,)), x,
                         None, sa, train=False)
  params = variables["params"]
  buffers = {k: v for k, v in variables.items() if k != "params"}
  zero = jnp.zeros((), jnp.int32)
  return TrainState(step=zero, params=params, ema_params=jax.tree.map(jnp.copy, params),
                    opt_state=optimizer.init(params), key=jax.random.key_data(k_train),
                    position=zero, skipped_total=zero, skipped_consecutive=zero,
                    buffers=buffers)


def training_noise(key, hr, u, cfg: SRTrainConfig):
  """(σ (B,), n') of one SR training batch: the loss's input is `hr + σ n'`.

  Plain examples: ln σ ~ N(P_mean, P_std²), n' ~ N(0, I), so the input is y + σn.
  Headstart examples (probability `cfg.headstart_prob`): ln σ ~ U(ln low, ln high) of
  `cfg.headstart_sigma` and n' = n − (y − u)/σ, so the input is u + σn, the start of
  `edmjax.sr.headstart` (its target is still y).
  """
  lc = cfg.loss
  batch = hr.shape[0]
  k_sigma, k_noise, k_hs, k_hs_sigma = jax.random.split(key, 4)
  sigma = losses.edm_sample_sigma(k_sigma, batch, P_mean=lc.P_mean, P_std=lc.P_std)
  noise = jax.random.normal(k_noise, hr.shape, jnp.float32)
  if cfg.headstart_prob > 0:
    lo, hi = (float(v) for v in cfg.headstart_sigma)
    hs = jax.random.uniform(k_hs, (batch,)) < cfg.headstart_prob
    s_hs = jnp.exp(jax.random.uniform(k_hs_sigma, (batch,), jnp.float32,
                                      np.log(lo), np.log(hi)))
    sigma = jnp.where(hs, s_hs, sigma)
    shift = (hr - u) / sigma[:, None, None, None]
    noise = jnp.where(hs[:, None, None, None], noise - shift, noise)
  return sigma, noise


def make_sr_train_step(model, cfg: SRTrainConfig, optimizer=None):
  """Builds `train_step(state, hr) -> (state, metrics)` (pure, not jitted).

  Args:
    model: the `SR3UNet` (`edmjax.sr.model.build_sr_net`).
    cfg: the run's config; `cfg.loss.sigma_data` must be a number.
    optimizer: defaults to `optim.make_optimizer(cfg.optim)`.

  Returns:
    `train_step(state, hr)` for HR images (B, H, W, C), NHWC float32 in [-1, 1].
    Metrics: `loss` (mean per element), `grad_norm`, `lr`, `ema_beta`, `finite`,
    `skipped_total`.
  """
  if cfg.loss.sigma_data is None:
    raise ValueError("loss.sigma_data is None; estimate it first "
                     "(estimate_sr_sigma_data) or set a number.")
  optimizer = optimizer or optim.make_optimizer(cfg.optim)
  src = cfg.sr
  lc = cfg.loss

  def train_step(state: TrainState, hr):
    batch = hr.shape[0]
    hr = hr.astype(jnp.float32)
    key = jax.random.wrap_key_data(state.key)
    next_key, k_deg, k_aug, k_augp, k_loss, k_drop = jax.random.split(key, 6)
    lr_img = degrade.degrade(k_deg, hr, src.degrade)
    sigma_aug = None
    if src.noise_aug:
      level = jax.random.uniform(k_aug, (batch,), jnp.float32, 0.0, src.aug_sigma_max)
      on = jax.random.uniform(k_augp, (batch,)) < src.aug_prob
      sigma_aug = jnp.where(on, level, 0.0)
    u, sa = model_lib.condition(lr_img, src, key=jax.random.fold_in(k_aug, 1),
                                sigma_aug=sigma_aug)

    sigma, noise = training_noise(k_loss, hr, u, cfg)

    def loss_fn(params):
      apply = model_lib.make_net_apply(model, {"params": params, **state.buffers},
                                       noise_aug=src.noise_aug, train=True,
                                       dropout_key=k_drop)
      denoise = model_lib.make_sr_denoiser(apply, u, residual=src.residual,
                                           sigma_data=lc.sigma_data, sigma_aug=sa)
      per = losses.edm_loss(denoise, hr, None, P_mean=lc.P_mean, P_std=lc.P_std,
                            sigma_data=lc.sigma_data, sigma=sigma, noise=noise)
      return jnp.sum(per) / batch

    loss, grads = jax.value_and_grad(loss_fn)(state.params)
    new_state, finite, lr, beta = apply_gradients(state, grads, loss, optimizer,
                                                  cfg.optim, batch, next_key)
    pixels = int(np.prod(hr.shape[1:]))
    metrics = dict(loss=loss / pixels, grad_norm=optax.tree.norm(grads), lr=lr,
                   ema_beta=beta, finite=finite, skipped_total=new_state.skipped_total)
    return new_state, metrics

  return train_step


# ----------------------------------------------------------------------------- loop


def _strip_fn(model, cfg: SRTrainConfig):
  """jit(params, hr, key) -> NHWC strip rows LR | bicubic | headstart | HR."""

  def strip(params, buffers, hr, key):
    lr_img = degrade.degrade_clean(hr, cfg.sr.degrade)
    u, sa = model_lib.condition(lr_img, cfg.sr)
    apply = model_lib.make_net_apply(model, {"params": params, **buffers},
                                     noise_aug=cfg.sr.noise_aug)
    den = model_lib.make_sr_denoiser(apply, u, residual=cfg.sr.residual,
                                     sigma_data=cfg.loss.sigma_data, sigma_aug=sa)
    sr = inference.super_resolve(den, u, key, mode="headstart",
                                 sigma_start=cfg.strip_sigma_start,
                                 num_steps=cfg.strip_steps)
    near = degrade.nearest_upsample(lr_img, cfg.sr.scale)
    return jnp.stack([near, u, sr, hr], axis=1)  # (B, 4, H, W, C)

  return jax.jit(strip)


def sr_mesh(batch_size: int):
  """A data mesh over as many of this process' devices as divide `batch_size`."""
  if jax.process_count() > 1:
    raise NotImplementedError("SR training runs in one process (any number of devices).")
  n = max(d for d in range(1, jax.device_count() + 1) if batch_size % d == 0)
  return parallel.make_mesh(jax.devices()[:n])


def _say(log):
  return log if log is not None else (lambda *a, **k: None)


def train_sr(cfg: SRTrainConfig, workdir: str, *, progress: bool = True, log=print,
             source=None):
  """Trains (or resumes) an SR3 run in `workdir` (the loop of `edmjax.train.runner`).

  Writes `config.json` (σ_data resolved), `checkpoints/<step>` (orbax, via
  `edmjax.train.checkpoint`), `metrics.jsonl`, `loss.png` and
  `strips/step_<step>.png` (rows: LR (nearest) | bicubic | headstart | HR, on fixed
  held-out crops). Calling it again resumes from the newest checkpoint and sees
  the same batches.

  Returns:
    (final TrainState, resolved config).
  """
  say = _say(log)
  validate_sr(cfg)
  runner.check_writable(workdir)
  if source is None:
    source, held = load_sr_data(cfg)
  else:
    held = None
  cfg_path = os.path.join(workdir, "config.json")
  if cfg.loss.sigma_data is None:
    if os.path.exists(cfg_path):
      sd = read_sr_config(workdir).loss.sigma_data
    else:
      sd = round(estimate_sr_sigma_data(source, cfg), 4)
    cfg = dataclasses.replace(cfg, loss=dataclasses.replace(cfg.loss, sigma_data=sd))
  image_shape = tuple(int(v) for v in source.get(np.arange(1))[0].shape[1:])
  if cfg.data.image_shape is not None and tuple(cfg.data.image_shape) != image_shape:
    raise ValueError(f"data.image_shape={cfg.data.image_shape} is set, but the data has "
                     f"{image_shape}; leave it None (it is read from the data).")
  cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, image_shape=image_shape))
  model = model_lib.build_sr_net(cfg.net, patch=image_shape[0], channels=image_shape[2],
                                 noise_aug=cfg.sr.noise_aug)
  optimizer = optim.make_optimizer(cfg.optim)
  init = jax.jit(lambda k: init_sr_state(model, optimizer, k, image_shape,
                                         noise_aug=cfg.sr.noise_aug))
  state, mgr, at = runner.start(
      workdir, lambda: init(jax.random.key_data(jax.random.key(cfg.seed))),
      keep=cfg.keep_checkpoints)
  # Written once the checkpoint is restored: a failed resume leaves the folder as it was.
  runner.write_text(cfg_path, config_lib.to_json(cfg))
  monitor.truncate_metrics(os.path.join(workdir, "metrics.jsonl"), 0 if at is None else at)
  if at is not None:
    say(f"resumed from {workdir}/checkpoints/{at}")
  else:
    n_params = sum(int(x.size) for x in jax.tree.leaves(state.params))
    say(f"new SR run in {workdir}: {n_params:,} parameters, patches {image_shape}, "
        f"{cfg.sr.scale}x, sigma_data {cfg.loss.sigma_data}")
  mesh = sr_mesh(cfg.batch_size)
  rep, rows = parallel.replicated_sharding(mesh), parallel.batch_sharding(mesh)
  state = parallel.replicate(state, mesh)
  step_fn = jax.jit(make_sr_train_step(model, cfg, optimizer), in_shardings=(rep, rows),
                    out_shardings=(rep, rep), donate_argnums=0)
  batches = pipeline.BatchIterator(source, batch_size=cfg.batch_size, seed=cfg.data.seed,
                                   position=int(state.position))
  writer = monitor.MetricsWriter(os.path.join(workdir, "metrics.jsonl"))
  t_start = time.time()
  clock = {"step": None, "time": t_start}  # the last log line's step and time

  def log_metrics(b):
    host = jax.device_get(b.metrics)
    if int(host["skipped_total"]) and not bool(host["finite"]):
      say(f"step {b.step}: non-finite loss, update skipped "
          f"({int(host['skipped_total'])} so far)")
    now = time.time()
    rec = {k: float(v) for k, v in host.items()}
    rec.update(step=b.step, kimg=batches.position / 1000, time=now,
               elapsed_s=now - t_start,
               steps_per_sec=None if clock["step"] is None else
               (b.step - clock["step"]) / max(now - clock["time"], 1e-9))
    clock.update(step=b.step, time=now)
    writer.write(rec)
    if b.progress is not None:
      b.progress.set_postfix(loss=f"{rec['loss']:.4f}")

  hooks = [runner.Hook(log_metrics, every=max(cfg.log_every, 1)),
           runner.checkpoint_hook(mgr, every=cfg.checkpoint_every)]
  if held is not None and cfg.sample_every >= 0:
    hooks.append(runner.Hook(_strip_hook(model, cfg, held, image_shape[0], workdir),
                             every=cfg.sample_every))

  def out_of_time(step):
    return cfg.max_minutes > 0 and time.time() - t_start > 60 * cfg.max_minutes

  try:
    state, step = runner.run(
        state, lambda st, hr: step_fn(st, parallel.global_batch(hr, mesh)),
        lambda: next(batches).images, end=cfg.total_steps, hooks=hooks, stop=out_of_time,
        progress=runner.progress_bar(cfg.total_steps, int(state.step), progress))
  finally:
    checkpoint.close(mgr)
    writer.close()
  if step < cfg.total_steps:
    say(f"stopping at step {step}: max_minutes={cfg.max_minutes} reached")
  monitor.plot_losses(monitor.read_metrics(os.path.join(workdir, "metrics.jsonl")),
                      os.path.join(workdir, "loss.png"))
  with open(os.path.join(workdir, "train_time.json"), "w", encoding="utf-8") as f:
    json.dump({"steps": step, "seconds_this_call": time.time() - t_start}, f)
  return state, cfg


def _strip_hook(model, cfg: SRTrainConfig, held, patch: int, workdir: str):
  """The SR run's evaluation hook: headstart strips of four fixed held-out crops."""
  strip = _strip_fn(model, cfg)
  h, w = held.shape[1], held.shape[2]
  tops = [(h - patch) // 2, (h - patch) // 4]
  lefts = [(w - patch) // 2, (w - patch) // 4]
  strip_hr = jnp.asarray(np.concatenate([held[:1, t:t + patch, l:l + patch]
                                         for t in tops for l in lefts]))

  def write(b):
    rows = np.asarray(strip(b.state.ema_params, b.state.buffers, strip_hr,
                            jax.random.key(0)))
    n, k = rows.shape[:2]
    monitor.save_grid(os.path.join(workdir, "strips", f"step_{b.step:07d}.png"),
                      np.clip(rows.reshape((n * k,) + rows.shape[2:]), -1, 1), cols=k)

  return write


def load_sr(workdir: str, *, step: int | None = None):
  """(config, model, TrainState) of a run's newest (or given) checkpoint.

  Reads config.json and the checkpoint; runs saved before config.json recorded
  `data.image_shape` (and not on 'photos') read the shape from their data once.
  """
  if not os.path.exists(os.path.join(workdir, "config.json")):
    raise FileNotFoundError(f"{workdir!r} has no config.json; is it an SR work directory "
                            "(experiments/train_sr3.py --workdir)?")
  cfg = read_sr_config(workdir)
  if cfg.data.image_shape is not None:
    patch, _, channels = cfg.data.image_shape
  elif cfg.data.name == "photos":
    patch, channels = cfg.data.patch, 3
  else:
    src, _ = load_sr_data(cfg)
    first = src.get(np.arange(1))[0]
    patch, channels = first.shape[1], first.shape[3]
  model = model_lib.build_sr_net(cfg.net, patch=patch, channels=channels,
                                 noise_aug=cfg.sr.noise_aug)
  optimizer = optim.make_optimizer(cfg.optim)
  target = jax.jit(lambda k: init_sr_state(model, optimizer, k, (patch, patch, channels),
                                           noise_aug=cfg.sr.noise_aug))(
      jax.random.key_data(jax.random.key(cfg.seed)))
  state, step = checkpoint.load(workdir, target, step=step, keep=cfg.keep_checkpoints)
  return cfg, model, state
