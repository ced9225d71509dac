"""Training configuration: frozen (hashable) dataclasses, usable as jit static arguments.

A :class:`TrainConfig` holds everything that changes shapes or code paths of a run:
the network (:class:`NetConfig`), the data (:class:`DataConfig`), the objective
(:class:`LossConfig`), Adam and EMA (:class:`OptimConfig`), the sample grids
(:class:`SampleConfig`) and the loop's own settings. Defaults follow NVlabs/edm's
`train.py` / `training/training_loop.py` (CIFAR-10 DDPM++) unless stated.

Configs round-trip through JSON (`to_dict` / `from_dict`) and accept command-line
style overrides `"net.model_channels=32"` (`apply_overrides`), parsed by the type of
the field.

Validation happens in two places, both before anything slow. Each dataclass checks
its own fields when it is made (`__post_init__`: types, ranges, choices), so a bad
value such as `net.dropout=1.5` or `batch_size=abc` is a ValueError naming the field
at once. `validate(cfg)` checks what involves several fields (σ_min < σ_max, the
sampler against the objective, β_start < β_end; with the data's `image_shape`, the
resolution against the network's levels); `apply_overrides` calls it on the result,
and a script calls it once its config is complete.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import types
import typing
from typing import Any

from edmjax import _checks
from edmjax import sampling

__all__ = [
    "NetConfig", "DataConfig", "LossConfig", "OptimConfig", "SampleConfig", "TrainConfig",
    "OBJECTIVES", "ARCHS", "to_dict", "from_dict", "to_json", "from_json",
    "apply_overrides", "field_names", "validate", "check_geometry",
]

OBJECTIVES = ("edm", "vp", "ve", "ddpm", "edm2")
_FLOAT32_MAX = 3.4028234663852886e38
ARCHS = ("ddpmpp", "ncsnpp", "adm", "edm2")
DTYPES = ("float32", "bfloat16")


def _check_int_tuple(name: str, value, minimum: int, *, nonempty: bool = False,
                     example: str = "") -> None:
  hint = f" (e.g. {example})" if example else ""
  if not isinstance(value, tuple):
    raise ValueError(f"{name} must be a tuple of ints{hint}, got {value!r}.")
  if nonempty and not value:
    raise ValueError(f"{name}={value!r} is empty; it needs at least one entry{hint}.")
  for v in value:
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
      raise ValueError(f"{name}={value!r} holds {v!r}; every entry must be an int "
                       f">= {minimum}{hint}.")


def _check_bool(name: str, value) -> None:
  if not isinstance(value, bool):
    raise ValueError(f"{name} must be true or false, got {value!r}.")



@dataclasses.dataclass(frozen=True)
class NetConfig:
  """The raw network F_θ: NVlabs' `--arch` presets and the SongUNet/DhariwalUNet args.

  `arch='ddpmpp'` and `'ncsnpp'` build `edmjax.nn.SongUNet` with the paper's presets
  (positional/standard/standard, resample (1, 1) vs Fourier/residual, (1, 3, 3, 1));
  `'adm'` builds `edmjax.nn.DhariwalUNet`; `'edm2'` builds `edmjax.nn.EDM2UNet`
  (NVlabs/edm2's magnitude-preserving UNet with its uncertainty head; train it with
  `loss.objective='edm2'`), which also reads the fields below `dtype` (NVlabs/edm2's
  defaults; `channel_mult_noise` None is `channel_mult[0]`). `dtype` is the compute
  dtype of the convolutional path ('float32' or 'bfloat16'); parameters always stay
  float32.
  """
  arch: str = "ddpmpp"
  model_channels: int = 128
  channel_mult: tuple[int, ...] = (2, 2, 2)
  channel_mult_emb: int = 4
  num_blocks: int = 4
  attn_resolutions: tuple[int, ...] = (16,)
  dropout: float = 0.13
  label_dropout: float = 0.0
  dtype: str = "float32"
  # EDM2UNet only (NVlabs/edm2 `UNet` and `Block` arguments, `Precond.logvar_channels`).
  channel_mult_noise: int | None = None
  label_balance: float = 0.5
  concat_balance: float = 0.5
  res_balance: float = 0.3
  attn_balance: float = 0.3
  clip_act: float | None = 256.0
  channels_per_head: int = 64
  logvar_channels: int = 128

  def __post_init__(self):
    _checks.check_choice("net.arch", self.arch, ARCHS)
    _checks.check_choice("net.dtype", self.dtype, DTYPES)
    _checks.check_int_at_least("net.model_channels", self.model_channels, 1)
    _check_int_tuple("net.channel_mult", self.channel_mult, 1, nonempty=True,
                     example="(1, 2, 2): one multiplier per resolution level")
    _checks.check_int_at_least("net.channel_mult_emb", self.channel_mult_emb, 1)
    _checks.check_int_at_least("net.num_blocks", self.num_blocks, 1)
    _check_int_tuple("net.attn_resolutions", self.attn_resolutions, 1,
                     example="(16,), or () for none")
    _checks.check_number("net.dropout", self.dropout, 0.0, 1.0, high_open=True)
    _checks.check_number("net.label_dropout", self.label_dropout, 0.0, 1.0)


@dataclasses.dataclass(frozen=True)
class DataConfig:
  """Which images, at which size, and how they are fed (see `edmjax.data`).

  `name` is anything `edmjax.data.sources.load_dataset` accepts ('digits',
  'lfw_subset', 'mnist', 'cifar10', 'tfds:<name>', 'folder:<path>'). The last
  `holdout` examples (in the source's order) are never trained on; the loop uses them
  as real references for the nearest-neighbour check of its samples. `cond` trains a
  class-conditional model (one-hot labels, `label_dim` = the source's classes).
  `augment_p` > 0 applies EDM's augmentation (`edmjax.data.augmentation`,
  `edm_augment_config(augment_p)`: NVlabs' AugmentPipe) and feeds its 9 labels to
  the net (`augment_dim` 9); 0 disables it.

  `image_shape` (H, W, C) and `num_classes` describe the data the net was built for;
  like `loss.sigma_data` they are filled in from the data when the run starts (None:
  not yet known) and saved in the run's config.json, so that a trained run is loaded
  for sampling without its data (`edmjax.train.loop.load_run`). Set by hand, they
  are checked against the data.
  """
  name: str = "digits"
  resolution: int | None = None
  channels: int | None = None
  split: str = "train"
  data_dir: str | None = None
  holdout: int = 0
  seed: int = 0
  cond: bool = False
  augment_p: float = 0.0
  image_shape: tuple[int, ...] | None = None
  num_classes: int | None = None

  def __post_init__(self):
    if self.image_shape is not None and (
        len(self.image_shape) != 3 or min(self.image_shape) < 1):
      raise ValueError(f"data.image_shape={self.image_shape} must be (H, W, C) of "
                       "positive sizes, or None (read from the data).")
    if self.num_classes is not None:
      _checks.check_int_at_least("data.num_classes", self.num_classes, 0)
    if not isinstance(self.name, str):
      raise ValueError(f"data.name={self.name!r} must name a data set, e.g. 'digits', "
                       "'mnist', 'tfds:<name>' or 'folder:<path>'.")
    if self.resolution is not None:
      _checks.check_int_at_least("data.resolution", self.resolution, 1)
    if self.channels is not None:
      _checks.check_choice("data.channels", self.channels, (1, 3, None))
    _checks.check_int_at_least("data.holdout", self.holdout, 0)
    _checks.check_int_at_least("data.seed", self.seed, 0)
    _check_bool("data.cond", self.cond)
    _checks.check_number("data.augment_p", self.augment_p, 0.0, 1.0)


@dataclasses.dataclass(frozen=True)
class LossConfig:
  """The objective: 'edm', 'vp', 've' (through `make_denoiser`), 'ddpm' (ε-prediction)
  or 'edm2' (EDM's preconditioning, σ density with `P_mean`, `P_std` and the loss
  with learned uncertainty, `edmjax.losses.edm2_loss`; needs `net.arch='edm2'`).

  `sigma_data=None` means "estimate it from the data" (the loop resolves it with
  `edmjax.data.stats.estimate_sigma_data` and records the value in the workdir's
  config.json); the step itself needs a number.
  """
  objective: str = "edm"
  # EDM (Karras et al. 2022, Table 1).
  P_mean: float = -1.2
  P_std: float = 1.2
  sigma_data: float | None = 0.5
  # VP (Song et al. 2021).
  beta_d: float = 19.9
  beta_min: float = 0.1
  epsilon_t: float = 1e-5
  # VE.
  sigma_min: float = 0.02
  sigma_max: float = 100.0
  # DDPM (Ho et al. 2020): linear β schedule with T steps.
  ddpm_T: int = 1000
  ddpm_beta_start: float = 1e-4
  ddpm_beta_end: float = 0.02
  ddpm_schedule: str = "linear"

  def __post_init__(self):
    _checks.check_choice("loss.objective", self.objective, OBJECTIVES)
    _checks.check_choice("loss.ddpm_schedule", self.ddpm_schedule, ("linear", "cosine"))
    _checks.check_number("loss.P_mean", self.P_mean)
    _checks.check_number("loss.P_std", self.P_std, 0.0, low_open=True)
    if self.sigma_data is not None:
      _checks.check_number("loss.sigma_data", self.sigma_data, 0.0, low_open=True)
    _checks.check_number("loss.beta_d", self.beta_d, 0.0, low_open=True)
    _checks.check_number("loss.beta_min", self.beta_min, 0.0)
    _checks.check_number("loss.epsilon_t", self.epsilon_t, 0.0, 1.0, low_open=True,
                         high_open=True)
    _checks.check_number("loss.sigma_min", self.sigma_min, 0.0, low_open=True)
    _checks.check_number("loss.sigma_max", self.sigma_max, 0.0, low_open=True)
    _checks.check_int_at_least("loss.ddpm_T", self.ddpm_T, 1)
    _checks.check_number("loss.ddpm_beta_start", self.ddpm_beta_start, 0.0, 1.0,
                         low_open=True, high_open=True)
    _checks.check_number("loss.ddpm_beta_end", self.ddpm_beta_end, 0.0, 1.0,
                         low_open=True, high_open=True)


@dataclasses.dataclass(frozen=True)
class OptimConfig:
  """Adam, learning-rate ramp-up and EMA exactly as NVlabs/edm's training loop.

  lr(nimg) = lr · min(nimg / max(lr_rampup_kimg·1000, 1e-8), 1) and
  β_ema = 0.5^(batch / max(min(ema_halflife_kimg·1000, nimg·ema_rampup_ratio), 1e-8))
  (no ramp-up when `ema_rampup_ratio` is None), with nimg the images consumed before
  the step.

  EDM2 (NVlabs/edm2): `lr_decay_batches` > 0 selects its `learning_rate_schedule`,
  lr / sqrt(max(nimg / (lr_decay_batches · batch), 1)) · min(nimg / (lr_rampup_kimg ·
  1000), 1) (its `ref_lr`, `ref_batches`, `rampup_Mimg`); `ema_stds` are the σ_rel of
  power-function EMA tracks kept beside the EMA above (`edmjax.train.phema`; EDM2
  trains with 0.050 and 0.100, `edmjax.train.phema.DEFAULT_STDS`).
  """
  lr: float = 10e-4
  beta1: float = 0.9
  beta2: float = 0.999
  eps: float = 1e-8
  lr_rampup_kimg: float = 10000.0
  ema_halflife_kimg: float = 500.0
  ema_rampup_ratio: float | None = 0.05
  lr_decay_batches: float = 0.0
  ema_stds: tuple[float, ...] = ()

  def __post_init__(self):
    _checks.check_number("optim.lr", self.lr, 0.0, low_open=True)
    if self.lr > _FLOAT32_MAX:  # the step computes lr(nimg) in float32: it would be inf
      raise ValueError(f"optim.lr={self.lr!r} is not allowed; it overflows float32 (the "
                       f"step's dtype), so it must be <= {_FLOAT32_MAX:.4g}.")
    _checks.check_number("optim.beta1", self.beta1, 0.0, 1.0, high_open=True)
    _checks.check_number("optim.beta2", self.beta2, 0.0, 1.0, high_open=True)
    _checks.check_number("optim.eps", self.eps, 0.0, low_open=True)
    _checks.check_number("optim.lr_rampup_kimg", self.lr_rampup_kimg, 0.0)
    _checks.check_number("optim.ema_halflife_kimg", self.ema_halflife_kimg, 0.0)
    if self.ema_rampup_ratio is not None:
      _checks.check_number("optim.ema_rampup_ratio", self.ema_rampup_ratio, 0.0,
                           low_open=True)
    _checks.check_nonnegative("optim.lr_decay_batches", self.lr_decay_batches)
    if len(set(self.ema_stds)) != len(self.ema_stds):
      raise ValueError(f"optim.ema_stds={self.ema_stds} has repeated values.")
    for s in self.ema_stds:
      if not 0 < s < 0.2887:
        raise ValueError(f"optim.ema_stds has {s}; a power-function EMA's σ_rel must lie "
                         "in (0, 0.2887).")


@dataclasses.dataclass(frozen=True)
class SampleConfig:
  """The periodic sample grids (EMA parameters), drawn with `edmjax.sampling.sample`.

  `sampler` is any name of `edmjax.sampling.SAMPLER_NAMES` but 'headstart' (the grids
  start from noise); `num_steps`, `sigma_min`, `sigma_max`, `rho` and `S_churn` are
  passed to the samplers that have them (None: the sampler's own default, e.g. 18
  steps from σ = 80 to 0.002 for 'edm', 50 steps for 'ddim') and `options` holds any
  other option as 'name=value' strings (e.g. ('eta=0.5',)). A
  DDPM run sampled with an EDM-family sampler goes through the VP bridge, its steps
  clipped and rounded to the run's σ table, as everywhere else. `spec()` is the
  `SamplerSpec`; seed s of the grid is seed `seed + s` (`edmjax.keys`).
  """
  sampler: str = "edm"
  num_images: int = 64
  num_steps: int | None = None
  sigma_min: float | None = None
  sigma_max: float | None = None
  rho: float | None = None
  S_churn: float | None = None
  seed: int = 0
  options: tuple[str, ...] = ()

  def __post_init__(self):
    if self.sampler == "headstart":
      raise ValueError("sample.sampler='headstart' starts from an image; the sample "
                       "grids start from noise: choose another sampler.")
    _checks.check_int_at_least("sample.num_images", self.num_images, 0)
    _checks.check_int_at_least("sample.seed", self.seed, 0)
    if self.seed + self.num_images > 2**32:
      raise ValueError(f"sample.seed={self.seed} + sample.num_images={self.num_images} "
                       "exceeds 2**32; seeds are uint32.")
    _checks.check_choice("sample.sampler", self.sampler, sampling.SAMPLER_NAMES)

  def spec(self) -> sampling.SamplerSpec:
    """The `SamplerSpec` of the grids (checked by `validate`, with the other fields).

    Raises:
      ValueError: an unknown sampler or a bad option, naming it as a config field
        (e.g. "sample.sigma_min=90.0 must be smaller than sigma_max=80.0").
    """
    _checks.check_choice("sample.sampler", self.sampler, sampling.SAMPLER_NAMES)
    has = sampling.SamplerSpec.options_of(self.sampler)
    fields = {"num_steps": self.num_steps, "sigma_min": self.sigma_min,
              "sigma_max": self.sigma_max, "rho": self.rho, "S_churn": self.S_churn}
    given = {k: v for k, v in fields.items() if k in has and v is not None}
    try:
      extra = sampling.SamplerSpec.parse(self.sampler, self.options)
      return sampling.SamplerSpec(self.sampler, **{**given, **dict(extra.options)})
    except ValueError as e:
      text = str(e)
      named = re.match(r"[A-Za-z_]\w*=", text)
      raise ValueError(("sample." + text) if named else f"sample: {text}") from None


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """A whole training run.

  Attributes:
    batch_size: global batch over all devices and processes.
    accum_steps: microbatches per step (`lax.scan`); batch_size / accum_steps images
      are in memory at once. Must divide batch_size (and per-device shards).
    total_steps: optimizer steps of the run (a step consumes `batch_size` images).
    seed: initialisation and training randomness (σ, noise, dropout, augmentation).
    max_consecutive_bad_steps: the loop stops with an error after this many skipped
      (non-finite) steps in a row.
    log_every, checkpoint_every, sample_every: intervals in steps (0: only at the end).
    keep_checkpoints: how many recent checkpoints orbax keeps (>= 1: a run always
      keeps its newest checkpoint).
    snapshot_nimg: every this many training images, each EMA track of
      `optim.ema_stds` is saved to `<workdir>/snapshots` (`edmjax.train.snapshots`,
      the input of post-hoc EMA reconstruction); a multiple of `batch_size`; 0: none.
  """
  net: NetConfig = NetConfig()
  data: DataConfig = DataConfig()
  loss: LossConfig = LossConfig()
  optim: OptimConfig = OptimConfig()
  sample: SampleConfig = SampleConfig()
  batch_size: int = 512
  accum_steps: int = 1
  total_steps: int = 1000
  seed: int = 0
  max_consecutive_bad_steps: int = 10
  log_every: int = 50
  checkpoint_every: int = 1000
  sample_every: int = 0
  keep_checkpoints: int = 3
  snapshot_nimg: int = 0

  def __post_init__(self):
    _checks.check_int_at_least("batch_size", self.batch_size, 1)
    _checks.check_int_at_least("accum_steps", self.accum_steps, 1)
    _checks.check_int_at_least("total_steps", self.total_steps, 0)
    _checks.check_int_at_least("max_consecutive_bad_steps", self.max_consecutive_bad_steps, 1)
    _checks.check_int_at_least("seed", self.seed, 0)
    _checks.check_int_at_least("log_every", self.log_every, 0)
    _checks.check_int_at_least("checkpoint_every", self.checkpoint_every, 0)
    _checks.check_int_at_least("sample_every", self.sample_every, 0)
    _checks.check_int_at_least("keep_checkpoints", self.keep_checkpoints, 1)
    _checks.check_int_at_least("snapshot_nimg", self.snapshot_nimg, 0)
    if self.snapshot_nimg and (self.snapshot_nimg % self.batch_size
                               or not self.optim.ema_stds):
      raise ValueError(f"snapshot_nimg={self.snapshot_nimg} needs EMA tracks "
                       f"(optim.ema_stds={self.optim.ema_stds}) and must be a multiple of "
                       f"batch_size={self.batch_size}.")
    if (self.net.arch == "edm2") != (self.loss.objective == "edm2"):
      raise ValueError(f"net.arch={self.net.arch!r} with loss.objective="
                       f"{self.loss.objective!r}: the EDM2 network and the EDM2 loss "
                       "(learned uncertainty) go together; set both to 'edm2' or neither.")
    if self.net.arch == "edm2" and self.data.augment_p > 0:
      raise ValueError(f"data.augment_p={self.data.augment_p} with net.arch='edm2': "
                       "EDM2UNet takes no augmentation labels; set data.augment_p=0.")
    if self.batch_size % self.accum_steps:
      raise ValueError(f"batch_size={self.batch_size} must be a multiple of "
                       f"accum_steps={self.accum_steps}.")


# ----------------------------------------------------------------------------- validation


def check_geometry(net: NetConfig, image_shape, what: str = "the images") -> None:
  """Raises ValueError unless `net` can run on square images of `image_shape` (H, W, C).

  The UNet halves the resolution len(channel_mult) − 1 times and its decoder must
  come back to the same size, so the resolution must be divisible by
  2^(len(channel_mult) − 1); every entry of `attn_resolutions` must be one of the
  net's resolutions (otherwise no attention layer would be built for it).
  """
  h, w = int(image_shape[0]), int(image_shape[1])
  if h != w:
    raise ValueError(f"{what} are {h}x{w}; the networks take square images.")
  levels = len(net.channel_mult)
  factor = 2 ** (levels - 1)
  if h % factor:
    lo, hi = (h // factor) * factor, (h // factor + 1) * factor
    raise ValueError(
        f"{what} are {h}x{h}, which net.channel_mult={net.channel_mult} "
        f"({levels} levels) cannot halve {levels - 1} time(s) and restore: the "
        f"resolution must be a multiple of {factor}. Use a resolution of "
        f"{', '.join(str(r) for r in (lo, hi) if r > 0)} (data.resolution) or fewer levels.")
  resolutions = tuple(h >> i for i in range(levels))
  missing = [r for r in net.attn_resolutions if r not in resolutions]
  if missing:
    raise ValueError(
        f"net.attn_resolutions={net.attn_resolutions} asks for attention at {missing[0]}, "
        f"which is not a resolution of this network on {what} ({h}x{h}: levels "
        f"{resolutions}); no attention layer would be built there. Use resolutions "
        "among the levels, or () for none.")


def validate(cfg: "TrainConfig", *, image_shape=None) -> "TrainConfig":
  """Checks what involves several fields of `cfg`; returns `cfg`.

  Each field is already checked by its dataclass. This adds: total_steps >= 1 (a run
  of no step writes no checkpoint; the dataclass allows 0, the key of compiled
  programs); the sample grids' `SamplerSpec` (`SampleConfig.spec`: the sampler's
  options, σ_min < σ_max with the sampler's defaults for what is None); σ_min < σ_max
  of the VE loss; β_start < β_end of a linear DDPM schedule; and, when the image
  geometry is known (`image_shape` (H, W, C), or `data.image_shape` /
  `data.resolution`), `check_geometry`.

  Raises:
    ValueError: naming the field(s), the value(s) and what is allowed.
  """
  sc, lc = cfg.sample, cfg.loss
  if cfg.total_steps < 1:
    raise ValueError(f"total_steps={cfg.total_steps} is not allowed; a run must take at "
                     "least 1 step (total_steps >= 1).")
  sc.spec()  # the grids' sampler and every option (σ range, steps, ...)
  if lc.objective == "ve" and not lc.sigma_min < lc.sigma_max:
    raise ValueError(f"loss.sigma_min={lc.sigma_min!r} must be smaller than "
                     f"loss.sigma_max={lc.sigma_max!r}.")
  if lc.objective == "ddpm" and lc.ddpm_schedule == "linear" and \
      not lc.ddpm_beta_start < lc.ddpm_beta_end:
    raise ValueError(f"loss.ddpm_beta_start={lc.ddpm_beta_start!r} must be smaller than "
                     f"loss.ddpm_beta_end={lc.ddpm_beta_end!r}.")
  if image_shape is None and cfg.data.image_shape is not None:
    image_shape = cfg.data.image_shape
  if image_shape is None and cfg.data.resolution is not None:
    image_shape = (cfg.data.resolution, cfg.data.resolution)
  if image_shape is not None:
    check_geometry(cfg.net, image_shape)
  return cfg


# ----------------------------------------------------------------------------- dict / JSON


def to_dict(config) -> dict:
  """A nested dict of plain values (tuples become lists)."""
  return dataclasses.asdict(config)


def _convert(tp, value, name):
  """Converts a JSON / string value to the annotated type `tp`."""
  origin = typing.get_origin(tp)
  if origin in (typing.Union, types.UnionType):
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if value is None or (isinstance(value, str) and value.lower() == "none"):
      return None
    return _convert(args[0], value, name)
  if origin is tuple:
    (elem, *_) = typing.get_args(tp)
    if isinstance(value, str):
      value = [v for v in value.strip("()[] ").split(",") if v.strip()]
    return tuple(_convert(elem, v, name) for v in value)
  if dataclasses.is_dataclass(tp):
    return _from_dict(tp, value, name)
  if tp is bool:
    if isinstance(value, str):
      if value.lower() in ("1", "true", "yes", "on"):
        return True
      if value.lower() in ("0", "false", "no", "off"):
        return False
      raise ValueError(f"{name}: cannot read {value!r} as a bool (true/false).")
    return bool(value)
  if tp is int:
    if isinstance(value, str):
      text = value.replace("_", "")
      try:
        return int(text)
      except ValueError:
        try:
          f = float(text)  # allow "1e3"
        except ValueError:
          f = math.nan
        if not math.isfinite(f) or f != int(f):
          raise ValueError(f"{name}={value!r} is not an integer.") from None
        return int(f)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
      raise ValueError(f"{name}={value!r} is not an integer.")
    return int(value)
  if tp is float:
    if isinstance(value, bool):
      raise ValueError(f"{name}={value!r} is not a number.")
    try:
      return float(value)
    except (TypeError, ValueError):
      raise ValueError(f"{name}={value!r} is not a number.") from None
  if tp is str:
    return str(value)
  raise TypeError(f"{name}: unsupported field type {tp!r}.")  # pragma: no cover


def _hints(cls):
  return typing.get_type_hints(cls)


def _from_dict(cls, d: dict, prefix: str = ""):
  hints = _hints(cls)
  names = {f.name for f in dataclasses.fields(cls)}
  unknown = set(d) - names
  if unknown:
    raise ValueError(f"Unknown field(s) {sorted(unknown)} in {prefix or cls.__name__}; "
                     f"fields are {sorted(names)}.")
  kwargs = {k: _convert(hints[k], v, f"{prefix}{k}") for k, v in d.items()}
  return cls(**kwargs)


def from_dict(d: dict, cls=None):
  """The inverse of `to_dict` (a `TrainConfig` unless `cls` is given)."""
  return _from_dict(cls or TrainConfig, d)


def to_json(config) -> str:
  return json.dumps(to_dict(config), indent=2, sort_keys=True)


def from_json(text: str, cls=None):
  return from_dict(json.loads(text), cls)


# ----------------------------------------------------------------------------- overrides


def field_names(config) -> list[str]:
  """Every settable dotted field name of a (nested) config, e.g. 'net.model_channels'."""
  out = []
  for f in dataclasses.fields(config):
    value = getattr(config, f.name)
    if dataclasses.is_dataclass(value):
      out.extend(f"{f.name}.{n}" for n in field_names(value))
    else:
      out.append(f.name)
  return out


def _set(config, path: list[str], text: str, full: str):
  hints = _hints(type(config))
  names = [f.name for f in dataclasses.fields(config)]
  head = path[0]
  if head not in names:
    raise KeyError(head)
  current = getattr(config, head)
  if len(path) == 1:
    if dataclasses.is_dataclass(current):
      raise KeyError(head)
    value = _convert(hints[head], text, full)
  else:
    if not dataclasses.is_dataclass(current):
      raise KeyError(head)
    value = _set(current, path[1:], text, full)
  return dataclasses.replace(config, **{head: value})


def apply_overrides(config, overrides) -> Any:
  """Returns `config` with `"a.b=value"` overrides applied, each parsed by its field type.

  Tuples are written `1,2,2` (or `(1, 2, 2)`), None as `none`, bools as true/false.

  Raises:
    ValueError: for a malformed override, an unknown field (the message lists all
      fields), a value of the wrong type or out of range (naming the field), or, for
      a `TrainConfig`, a combination `validate` rejects.
  """
  for item in overrides or ():
    if "=" not in item:
      raise ValueError(f"Override {item!r} must look like field=value, e.g. "
                       "net.model_channels=32.")
    name, text = item.split("=", 1)
    name = name.strip()
    try:
      config = _set(config, name.split("."), text.strip(), name)
    except KeyError:
      raise ValueError(f"Unknown field {name!r}; fields are: "
                       + ", ".join(field_names(config)) + ".") from None
  if isinstance(config, TrainConfig):
    validate(config)
  return config
