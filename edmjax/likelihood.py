"""Log-likelihoods and bits/dim through the probability-flow ODE (adaptive diffrax solves).

The density. Karras et al.'s ODE dx/dσ = f(x, σ) = (x − D(x; σ))/σ transports the
noisy data density p_σ (the data convolved with N(0, σ² I)) along σ, and along a
trajectory x(σ) the instantaneous change of variables (Chen et al. 2018; Song et al.
2021, Eq. 39) gives d log p_σ(x(σ))/dσ = −∇·f(x(σ), σ). Integrating upwards, from
the point x = x(σ_min) we want the density of, to σ_max:

.. math::
  \\log p_{σ_{min}}(x) = \\log p_{σ_{max}}(x(σ_{max}))
      + \\int_{σ_{min}}^{σ_{max}} ∇·f(x(σ), σ)\\, dσ.

In u = log σ (`edmjax.samplers.ode`), dx/du = x − D and σ ∇·f = ∇·(x − D) = d − tr ∂D/∂x,
with d = H·W·C, so the solve carries (x, Δ) per sample:

.. math::
  \\frac{dx}{du} = x − D(x; e^u),\\qquad \\frac{dΔ}{du} = d − \\mathrm{tr}\\,\\frac{∂D}{∂x}(x; e^u),
  \\qquad x(\\log σ_{min}) = x,\\ Δ(\\log σ_{min}) = 0,

and log p_σmin(x) = log N(x(σ_max); 0, σ_max² I) + Δ(log σ_max), the prior replacing
p_σmax (the data's own spread is negligible next to σ_max = 80: for data of variance
s² the prior's error is about d s²/(2 σ_max²) nats, 2·10⁻⁵ per dimension at s = 0.5).
For Gaussian data N(μ, s² I), Δ = (d/2) log((s² + σ_max²)/(s² + σ_min²)) > 0 and the
sum is N(x; μ, (s² + σ_min²) I) up to that prior error; the tests check each term
and its sign against these closed forms.

The divergence. `divergence='exact'`: tr ∂D/∂x from one Jacobian-vector product per
basis vector (forward mode; d of them, batched; `chunk_size` bounds how many at once)
— for small images (8×8: 64 products). Models that refuse forward mode (a custom_vjp
inside, as edmjax.nn's CPU-tuned conv2d) get vector-Jacobian products instead
(`autodiff`), the same numbers. `'hutchinson'`: tr ∂D/∂x ≈ (1/K) Σ_k v_kᵀ ∂D/∂x
v_k with K = `num_probes` probes per sample drawn once and kept for the whole solve
(Hutchinson 1989; FFJORD), Rademacher (±1) or Gaussian; E[v vᵀ] = I makes it unbiased
for each sample's log-density. The identity part d is exact in both.

`bits_per_dim` turns 8-bit images into a bound on their discrete negative
log-likelihood (the steps and their formulas are in its docstring).

The model is an `edmjax.model.Denoiser` (its σ range clipped the NVlabs way:
σ_min ← max(σ_min, model.sigma_min), σ_max ← min(σ_max, model.sigma_max)), an
`EpsModel` is refused (its network is defined on a discrete table only), and a bare
callable `denoise(x, sigma)` is a continuous model. Images are NHWC. Not jitted
here: jit the caller with the string options, `num_probes`, `chunk_size`,
`max_steps` and `throw` static.

Example:
  >>> import jax, jax.numpy as jnp
  >>> from edmjax import likelihood, oracle
  >>> denoise = oracle.gaussian_denoiser(0.0, 0.5)
  >>> x = jnp.zeros((2, 4, 4, 1))
  >>> logp = jax.jit(lambda x: likelihood.log_likelihood(denoise, x, None))(x)
  >>> exact = -0.5 * 16 * jnp.log(2 * jnp.pi * (0.5**2 + 0.002**2))   # N(0; 0, s² + σ_min²)
  >>> print(f"{float(logp[0]):.2f} {float(exact):.2f}")
  -3.61 -3.61
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from edmjax._arrays import Array
from edmjax import _checks
from edmjax import keys as keys_lib
from edmjax import sampling
from edmjax.model import EpsModel
from edmjax.samplers import ode

__all__ = ["DIVERGENCES", "PROBES", "AUTODIFF", "Likelihood", "log_likelihood", "prior_log_density",
           "dequantize", "BIN_WIDTH", "bits_per_dim"]


DIVERGENCES = ("exact", "hutchinson")
AUTODIFF = ("auto", "forward", "reverse")
PROBES = ("rademacher", "gaussian")
BIN_WIDTH = 2.0 / 255.0  # one 8-bit level in [-1, 1] (x/127.5 − 1)
_DEQUANTIZE = 0   # fold_in data of a sample's dequantization noise (bits_per_dim)
_PROBES = 1       # ... and of its Hutchinson probes


class Likelihood(NamedTuple):
  """The parts of `log_likelihood(..., return_parts=True)`, each of shape (batch,).

  log_density = prior + delta (nats), prior = log N(x(σ_max); 0, σ_max² I), delta =
  ∫ ∇·f dσ from σ_min to σ_max; `latent` x(σ_max) (B, H, W, C), the ODE's
  encoding of x; `stats` the solve's `ODEStats` (nfe counts vector-field
  evaluations, each one D call with its Jacobian-vector products).
  """
  log_density: Array
  prior: Array
  delta: Array
  latent: Array
  stats: ode.ODEStats


def prior_log_density(z, sigma_max):
  """log N(z; 0, σ_max² I) per sample: −(d/2) log(2π σ_max²) − ‖z‖²/(2 σ_max²)."""
  d = math.prod(z.shape[1:])
  sq = jnp.sum(jnp.square(z), axis=tuple(range(1, z.ndim)))
  return -0.5 * d * jnp.log(2 * jnp.pi * jnp.square(sigma_max)) - sq / (2 * jnp.square(sigma_max))


def _model(denoise, what):
  if isinstance(denoise, EpsModel):
    raise ValueError(f"{what} needs a model defined for every σ; a DDPM ε-model is only "
                     "defined on the levels of its β table.")
  net = sampling.as_model(denoise)
  ode.check_continuous(net.round_sigma, what)
  return net


def _probes(key, x, num_probes, probe):
  """(B, K, H, W, C) probes; sample b's k-th is drawn from fold_in(fold_in(key_b, 1), k)."""
  keys = jax.vmap(lambda k: jax.random.fold_in(k, _PROBES))(
      keys_lib.per_sample_keys(key, x.shape[0]))

  def draw(k):
    ks = jax.vmap(lambda j: jax.random.fold_in(k, j))(jnp.arange(num_probes))
    if probe == "gaussian":
      return jax.vmap(lambda kk: jax.random.normal(kk, x.shape[1:], x.dtype))(ks)
    return jax.vmap(lambda kk: jax.random.rademacher(kk, x.shape[1:], x.dtype))(ks)

  return jax.vmap(draw)(keys)


