"""Guidance: a main and a guide denoiser combined into one, for every sampler.

.. math::
  D_w(x; σ) = D_{guide}(x; σ) + w\\,\\big(D_{main}(x; σ) − D_{guide}(x; σ)\\big)

(NVlabs/edm2 `generate_images.py`: `ref_Dx.lerp(Dx, guidance)`). The guide decides
the method:

* classifier-free guidance (Ho & Salimans 2022): the guide is the same network
  without class labels (`classifier_free`; NVlabs' zero labels, trained with label
  dropout, or a separately trained unconditional model passed to `guided`);
* autoguidance (Karras et al. 2024b, arXiv 2406.02507): the guide is a worse version
  of the main model — smaller, trained for less time (`guided(main, bad, w)`).

An optional guidance interval (Kynkäänniemi et al. 2024, arXiv 2404.07724) applies w
only for σ ∈ (σ_lo, σ_hi]; elsewhere w = 1, i.e. D_w = D_main. Where w = 1 the guide
is not evaluated: with a concrete w = 1, or concrete noise levels all outside the
interval, it is not even traced; under `jit` a `lax.cond` skips it for any step
whose noise levels are all outside the interval (or whose traced w is 1), so a
sampler spends 2 NFE only inside the interval. Inside, samples outside the interval
keep D_main exactly (a per-sample select, not a blend with w = 1).

The result is an `edmjax.model.Denoiser` carrying the intersection of the two
models' σ ranges, so it plugs into `edmjax.sampling.sample` like any model, with
`class_labels` passed to the main model (and to a conditional guide).

Example:
  >>> import jax, jax.numpy as jnp
  >>> from edmjax import guidance, model, oracle, sampling
  >>> main = model.Denoiser(oracle.gaussian_denoiser(0.0, 0.5))
  >>> guide = model.Denoiser(oracle.gaussian_denoiser(0.0, 0.8))
  >>> net = guidance.guided(main, guide, 2.0, interval=(0.3, 5.0))
  >>> z = jax.random.normal(jax.random.key(0), (2, 4, 4, 1))
  >>> sampling.sample(net, z, spec=sampling.SamplerSpec("heun", num_steps=8)).shape
  (2, 4, 4, 1)
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from edmjax import _checks
from edmjax.model import Denoiser

__all__ = ["guided", "classifier_free", "in_interval"]


def _check_interval(interval):
  if interval is None:
    return None
  try:
    lo, hi = (float(v) for v in interval)
  except (TypeError, ValueError):
    raise ValueError(f"interval={interval!r} must be a pair (sigma_lo, sigma_hi) of noise "
                     "levels, or None.") from None
  if math.isnan(lo) or math.isnan(hi) or lo < 0 or not lo < hi:
    raise ValueError(f"interval=({lo!r}, {hi!r}) is not allowed; it must satisfy "
                     "0 <= sigma_lo < sigma_hi (sigma_hi may be inf).")
  return lo, hi


def in_interval(sigma, interval):
  """Boolean mask σ ∈ (σ_lo, σ_hi] (all True when `interval` is None), shaped like σ."""
  interval = _check_interval(interval)
  sigma = jnp.asarray(sigma)
  if interval is None:
    return jnp.ones(sigma.shape, bool)
  return (sigma > interval[0]) & (sigma <= interval[1])


def _round_sigma(main: Denoiser, guide: Denoiser):
  if main.round_sigma is None or guide.round_sigma is None or \
      main.round_sigma is guide.round_sigma:
    return main.round_sigma if main.round_sigma is not None else guide.round_sigma
  raise ValueError("the main and guide models round σ to different tables "
                   "(round_sigma); guide with models that share one, or continuous ones.")


def guided(main, guide, guidance, *, interval=None) -> Denoiser:
  """D_w = D_guide + w (D_main − D_guide), w applied only for σ ∈ (σ_lo, σ_hi].

  Args:
    main: the main model (an `edmjax.model.Denoiser`, or a callable
      `denoise(x, sigma)`).
    guide: the guiding model: the main network without labels (classifier-free
      guidance; see `classifier_free`) or a worse model (autoguidance). An
      unconditional guide is called without labels; a conditional one with the
      main's labels (it must then have the main's `label_dim`).
    guidance: w (1: the main model alone). A Python number, or a JAX scalar so that
      a sweep over w does not recompile.
    interval: optional (σ_lo, σ_hi): outside it w = 1 and the guide is skipped.

  Returns:
    A `Denoiser` with the main's `label_dim`, σ range the intersection of both
    models' ranges and the main's `round_sigma` (or the guide's).

  Raises:
    ValueError: a non-finite concrete w, a bad interval, a guide whose labels do not
      match, disjoint σ ranges or different σ tables.
  """
  main = main if isinstance(main, Denoiser) else Denoiser(main)
  guide = guide if isinstance(guide, Denoiser) else Denoiser(guide)
  interval = _check_interval(interval)
  w_host = _checks.concrete_value(guidance)
  if w_host is not None:
    if w_host.shape != () or not np.isfinite(w_host):
      raise ValueError(f"guidance={guidance!r} is not allowed; it must be a finite "
                       "scalar weight w.")
    w_host = float(w_host)
  if guide.label_dim and guide.label_dim != main.label_dim:
    raise ValueError(f"the guide is conditional with label_dim={guide.label_dim} but the "
                     f"main model has label_dim={main.label_dim}; use an unconditional "
                     "guide or one with the main's classes.")
  lo, hi = max(main.sigma_min, guide.sigma_min), min(main.sigma_max, guide.sigma_max)
  if not lo < hi:
    raise ValueError(f"the main model's σ range [{main.sigma_min}, {main.sigma_max}] and "
                     f"the guide's [{guide.sigma_min}, {guide.sigma_max}] do not overlap.")

  def combined(x, sigma, labels):
    d_main = main.fn(x, sigma) if not main.label_dim else main.fn(x, sigma, labels)
    if w_host == 1.0:
      return d_main
    active = in_interval(sigma, interval)
    active_host = _checks.concrete_value(active)
    if active_host is not None and not active_host.any():
      return d_main

    def with_guide(_):
      d_guide = guide.fn(x, sigma) if not guide.label_dim else guide.fn(x, sigma, labels)
      d_guide = jnp.asarray(d_guide).astype(d_main.dtype)
      w = jnp.asarray(guidance, d_main.dtype)
      d_w = d_guide + w * (d_main - d_guide)
      return jnp.where(active.reshape(active.shape + (1,) * (d_main.ndim - 1)), d_w, d_main)

    run = jnp.any(active)
    if w_host is None:
      run = run & (jnp.asarray(guidance) != 1)
    return jax.lax.cond(run, with_guide, lambda _: d_main, None)

  if main.label_dim:
    fn = combined
  else:
    def fn(x, sigma):
      return combined(x, sigma, None)

  return Denoiser(fn, sigma_min=lo, sigma_max=hi, round_sigma=_round_sigma(main, guide),
                  label_dim=main.label_dim)


def classifier_free(model: Denoiser, guidance, *, interval=None) -> Denoiser:
  """Classifier-free guidance: `guided(model, model without labels, w)`.

  The guide is `model.with_labels(None)`: the network on NVlabs' zero labels, which
  a network trained with label dropout (`label_dropout` of SongUNet / EDM2UNet)
  has learnt as its unconditional mode.

  Raises:
    ValueError: an unconditional model (label_dim = 0), and as `guided`.
  """
  if not isinstance(model, Denoiser) or not model.label_dim:
    raise ValueError("classifier-free guidance needs a class-conditional "
                     "edmjax.model.Denoiser (label_dim > 0); for an unconditional model "
                     "use guided(main, guide, w) with a separate guide (autoguidance).")
  return guided(model, model.with_labels(None), guidance, interval=interval)
