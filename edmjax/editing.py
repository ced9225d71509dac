"""Editing with a trained model: SDEdit and inpainting, through the one sampling entry point.

SDEdit (Meng et al. 2022, arXiv 2108.01073). Noise an image y to a level σ_start and
solve the probability-flow ODE (or any sampler) back to 0: x_0 = y + σ_start · n,
then `sampling.sample(model, n, key, spec, init=y)` with the spec's top level set to
σ_start (`sigma_max`, or headstart's `sigma_start`). A small σ_start keeps y's
structure; σ_start → σ_max forgets y (its weight in x_0 is y/σ_max).

Inpainting by replacement (Song et al. 2021, score_sde's inpainting; Lugmayr et al.
2022, RePaint). Pixels where `mask` is 1 are known (y); the others are generated.
The choice: rather than a per-step hook in every sampler, the *model* is wrapped
(`inpainting_model`), so that every sampler of the registry inpaints unchanged:

.. math::
  D'(x; σ) = m ⊙ y + (1 − m) ⊙ D(x; σ),

and the solve starts from x_0 = m ⊙ y + σ_0 n. On the known pixels the ODE becomes
dx/dσ = (x − y)/σ, whose solution from y + σ_0 n is y + σ n: the known pixels of the
state *are* their noised values y + σ_i n at every step, and Euler, Heun and
DPM-Solver++ steps follow this linear ODE exactly (each is exact for a constant
D). Stochastic samplers (churn, ancestral) add fresh noise there with the right
variance, so the known pixels stay y plus noise of level σ_i. The network sees the
state as it is, so its input is "known pixels replaced by their noised values"
(here with one noise draw n carried along, rather than a fresh draw per step). The
output's known pixels are then set to y exactly.

Exactness. Replacement is an approximation of sampling p(unknown | known): the
unknown pixels follow the unconditional D, which sees the known region only through
its noisy version, so it is exact when known and unknown pixels are independent
under the data, and otherwise errs by the mismatch between E[x_unknown | x_σ] and
E[x_unknown | y_known, x_σ] that the noisy known region leaves. RePaint's resampling
(`resample=U`, `jump=j`) reduces it: after every j steps down, the state is
re-noised j levels up, x ← x + sqrt(σ_{i−j}² − σ_i²) ε, and solved down again, U − 1
times, so the unknown region is harmonised with the known one over several passes.
The tests measure both against the exact conditional of a Gaussian mixture.

For a DDPM ε-model the ε-model is wrapped the same way (known pixels: ε' = (x_t −
sqrt(ᾱ_t) y)/sqrt(1 − ᾱ_t), whose denoiser is y), so 'ddpm' and 'ddim' inpaint too;
they start from pure noise (no `init`), which leaves a start error of y/σ_T in the
known region (0.6% of y for the linear β table, σ_T ≈ 157) that the solve removes.

Images and masks are NHWC (a mask may be (H, W), (H, W, C′) or (B, H, W, C′) with
C′ ∈ {1, C}, broadcast over the rest), images in [-1, 1]. Keys follow
`edmjax.keys`: the starting noise of sample b is `keys.start_noise` (fold_in(key_b,
2³¹ − 1)), the sampler's step noise fold_in(key_b, i), RePaint's re-noising the
same rule on its own operation index. σ_start, the spec and resample/jump are
static (a new σ_start is a new spec: one trace each).

Example:
  >>> import jax, jax.numpy as jnp
  >>> from edmjax import editing, oracle, sampling
  >>> model = oracle.gaussian_denoiser(0.0, 0.5)
  >>> y = jnp.full((2, 8, 8, 1), 0.3)
  >>> mask = jnp.zeros((8, 8)).at[:, :4].set(1.0)      # keep the left half
  >>> spec = sampling.SamplerSpec("edm", num_steps=8)
  >>> out = editing.inpaint(model, y, mask, jax.random.key(0), spec=spec)
  >>> bool((out[:, :, :4] == y[:, :, :4]).all())
  True
  >>> near = editing.sdedit(model, y, jax.random.key(1), 0.05, spec=spec)
  >>> bool(jnp.abs(near - y).max() < 0.2)
  True
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from edmjax._arrays import bcast
from edmjax import _checks
from edmjax import ddpm
from edmjax import keys as keys_lib
from edmjax import sampling
from edmjax.model import Denoiser, EpsModel

__all__ = ["sdedit", "inpaint", "inpainting_model", "broadcast_mask", "repaint_schedule",
           "starting_at", "from_uint8", "to_uint8", "RESAMPLE_SAMPLERS"]

RESAMPLE_SAMPLERS = ("edm", "heun", "euler")
_NO_INIT = ("ddpm", "ddim")


def _spec(spec):
  if spec is None or isinstance(spec, str):
    return sampling.SamplerSpec(spec or "edm")
  if not isinstance(spec, sampling.SamplerSpec):
    raise ValueError(f"spec must be a SamplerSpec or a sampler name, got {spec!r}.")
  return spec


def from_uint8(images_uint8) -> np.ndarray:
  """8-bit images (0..255) as float32 in [-1, 1]: x/127.5 − 1 (NVlabs' mapping)."""
  return np.asarray(images_uint8, np.float32) / 127.5 - 1.0


def to_uint8(images) -> np.ndarray:
  """Images in [-1, 1] to 8 bits, round((x + 1)·127.5) clipped: the inverse of
  `from_uint8` (an 8-bit image survives the round trip exactly)."""
  return np.clip(np.rint((np.asarray(images, np.float64) + 1) * 127.5), 0, 255).astype(
      np.uint8)


def _float_images(images):
  _checks.check_nhwc("images", images)
  images = jnp.asarray(images)
  if not jnp.issubdtype(images.dtype, jnp.floating):
    raise ValueError(f"images must be floating NHWC images in [-1, 1], got dtype "
                     f"{images.dtype}.")
  return images


# ----------------------------------------------------------------------------- SDEdit


def starting_at(spec, sigma_start: float) -> sampling.SamplerSpec:
  """`spec` with its top noise level at σ_start: headstart's `sigma_start`, every other
  image-starting sampler's `sigma_max`.

  Raises:
    ValueError: a sampler that cannot start from an image ('ddpm', 'ddim'), or
      σ_start not above the spec's σ_min.
  """
  spec = _spec(spec)
  _checks.check_positive("sigma_start", sigma_start)
  sigma_start = float(sigma_start)
  if spec.name in _NO_INIT:
    raise ValueError(f"sampler {spec.name!r} does not start from an image; SDEdit needs "
                     "one that does (e.g. 'edm', 'heun', 'dpmpp_2m', 'ode', 'headstart').")
  field = "sigma_start" if spec.name == "headstart" else "sigma_max"
  lo = spec.get("sigma_min")
  one_step = spec.name == "headstart" and spec.get("num_steps") == 1
  if lo is not None and not one_step and not sigma_start > lo:
    raise ValueError(f"sigma_start={sigma_start!r} must be above the sampler's "
                     f"sigma_min={lo!r}.")
  return spec.replace(**{field: sigma_start})


def sdedit(model, images, key, sigma_start: float, *, spec=None, class_labels=None):
  """SDEdit: noise `images` to σ_start and sample back to 0 with any sampler.

  x_0 = images + σ_start · n with n = `keys.start_noise(key, images)`, solved by
  `sampling.sample(model, n, key, spec', init=images)` where spec' is `spec` with
  its top level at σ_start ('headstart': `sigma_start`; every other sampler that
  starts from an image: `sigma_max`).

  Args:
    model: an `edmjax.model.Denoiser`, `EpsModel` or callable `denoise(x, sigma)`.
    images: NHWC images in [-1, 1] (B, H, W, C).
    key: one key or one per image (the starting noise, and the sampler's noise).
    sigma_start: σ_start > the spec's σ_min (a Python number; static).
    spec: the sampler (`SamplerSpec` or name; None: 'edm', 18 steps). Its own
      sigma_max / sigma_start is replaced by σ_start.
    class_labels: labels for a class-conditional model.

  Returns:
    The edited images, shaped like `images`.

  Raises:
    ValueError: a sampler that cannot start from an image ('ddpm', 'ddim'),
      σ_start not above the spec's σ_min, bad images or no key.
  """
  spec = _spec(spec)
  images = _float_images(images)
  keys_lib.check_key_given(key, "sdedit (its starting noise)")
  spec = starting_at(spec, sigma_start)
  latents = keys_lib.start_noise(key, images)
  return sampling.sample(model, latents, key, spec, class_labels=class_labels,
                         init=images)


# ----------------------------------------------------------------------------- inpainting


def broadcast_mask(mask, images):
  """`mask` broadcast to the images' NHWC shape, in their dtype.

  Accepts (H, W), (H, W, C′), (B, H, W, C′) with C′ ∈ {1, C} (and B′ ∈ {1, B}).

  Raises:
    ValueError: another shape, or (when concrete) values outside [0, 1].
  """
  mask = jnp.asarray(mask)
  shape = tuple(images.shape)
  if mask.ndim == 2:
    mask = mask[None, :, :, None]
  elif mask.ndim == 3:
    mask = mask[None]
  ok = (mask.ndim == 4 and mask.shape[1:3] == shape[1:3]
        and mask.shape[0] in (1, shape[0]) and mask.shape[3] in (1, shape[3]))
  if not ok:
    raise ValueError(f"mask has shape {tuple(np.shape(mask))}; expected (H, W), (H, W, C) "
                     f"or (B, H, W, C) matching the images {shape} (C and B may be 1).")
  v = _checks.concrete_value(mask)
  if v is not None and v.size and (v.min() < 0 or v.max() > 1):
    raise ValueError(f"mask values must lie in [0, 1] (1 = known pixel, 0 = to generate), "
                     f"got {float(v.min())!r} to {float(v.max())!r}.")
  return jnp.broadcast_to(mask.astype(images.dtype), shape)


def inpainting_model(model, images, mask, class_labels=None) -> Denoiser:
  """The model with the known pixels pinned: D'(x; σ) = m ⊙ y + (1 − m) ⊙ D(x; σ).

  A `Denoiser` with the model's σ range and rounding and `class_labels` bound; for
  a DDPM ε-model (an `EpsModel`, or a `Denoiser` bridging one) the ε-model is
  pinned (ε' = m ⊙ (x_t − sqrt(ᾱ_t) y)/sqrt(1 − ᾱ_t) + (1 − m) ⊙ ε), so that DDPM's
  own samplers use it too. Every sampler of `sampling.sample` then inpaints.
  """
  images = _float_images(images)
  m = broadcast_mask(mask, images)
  if isinstance(model, EpsModel):
    eps = model.with_labels(class_labels)
    return ddpm.ddpm_as_denoiser(_pinned_eps(eps, images, m))
  net = sampling.as_model(model).with_labels(class_labels)
  if net.eps is not None:
    return ddpm.ddpm_as_denoiser(_pinned_eps(net.eps, images, m))

  def fn(x, sigma):
    den = jnp.asarray(net(x, sigma)).astype(x.dtype)
    mx = m.astype(x.dtype)
    return mx * images.astype(x.dtype) + (1 - mx) * den

  return dataclasses.replace(net, fn=fn, eps=None)


def _pinned_eps(eps: EpsModel, images, m) -> EpsModel:
  tables = ddpm.ddpm_tables(eps.betas)

  def fn(x_t, t):
    a = bcast(jnp.asarray(tables.sqrt_alpha_bars, x_t.dtype)[t])
    b = bcast(jnp.asarray(tables.sqrt_one_minus_alpha_bars, x_t.dtype)[t])
    known = (x_t - a * images.astype(x_t.dtype)) / b
    mx = m.astype(x_t.dtype)
    return mx * known + (1 - mx) * jnp.asarray(eps(x_t, t)).astype(x_t.dtype)

  return EpsModel(fn, eps.betas)


def repaint_schedule(num_steps: int, resample: int, jump: int) -> np.ndarray:
  """RePaint's walk over the levels 0..N of a σ table, as (from, to) index pairs.

  Down one level (to = from + 1, a solver step) at a time; on reaching a level i
  that is a multiple of `jump` (jump <= i <= N − 1), go back up to i − jump (to =
  from − jump, a re-noising) and down again, `resample − 1` times per such level
  (Lugmayr et al. 2022, Algorithm 1 and its jump schedule). The last pair is
  always (N − 1, N), the final step to σ_N = 0. resample = 1 is the plain walk.

  Raises:
    ValueError: num_steps < 1, resample < 1, jump < 1 or jump > N − 1 when
      resampling.
  """
  _checks.check_int_at_least("num_steps", num_steps, 1)
  _checks.check_int_at_least("resample", resample, 1)
  _checks.check_int_at_least("jump", jump, 1)
  if resample > 1 and jump > num_steps - 1:
    raise ValueError(f"jump={jump} is too long for num_steps={num_steps}: RePaint jumps "
                     f"back at most num_steps − 1 = {num_steps - 1} levels.")
  left = {i: resample - 1 for i in range(jump, num_steps) if i % jump == 0}
  pairs, i = [], 0
  while i < num_steps:
    pairs.append((i, i + 1))
    i += 1
    if left.get(i, 0) > 0:
      left[i] -= 1
      pairs.append((i, i - jump))
      i -= jump
  return np.asarray(pairs, np.int32)


def inpaint(model, images, mask, key, *, spec=None, resample: int = 1, jump: int = 1,
            sigma_start: float | None = None, class_labels=None):
  """Inpainting: generate the pixels where `mask` is 0, keep those where it is 1.

  With resample = 1, `sampling.sample(inpainting_model(model, images, mask),
  n, key, spec, init=mask ⊙ images)` with n = `keys.start_noise(key, images)`: any
  sampler of the registry (see the module docstring for why this is replacement
  inpainting and how exact it is). With resample = U > 1, RePaint's resampling over
  the spec's σ table (`repaint_schedule`) with its Heun ('edm', 'heun') or Euler
  ('euler') steps: about U times the solver steps of the plain walk (each
  jump point adds (U − 1)·j steps down).

  Args:
    model: an `edmjax.model.Denoiser`, `EpsModel` or callable `denoise(x, sigma)`.
    images: NHWC images in [-1, 1] (B, H, W, C); only the known pixels are used.
    mask: 1 where the pixel is known (kept), 0 where it is generated; see
      `broadcast_mask` for the shapes.
    key: one key or one per image.
    spec: the sampler (None: 'edm', 18 steps).
    resample: RePaint's U (1: no resampling); U > 1 needs a sampler of
      `RESAMPLE_SAMPLERS` without churn.
    jump: RePaint's jump length j in levels of the σ table.
    sigma_start: None generates the masked pixels from noise (the spec's σ_max);
      a level σ_start regenerates them SDEdit-style from the image itself, x_0 =
      images + σ_start · n, keeping more of what was there (`starting_at`).
    class_labels: labels for a class-conditional model.

  Returns:
    Images shaped like `images` whose known pixels equal `images` exactly.

  Raises:
    ValueError: bad images, mask, key or resample options (naming them).
  """
  spec = _spec(spec)
  images = _float_images(images)
  m = broadcast_mask(mask, images)
  keys_lib.check_key_given(key, "inpaint (its starting noise)")
  _checks.check_int_at_least("resample", resample, 1)
  _checks.check_int_at_least("jump", jump, 1)
  if resample > 1:
    _checks.check_choice("sampler (with resample > 1)", spec.name, RESAMPLE_SAMPLERS)
  if sigma_start is not None:
    spec = starting_at(spec, sigma_start)
  pinned = inpainting_model(model, images, m, class_labels)
  latents = keys_lib.start_noise(key, images)
  init = images if sigma_start is not None else m * images
  if resample == 1:
    x = sampling.sample(pinned, latents, key, spec,
                        init=None if spec.name in _NO_INIT else init)
  else:
    x = _repaint_walk(pinned, init, latents, key, spec, resample, jump)
  return m * images + (1 - m) * x


def _repaint_walk(net, init, latents, key, spec, resample, jump):
  o = spec.kwargs
  if o["S_churn"] != 0:
    raise ValueError(f"resample={resample} re-noises the state itself; use the sampler "
                     f"with S_churn=0 (got S_churn={o['S_churn']!r}).")
  table = sampling.sigma_table(net, o["num_steps"], o["sigma_min"], o["sigma_max"],
                               o["rho"], o.get("schedule", "karras"))
  pairs = repaint_schedule(o["num_steps"], resample, jump)
  heun = spec.name in ("edm", "heun")
  dtype = latents.dtype
  sig = jnp.asarray(table, dtype)
  keys = keys_lib.per_sample_keys(key, latents.shape[0])

  def denoise(x, s):
    return jnp.asarray(net(x, jnp.broadcast_to(s, (x.shape[0],)))).astype(dtype)

  def down(x, s_from, s_to, second_order):
    d = (x - denoise(x, s_from)) / s_from
    x_next = x + (s_to - s_from) * d
    if second_order:
      d_prime = (x_next - denoise(x_next, s_to)) / s_to
      x_next = x + (s_to - s_from) * (0.5 * d + 0.5 * d_prime)
    return x_next

  def body(x, op):
    i, j, n = op
    s_from, s_to = sig[i], sig[j]

    def renoise(x):
      amount = jnp.sqrt(jnp.maximum(s_to**2 - s_from**2, 0))
      return x + amount * keys_lib.step_noise(keys, n, x)

    x = jax.lax.cond(j > i, lambda x: down(x, s_from, s_to, heun), renoise, x)
    return x, None

  ops = np.concatenate([pairs, np.arange(len(pairs), dtype=np.int32)[:, None]], axis=1)
  x = init.astype(dtype) + sig[0] * latents
  x, _ = jax.lax.scan(body, x, jnp.asarray(ops[:-1]))
  i_last = int(pairs[-1, 0])
  return down(x, sig[i_last], sig[-1], False)   # the last step, to σ_N = 0: Euler