def log_likelihood(denoise, x, key=None, *, sigma_min=0.002, sigma_max=80.0,
                   divergence: str = "exact", num_probes: int = 1,
                   probe: str = "rademacher", rtol=1e-5, atol=1e-5,
                   solver: str = "tsit5", dt0=ode.DEFAULT_DT0, max_steps: int = 4096,
                   chunk_size: int | None = None, autodiff: str = "auto",
                   class_labels=None,
                   throw: bool = True, return_parts: bool = False):
  """Per-sample log-density, in nats, of `x` under the model's density at σ_min.

  Solves the ODE of the module docstring from σ_min up to σ_max for each sample
  with its own step-size controller, and adds the prior's log-density.

  Args:
    denoise: an `edmjax.model.Denoiser` (its σ range is applied) or a callable
      `denoise(x, sigma)` defined for every σ, differentiable in x.
    x: NHWC points (B, H, W, C), e.g. images in [-1, 1] (float64 works).
    key: one key or one per sample; needed for 'hutchinson' (sample b's probes come
      from its own key only), unused by 'exact'.
    sigma_min: the noise level whose density is computed (> 0).
    sigma_max: where the prior N(0, σ_max² I) replaces the model's density.
    divergence: 'exact' (d forward-mode products) or 'hutchinson' (K per step).
    num_probes: K, Hutchinson probes per sample (static).
    probe: 'rademacher' or 'gaussian'.
    rtol, atol: the step-size controller's tolerances on (x, Δ) (may be traced).
    solver: one of `edmjax.samplers.ode.ADAPTIVE_SOLVERS`.
    dt0: the first step as a fraction of log(σ_max/σ_min).
    max_steps: the most steps per sample (static).
    chunk_size: how many basis vectors (or probes) go through the network at
      once (None: all).
    autodiff: 'forward' (Jacobian-vector products), 'reverse' (vector-Jacobian
      products; for models with a custom_vjp inside, e.g. edmjax.nn's conv2d), or
      'auto': forward mode where the model allows it, else reverse.
    class_labels: labels for a class-conditional model (see `sampling.sample`).
    throw: raise when a solve does not finish; False gives NaN for those samples
      (and `stats.success` False with return_parts).
    return_parts: return a `Likelihood` (prior, delta, ODE stats) instead.

  Returns:
    (B,) log p_σmin(x) in nats, in x's dtype; or a `Likelihood`.

  Raises:
    ValueError: a bad option (naming it), no key for 'hutchinson', an empty σ
      range after clipping to the model's, or a discrete model.
  """
  _checks.check_nhwc("x", x)
  _checks.check_choice("divergence", divergence, DIVERGENCES)
  _checks.check_choice("probe", probe, PROBES)
  _checks.check_choice("autodiff", autodiff, AUTODIFF)
  _checks.check_int_at_least("num_probes", num_probes, 1)
  if chunk_size is not None:
    _checks.check_int_at_least("chunk_size", chunk_size, 1)
  if divergence == "hutchinson":
    keys_lib.check_key_given(key, "divergence='hutchinson' (its probes)")
  net = _model(denoise, "log_likelihood")
  if class_labels is not None and np.shape(class_labels)[:1] != tuple(x.shape[:1]):
    raise ValueError(f"class_labels has shape {tuple(np.shape(class_labels))}; expected "
                     f"one label per sample, batch {x.shape[0]}.")
  net = net.with_labels(class_labels)
  lo, hi = _sigma_range(net, sigma_min, sigma_max)
  x = jnp.asarray(x)
  if not jnp.issubdtype(x.dtype, jnp.floating):
    x = x.astype(jnp.float32)
  dtype = x.dtype
  shape = x.shape[1:]
  d = math.prod(shape)
  lo = jnp.asarray(lo, dtype)
  hi = jnp.asarray(hi, dtype)

  forward = _forward_mode(net, x, autodiff)

  def products(y, sigma, count, vector, reduce):
    """(D(y), [reduce(i, J vᵢ) or reduce(i, vᵢᵀ J) for i < count]), J = ∂D/∂y.

    vector(i) is one direction for every sample at once (B, H, W, C): rows of the
    batch do not depend on each other, so row b of the product is sample b's.
    reduce(i, product) → (B,) keeps only what is needed, so memory stays at B·count.
    """
    den = lambda v: jnp.asarray(net(v, sigma)).astype(dtype)
    if forward:
      out, apply = jax.linearize(den, y)
    else:
      out, pullback = jax.vjp(den, y)
      apply = lambda v: pullback(v)[0]
    f = lambda i: reduce(i, apply(vector(i)))
    index = jnp.arange(count)
    if chunk_size is None or chunk_size >= count:
      return out, jax.vmap(f)(index)                          # (count, B)
    return out, jax.lax.map(f, index, batch_size=chunk_size)

  def trace_exact(y, sigma):
    """(D(y), tr ∂D/∂y per sample) from d products with the basis vectors e_i."""
    batch = y.shape[0]
    basis = lambda i: jnp.broadcast_to(
        jax.nn.one_hot(i, d, dtype=dtype).reshape((1,) + shape), y.shape)
    entry = lambda i, prod: prod.reshape(batch, d)[:, i]      # (J e_i)_i = J_ii
    out, diag = products(y, sigma, d, basis, entry)
    return out, jnp.sum(diag, axis=0)

  def trace_hutchinson(y, sigma, probes):
    """(D(y), (1/K) Σ_k v_kᵀ ∂D/∂y v_k per sample)."""
    probe_k = lambda k: probes[:, k]
    quad = lambda k, prod: jnp.sum(prod * probes[:, k], axis=(1, 2, 3))
    out, quads = products(y, sigma, num_probes, probe_k, quad)
    return out, jnp.mean(quads, axis=0)

  def field(u, state, probes):
    y, _ = state
    sigma = jnp.exp(u)                                  # (B,): each sample's own σ
    if divergence == "exact":
      den, tr = trace_exact(y, sigma)
    else:
      den, tr = trace_hutchinson(y, sigma, probes)
    return y - den, jnp.asarray(d, dtype) - tr

  probes = _probes(key, x, num_probes, probe) if divergence == "hutchinson" else None
  state0 = (x, jnp.zeros((x.shape[0],), dtype))
  (z, delta), stats = ode.solve_adaptive(
      field, state0, probes, jnp.log(lo), jnp.log(hi), solver=solver, rtol=rtol,
      atol=atol, dt0=dt0, max_steps=max_steps, throw=throw, what="log_likelihood")
  prior = prior_log_density(z, hi)
  logp = prior + delta
  if not throw:
    logp = jnp.where(stats.success, logp, jnp.asarray(math.nan, dtype))
  if return_parts:
    return Likelihood(log_density=logp, prior=prior, delta=delta, latent=z,
                      stats=stats)
  return logp


