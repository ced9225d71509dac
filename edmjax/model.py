"""Model values: a denoiser, or a DDPM ε-model, that carries the noise range it supports.

NVlabs/edm's networks expose `net.sigma_min`, `net.sigma_max` and `net.round_sigma`,
and its `generate.py` clips every sampler's σ range to them ("σ_min = max(σ_min,
net.sigma_min)"); k-diffusion's `DiscreteSchedule` carries its σ table. A bare
`denoise(x, sigma)` forces every caller to pass the range by hand; a `Denoiser`
carries it, so that the one sampling entry point (`edmjax.sampling.sample`) applies
the rule once, in one place.

* `Denoiser`: D(x; σ) (optionally class-conditional) with `sigma_min`, `sigma_max`
  and `round_sigma` (None for continuous models: the identity; the nearest level of
  the table for discrete ones, e.g. `schedules.iddpm_round_sigma` or a DDPM σ table).
  It is callable like the function it wraps, so it goes wherever a denoiser goes.
* `EpsModel`: a DDPM ε-model ε(x_t, t) with its β table (float64, host).
  `edmjax.ddpm.ddpm_as_denoiser` turns one into a `Denoiser` whose range and
  rounding are the ε-model's own σ table.
* `edmjax.sampling.as_model` makes a `Denoiser` of any of them or of a bare callable.

Images are NHWC; `sigma` has shape (batch,). Class labels are one-hot
`(batch, label_dim)` (NVlabs' convention); `labels_one_hot` also accepts integer
labels `(batch,)`.

Example:
  >>> import jax, jax.numpy as jnp
  >>> from edmjax import model, oracle
  >>> net = model.Denoiser(oracle.gaussian_denoiser(0.0, 0.5), sigma_min=0.02,
  ...                      sigma_max=100.0)
  >>> net.sigma_range(0.002, 80.0)          # NVlabs' rule: clip to what the net supports
  (0.02, 80.0)
  >>> net(jnp.zeros((2, 4, 4, 1)), jnp.ones((2,))).shape
  (2, 4, 4, 1)
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from edmjax._arrays import Array
from edmjax import _checks

__all__ = ["Denoiser", "EpsModel", "labels_one_hot"]


def labels_one_hot(class_labels, label_dim: int, batch: int):
  """Class labels as one-hot float32 `(batch, label_dim)`, or None.

  Accepts None, integer labels `(batch,)` in [0, label_dim), or one-hot / soft
  labels `(batch, label_dim)`.

  Raises:
    ValueError: labels for an unconditional model, the wrong shape, or (concrete)
      integer labels outside [0, label_dim) — each message names the value.
  """
  if class_labels is None:
    return None
  if label_dim == 0:
    raise ValueError(
        "class_labels were given, but the model is unconditional (label_dim=0); "
        "pass class_labels=None.")
  labels = jnp.asarray(class_labels)
  if labels.ndim == 1 and jnp.issubdtype(labels.dtype, jnp.integer):
    if labels.shape != (batch,):
      raise ValueError(f"class_labels has shape {labels.shape}; expected ({batch},) "
                       f"integer labels or ({batch}, {label_dim}) one-hot labels.")
    v = _checks.concrete_value(labels)
    if v is not None and v.size and (v.min() < 0 or v.max() >= label_dim):
      bad = v[(v < 0) | (v >= label_dim)][0]
      raise ValueError(f"class label {int(bad)} is not allowed; the model has "
                       f"label_dim={label_dim} classes (0 to {label_dim - 1}).")
    return jax.nn.one_hot(labels, label_dim, dtype=jnp.float32)
  if labels.shape != (batch, label_dim):
    raise ValueError(f"class_labels has shape {labels.shape}; expected ({batch}, "
                     f"{label_dim}) one-hot labels or ({batch},) integer labels.")
  return labels.astype(jnp.float32)


def _float(name, v):
  v = float(v)
  if math.isnan(v) or v < 0:
    raise ValueError(f"{name}={v!r} is not allowed; it must be a noise level >= 0.")
  return v


@dataclasses.dataclass(frozen=True, eq=False)
class Denoiser:
  """D(x; σ) with the noise range it supports (NVlabs' `net.sigma_min/max/round_sigma`).

  Attributes:
    fn: `fn(x, sigma)` or, for a class-conditional model (label_dim > 0),
      `fn(x, sigma, class_labels)` with one-hot `(B, label_dim)` labels or None
      (unconditional, as NVlabs' preconditioners pass zeros); NHWC `x`, `sigma`
      of shape (B,).
    sigma_min, sigma_max: the noise levels the model supports; samplers clip their
      range to [sigma_min, sigma_max] (`sigma_range`). 0 and inf for continuous
      EDM models.
    round_sigma: σ ↦ the nearest supported level, for NumPy (float64, host) and JAX
      inputs alike; None is the identity (continuous models).
    label_dim: number of classes (0: unconditional).
    eps: the DDPM ε-model this denoiser bridges, when it is one (so that DDPM's
      ancestral and DDIM samplers use the ε-model itself).
  """
  fn: Callable[..., Array]
  sigma_min: float = 0.0
  sigma_max: float = math.inf
  round_sigma: Callable[[Any], Any] | None = None
  label_dim: int = 0
  eps: "EpsModel | None" = None

  def __post_init__(self):
    if not callable(self.fn):
      raise ValueError(f"Denoiser.fn must be callable, got {type(self.fn).__name__}.")
    lo = _float("sigma_min", self.sigma_min)
    hi = _float("sigma_max", self.sigma_max)
    if not lo < hi:
      raise ValueError(f"sigma_min={lo!r} must be below sigma_max={hi!r}.")
    _checks.check_int_at_least("label_dim", self.label_dim, 0)
    object.__setattr__(self, "sigma_min", lo)
    object.__setattr__(self, "sigma_max", hi)

  def __call__(self, x, sigma, class_labels=None):
    """D(x; σ) (with `class_labels` for a conditional model)."""
    if self.label_dim == 0:
      if class_labels is not None:
        labels_one_hot(class_labels, 0, x.shape[0])  # raises the clear error
      return self.fn(x, sigma)
    return self.fn(x, sigma, labels_one_hot(class_labels, self.label_dim, x.shape[0]))

  def with_labels(self, class_labels) -> "Denoiser":
    """This model with `class_labels` bound: an unconditional `Denoiser` fn(x, σ).

    None returns the model itself for an unconditional model, and the model with
    no labels (NVlabs' zeros) for a conditional one.
    """
    if self.label_dim == 0:
      if class_labels is not None:
        labels_one_hot(class_labels, 0, 0)
      return self
    eps = None if self.eps is None else self.eps.with_labels(class_labels)
    labels = None if class_labels is None else labels_one_hot(
        class_labels, self.label_dim, np.shape(class_labels)[0])

    def fn(x, sigma):
      return self.fn(x, sigma, labels)

    return dataclasses.replace(self, fn=fn, label_dim=0, eps=eps)

  def sigma_range(self, sigma_min, sigma_max) -> tuple[float, float]:
    """(max(σ_min, self.sigma_min), min(σ_max, self.sigma_max)), NVlabs' rule.

    Raises:
      ValueError: if the clipped range is empty, naming both ranges.
    """
    lo = max(float(sigma_min), self.sigma_min)
    hi = min(float(sigma_max), self.sigma_max)
    if not lo < hi:
      raise ValueError(
          f"The sampler's σ range [sigma_min={float(sigma_min)!r}, "
          f"sigma_max={float(sigma_max)!r}] does not overlap the range the model "
          f"supports [{self.sigma_min!r}, {self.sigma_max!r}].")
    return lo, hi

  def round(self, sigma):
    """round_sigma(σ), or σ itself for a continuous model."""
    return sigma if self.round_sigma is None else self.round_sigma(sigma)


@dataclasses.dataclass(frozen=True, eq=False)
class EpsModel:
  """A DDPM ε-model ε(x_t, t) with its β table (Ho et al. 2020).

  Attributes:
    fn: `fn(x_t, t)` or, when label_dim > 0, `fn(x_t, t, class_labels)`; NHWC
      `x_t`, integer `t` of shape (B,) in [0, T).
    betas: the β table, (T,) float64 on the host.
    label_dim: number of classes (0: unconditional).
  """
  fn: Callable[..., Array]
  betas: np.ndarray
  label_dim: int = 0

  def __post_init__(self):
    if not callable(self.fn):
      raise ValueError(f"EpsModel.fn must be callable, got {type(self.fn).__name__}.")
    betas = getattr(self.betas, "betas", self.betas)  # a ddpm.DDPMTables, or the β table
    betas = np.asarray(betas, np.float64)
    if betas.ndim != 1 or betas.size < 1:
      raise ValueError(f"EpsModel.betas must be a 1-D β table, got shape {betas.shape}.")
    object.__setattr__(self, "betas", betas)
    _checks.check_int_at_least("label_dim", self.label_dim, 0)

  @property
  def T(self) -> int:  # pylint: disable=invalid-name
    """The number of diffusion steps."""
    return int(self.betas.shape[0])

  def __call__(self, x_t, t, class_labels=None):
    if self.label_dim == 0:
      if class_labels is not None:
        labels_one_hot(class_labels, 0, x_t.shape[0])
      return self.fn(x_t, t)
    return self.fn(x_t, t, labels_one_hot(class_labels, self.label_dim, x_t.shape[0]))

  def with_labels(self, class_labels) -> "EpsModel":
    """This ε-model with `class_labels` bound (see `Denoiser.with_labels`)."""
    if self.label_dim == 0:
      if class_labels is not None:
        labels_one_hot(class_labels, 0, 0)
      return self

    labels = None if class_labels is None else labels_one_hot(
        class_labels, self.label_dim, np.shape(class_labels)[0])

    def fn(x_t, t):
      return self.fn(x_t, t, labels)

    return dataclasses.replace(self, fn=fn, label_dim=0)