def _forward_mode(net, x, autodiff: str) -> bool:
  """Whether to differentiate the denoiser in forward mode (Jacobian-vector products).

  'auto' uses forward mode unless the model refuses it: a `jax.custom_vjp` inside
  (edmjax.nn's `conv2d`, whose weight gradient is hand-written for XLA:CPU, is one)
  has no forward-mode rule; reverse mode (vector-Jacobian products) then gives the
  same numbers at about twice the cost per product.
  """
  if autodiff != "auto":
    return autodiff == "forward"
  sigma = jnp.ones((x.shape[0],), x.dtype)

  def probe(y):   # as `products` uses it: linearize, then map over directions
    return jax.vmap(jax.linearize(lambda v: net(v, sigma), y)[1])(y[None])

  try:
    jax.eval_shape(probe, x)
  except TypeError as e:
    if "custom_vjp" not in str(e):
      raise
    return False
  return True


def _sigma_range(net, sigma_min, sigma_max):
  """The model's clipped range, checked when concrete; traced values pass through."""
  if _checks.is_concrete(sigma_min) and _checks.is_concrete(sigma_max):
    _checks.check_positive("sigma_min", sigma_min)
    _checks.check_less("sigma_min", sigma_min, "sigma_max", sigma_max)
    return net.sigma_range(float(np.asarray(sigma_min)), float(np.asarray(sigma_max)))
  return (jnp.maximum(sigma_min, net.sigma_min), jnp.minimum(sigma_max, net.sigma_max))


def dequantize(images_uint8, key, dtype=jnp.float32):
  """8-bit images to [-1, 1] with uniform dequantization inside each level's bin.

  .. math::
    z = \\frac{x + u − 1/2}{127.5} − 1,\\qquad u \\sim U[0, 1)^d,

  so level x's bin, of width 2/255 (`BIN_WIDTH`), is centred on x/127.5 − 1, the
  value the network was trained on (edmjax and NVlabs/edm map uint8 to [-1, 1] by
  x/127.5 − 1), and the bins tile [−1 − 1/255, 1 + 1/255). Sample b's u is drawn
  from fold_in(key_b, 0) (`edmjax.keys`).

  Raises:
    ValueError: images that are not integer NHWC in [0, 255] (when concrete).
  """
  _checks.check_nhwc("images_uint8", images_uint8)
  images = jnp.asarray(images_uint8)
  if not jnp.issubdtype(images.dtype, jnp.integer):
    raise ValueError(f"images_uint8 must hold integers 0..255 (e.g. uint8), got dtype "
                     f"{images.dtype}; pass the 8-bit images, not images in [-1, 1].")
  v = _checks.concrete_value(images)
  if v is not None and v.size and (v.min() < 0 or v.max() > 255):
    raise ValueError(f"images_uint8 holds values from {int(v.min())} to {int(v.max())}; "
                     "8-bit images are 0..255.")
  keys_lib.check_key_given(key, "uniform dequantization")
  keys = jax.vmap(lambda k: jax.random.fold_in(k, _DEQUANTIZE))(
      keys_lib.per_sample_keys(key, images.shape[0]))
  u = jax.vmap(lambda k: jax.random.uniform(k, images.shape[1:], dtype))(keys)
  return (images.astype(dtype) + u - 0.5) / 127.5 - 1.0


def bits_per_dim(denoise, images_uint8, key, **kwargs):
  """Per-image bits/dim of 8-bit images: a bound on their discrete negative log-likelihood.

  Three steps, each with its formula (d = H·W·C):

  1. Dequantize (`dequantize`): z = (x + u − 1/2)/127.5 − 1, u ~ U[0, 1)^d, a
     uniform point in the bin B(x) of width Δ = 2/255 around x/127.5 − 1.
  2. Density in [-1, 1]: log p(z) = `log_likelihood(denoise, z, ...)`, the model's
     density at σ_min (nats).
  3. Discrete probability and bits. P(x) = ∫_{B(x)} p(z) dz = Δ^d E_u[p(z)] ≥
     Δ^d exp E_u[log p(z)] (Jensen; uniform dequantization, Theis et al. 2016; Ho et
     al. 2019), so per image, with one u,

     .. math::
       \\mathrm{bpd} = −\\frac{\\log p(z) + d \\log Δ}{d \\ln 2}
                     = −\\frac{\\log p(z)}{d \\ln 2} + \\log_2 127.5,

     an unbiased estimate of an upper bound of −log₂ P(x)/d. The constant
     log₂(1/Δ) = log₂ 127.5 ≈ 6.994 is the "offset": the volume of one 8-bit bin in
     [-1, 1]. (score_sde dequantizes into bins of width 2/256, (x + u)/128 − 1, and
     adds log₂ 128 = 7 — the same formula for its bin width; without the offset, a
     density of the continuous z can exceed 1 and "bits/dim" goes negative.)

  Args:
    denoise: as `log_likelihood`.
    images_uint8: NHWC integer images in 0..255 (B, H, W, C).
    key: one key or one per image: the dequantization noise (fold_in(key_b, 0))
      and, for 'hutchinson', the probes (fold_in(key_b, 1)).
    **kwargs: options of `log_likelihood` (sigma_min, divergence, rtol, ...;
      `dtype` of the computation, default float32).

    return_parts: also return the `Likelihood` of the dequantized images (for
      its NFE): `(bpd, Likelihood)`.

  Returns:
    (B,) bits/dim (or `(bpd, Likelihood)`).

  Example:
    >>> import jax, jax.numpy as jnp
    >>> from edmjax import likelihood, oracle
    >>> images = jnp.full((2, 4, 4, 1), 128, jnp.uint8)
    >>> bpd = likelihood.bits_per_dim(oracle.gaussian_denoiser(0.0, 0.5), images,
    ...                               jax.random.key(0))
    >>> bpd.shape
    (2,)
  """
  dtype = kwargs.pop("dtype", jnp.float32)
  z = dequantize(images_uint8, key, dtype)
  out = log_likelihood(denoise, z, key, **kwargs)
  logp = out.log_density if kwargs.get("return_parts") else out
  d = math.prod(z.shape[1:])
  bpd = -(logp + d * math.log(BIN_WIDTH)) / (d * math.log(2.0))
  return (bpd, out) if kwargs.get("return_parts") else bpd
