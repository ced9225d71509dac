"""Adaptive solves of the probability-flow ODE with diffrax, one step controller per sample.

The ODE of Karras et al. 2022 (σ(t) = t, s(t) = 1) is dx/dσ = (x − D(x; σ))/σ. It is
solved here in u = log σ, where it reads

.. math::
  \\frac{dx}{du} = σ \\frac{dx}{dσ} = x − D(x; e^u),

the same ODE with the same solution (only the integration variable changes): the
step-size controller then measures steps in log σ, in which the 4.6 decades between
σ_min = 0.002 and σ_max = 80 are one interval of length ≈ 10.6 with an O(1)
Lipschitz constant, rather than steps of 80 and of 0.001 in one interval.

`solve_adaptive` runs diffrax's `diffeqsolve` with a PID step-size controller
(rtol, atol; diffrax's RMS norm over the state of one sample) under `jax.vmap` over
the batch, so every sample has its own steps, rejections and step count: one hard
sample does not make the others take smaller steps, and a sample's result does not
depend on the batch it is solved in. The denoiser is still called once per step on
the whole batch, each sample at its own σ (`jax.custom_batching`): a denoiser is
defined on its batch (a conditional one closes over per-sample conditions), so it
is never called per sample. (The vmapped while loop runs until the last sample is
done, the finished ones masked, so the batch's wall clock follows its slowest
sample.) No collective is inside the solve: on a sharded batch, wrap the
caller with `per_device` so that each device runs its own loop over its own rows;
under plain `jax.jit` of a sharded batch, XLA has to agree across devices each
iteration on whether any sample is unfinished (an all-reduce per step).

`ode_sampler` draws samples: from x(σ_max) = σ_max · latents (or init + σ_max ·
latents) to σ_min, then, as NVlabs' samplers end (t_N = 0), one Euler step to σ = 0,
which is x + (0 − σ_min)(x − D)/σ_min = D(x; σ_min), so the sample is D(x(σ_min);
σ_min). It returns the samples and `ODEStats`, whose `nfe` counts the denoiser
evaluations of each sample exactly.

NFE. An explicit Runge–Kutta solver with s stages evaluates the vector field s
times per attempted step (accepted or rejected), one fewer when its last stage is
its next step's first (FSAL: Tsit5, Dopri5, Dopri8, Bosh3), plus once at the start:

=========  ======  ====  =============================
solver     order   FSAL  evaluations for n steps
=========  ======  ====  =============================
'tsit5'    5       yes   6n + 1
'dopri5'   5       yes   6n + 1
'dopri8'   8       yes   13n + 1
'bosh3'    3       yes   3n + 1
'heun'     2       no    2n
=========  ======  ====  =============================

(`solver_nfe`; tested against a counter in the vector field.) The first step is
`dt0` (a fraction of the interval), not diffrax's automatic initial step, so that no
evaluation goes uncounted.

Errors. A solve that does not reach the end within `max_steps` steps (static), or
that fails otherwise (a non-finite state), raises an error from inside the compiled
program (`equinox.error_if`: an `EquinoxRuntimeError` under `equinox.filter_jit`, a
`jax.errors.JaxRuntimeError` carrying the same message under `jax.jit`) that names
max_steps and what to change. With `throw=False` nothing is raised: `ODEStats.success`
flags each sample, and the samples of failed solves are NaN, so a failure cannot
pass for a result.

Not jitted here: jit the caller with `solver`, `max_steps` and `throw` static; rtol,
atol, σ_min, σ_max and dt0 may be traced, so changing them does not recompile.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P

from edmjax._arrays import Array, bcast
from edmjax import _checks
from edmjax.samplers import _common

__all__ = ["ADAPTIVE_SOLVERS", "ODEStats", "solver_nfe", "solve_adaptive",
           "ode_sampler", "per_device", "check_continuous"]


_SOLVER_CLASSES = {
    "tsit5": diffrax.Tsit5,
    "dopri5": diffrax.Dopri5,
    "dopri8": diffrax.Dopri8,
    "bosh3": diffrax.Bosh3,
    "heun": diffrax.Heun,
}
ADAPTIVE_SOLVERS = tuple(_SOLVER_CLASSES)
DEFAULT_DT0 = 0.05  # the first step, as a fraction of the integration interval


class ODEStats(NamedTuple):
  """What each sample's adaptive solve cost, all of shape (batch,).

  Attributes:
    nfe: vector-field evaluations (for `ode_sampler`, denoiser evaluations
      including the final one at σ_min), int32.
    num_steps: steps attempted, accepted and rejected, int32.
    num_rejected: rejected steps, int32.
    success: True where the solve reached the end of its interval within
      max_steps (False only with throw=False).
  """
  nfe: Array
  num_steps: Array
  num_rejected: Array
  success: Array


def _solver(name: str):
  _checks.check_choice("solver", name, ADAPTIVE_SOLVERS)
  return _SOLVER_CLASSES[name]()


def solver_nfe(solver: str, num_steps):
  """Vector-field evaluations of diffrax solver `solver` for `num_steps` attempted steps.

  (stages − 1)·n + 1 for the FSAL solvers (their last stage is the next step's
  first; one evaluation at the start), stages·n otherwise.
  """
  tableau = _solver(solver).tableau
  stages = len(tableau.c) + 1
  if tableau.fsal:
    return (stages - 1) * num_steps + 1
  return stages * num_steps


def _max_steps_message(what: str, max_steps: int) -> str:
  return (f"{what}: the adaptive solve of at least one sample did not reach the end of "
          f"its interval within max_steps={max_steps} steps (or its state became "
          "non-finite). Raise max_steps, loosen rtol/atol, or pass throw=False to get "
          "per-sample success flags (ODEStats.success) instead of this error.")


def _per_sample(batch_field: Callable, t, y, args) -> Callable:
  """One sample's vector field whose evaluation, under the per-sample vmap, is ONE call
  of `batch_field` on the whole batch.

  A denoiser is defined on the batch it is given (a conditional model closes over
  per-sample conditions, e.g. a low-resolution image per sample), so it must not be
  called per sample. `jax.custom_batching.custom_vmap` gives the vmapped evaluation
  its batch back: the vmap over samples calls `batch_field(t (B,), y (B, ...), args)`
  once, with each sample's own time. `batch_field` is first traced to a jaxpr whose
  closed-over values (network parameters, conditions, traced under the caller's jit)
  become explicit inputs, as custom_vmap needs. The unbatched form exists only for
  diffrax's abstract shape evaluations; were it ever run for a batch of more than
  one it returns NaN, so it cannot pass for a result.
  """
  batch = t.shape[0]
  closed, out_shape = jax.make_jaxpr(batch_field, return_shape=True)(t, y, args)
  out_tree = jax.tree.structure(out_shape)
  jaxpr = closed.jaxpr
  consts = tuple(closed.consts)

  def call(t, y, args, consts):
    flat = jax.extend.core.jaxpr_as_fun(jax.extend.core.ClosedJaxpr(jaxpr, list(consts)))(
        *jax.tree.leaves((t, y, args)))
    return jax.tree.unflatten(out_tree, flat)

  def broadcast(tree, batched, size):
    return jax.tree.map(lambda v, b: v if b else jnp.broadcast_to(v, (size,) + v.shape),
                        tree, batched)

  @jax.custom_batching.custom_vmap
  def field(t, y, args, consts):
    full = call(*jax.tree.map(lambda v: jnp.broadcast_to(v, (batch,) + v.shape),
                              (t, y, args)), consts)
    if batch == 1:
      return jax.tree.map(lambda v: v[0], full)
    return jax.tree.map(lambda v: jnp.full_like(v[0], math.nan), full)

  @field.def_vmap
  def field_batched(axis_size, in_batched, t, y, args, consts):
    if axis_size != batch:
      raise ValueError(f"the per-sample solve was vmapped over {axis_size} rows, not over "
                       f"its batch of {batch}.")
    if any(jax.tree.leaves(in_batched[3])):
      raise ValueError("the vector field's closed-over values must be the same for every "
                       "sample of the solve.")
    t, y, args = (broadcast(v, b, axis_size) for v, b in zip((t, y, args), in_batched))
    out = call(t, y, args, consts)
    return out, jax.tree.map(lambda _: True, out)

  return lambda t, y, args: field(t, y, args, consts)


def solve_adaptive(vector_field: Callable, y0, args, t0, t1, *, solver: str = "tsit5",
                   rtol=1e-5, atol=1e-5, dt0=DEFAULT_DT0, max_steps: int = 4096,
                   throw: bool = True, what: str = "solve_adaptive"):
  """Solves dy/dt = vector_field(t, y, args) from t0 to t1 for every sample on its own.

  Each sample has its own diffrax solve (steps, rejections, step count; `jax.vmap`
  over the batch), while the vector field is evaluated for the whole batch at once
  (`jax.custom_batching`): the denoiser inside it sees the batch it was made for,
  each sample at its own time. The solve is not differentiable (custom_vmap has no
  autodiff rule): it is for sampling and evaluation.

  Args:
    vector_field: `f(t, y, args)` for the WHOLE batch: `t` of shape (B,) (each
      sample's own time), `y` and `args` pytrees with a leading batch axis; returns
      dy/dt shaped like `y`. Rows must not depend on each other.
    y0: a pytree of arrays with a leading batch axis B, the states at t0.
    args: a pytree with a leading batch axis (per-sample constants, e.g. probes),
      or None.
    t0, t1: scalar start and end (t1 < t0 integrates backwards); may be traced.
    solver: one of `ADAPTIVE_SOLVERS`.
    rtol, atol: the PID controller's tolerances (may be traced).
    dt0: the first step as a fraction of |t1 − t0| (may be traced), in (0, 1].
    max_steps: the most steps per sample (static).
    throw: raise (from inside the program) when a sample's solve fails; else
      report it in `ODEStats.success`.
    what: the caller's name, for the error message.

  Returns:
    `(y1, ODEStats)`: the states at t1 (batch axis first) and the per-sample cost.

  Raises:
    ValueError: an unknown solver, max_steps < 1, or a concrete tolerance or dt0
      out of range.
  """
  _checks.check_int_at_least("max_steps", max_steps, 1)
  _checks.check_positive("rtol", rtol)
  _checks.check_nonnegative("atol", atol)
  _checks.check_positive("dt0", dt0)
  dt0_value = _checks.concrete_value(dt0)
  if dt0_value is not None and float(dt0_value) > 1:
    raise ValueError(f"dt0={float(dt0_value)!r} is not allowed; it is the first step as a "
                     "fraction of the interval, in (0, 1].")
  ode_solver = _solver(solver)
  leaf = jax.tree.leaves(y0)[0]
  dtype = leaf.dtype
  batch = leaf.shape[0]
  t0 = jnp.asarray(t0, dtype)
  t1 = jnp.asarray(t1, dtype)
  controller = diffrax.PIDController(rtol=jnp.asarray(rtol, dtype),
                                     atol=jnp.asarray(atol, dtype))
  first = jnp.asarray(dt0, dtype) * (t1 - t0)
  term = diffrax.ODETerm(_per_sample(vector_field, jnp.broadcast_to(t0, (batch,)), y0,
                                     args))

  def one(y, a):
    sol = diffrax.diffeqsolve(
        term, ode_solver, t0, t1, first, y, args=a, stepsize_controller=controller,
        saveat=diffrax.SaveAt(t1=True), max_steps=max_steps, throw=False)
    return (jax.tree.map(lambda v: v[0], sol.ys), sol.stats["num_steps"],
            sol.stats["num_rejected_steps"], diffrax.is_successful(sol.result))

  y1, steps, rejected, success = jax.vmap(one)(y0, args)
  steps = steps.astype(jnp.int32)
  stats = ODEStats(nfe=jnp.asarray(solver_nfe(solver, steps), jnp.int32),
                   num_steps=steps, num_rejected=rejected.astype(jnp.int32),
                   success=success)
  if throw:
    y1 = eqx.error_if(y1, ~jnp.all(success), _max_steps_message(what, max_steps))
  return y1, stats


def check_continuous(round_sigma, what: str) -> None:
  """Raises ValueError for a discrete model (`round_sigma` set): an adaptive solve
  evaluates the denoiser at every σ its controller picks."""
  if round_sigma is not None:
    raise ValueError(
        f"{what} solves the ODE at whatever σ its step-size controller picks, so it "
        "needs a model that is defined for every σ; this model only supports the "
        "discrete levels of its table (round_sigma is set, e.g. a DDPM or iDDPM "
        "network). Use a fixed-step sampler (e.g. 'edm' or 'ddim') instead.")


def ode_sampler(denoise, latents, key=None, *, rtol=1e-4, atol=1e-4, solver="tsit5",
                sigma_min=0.002, sigma_max=80.0, dt0=DEFAULT_DT0, max_steps: int = 4096,
                denoise_to_zero: bool = True, throw: bool = True, round_sigma=None,
                init=None):
  """Samples by solving the probability-flow ODE adaptively, one controller per sample.

  From x(σ_max) = σ_max · latents (or init + σ_max · latents) the ODE dx/dσ =
  (x − D(x; σ))/σ is solved down to σ_min in u = log σ (dx/du = x − D(x; e^u)) by
  a diffrax solver with a PID step-size controller, then (denoise_to_zero) the
  final Euler step to σ = 0, x + (0 − σ_min)(x − D)/σ_min = D(x(σ_min); σ_min), as
  NVlabs' samplers end. Deterministic: `key` is unused.

  Args:
    denoise: `denoise(x, sigma) -> D(x; sigma)` for NHWC `x` (B, H, W, C) and
      `sigma` of shape (B,); it must be defined for every σ (a continuous model).
    latents: NHWC unit-Gaussian latents (B, H, W, C); scaled by σ_max inside.
    key: unused (the solve is deterministic); accepted for the common signature.
    rtol, atol: tolerances of the step-size controller on x (may be traced).
    solver: one of `ADAPTIVE_SOLVERS` (static).
    sigma_min, sigma_max: the interval, 0 < σ_min < σ_max (may be traced).
    dt0: the first step as a fraction of log(σ_max/σ_min) (may be traced).
    max_steps: the most solver steps per sample (static).
    denoise_to_zero: end with D(x(σ_min); σ_min) (one more evaluation); False
      returns x(σ_min).
    throw: raise when a solve does not finish (see the module docstring); False
      returns NaN samples and success=False for those instead.
    round_sigma: must be None (an adaptive solve needs a continuous model).
    init: optional NHWC image to start from (SDEdit): x(σ_max) = init + σ_max ·
      latents.

  Returns:
    `(samples, ODEStats)`: samples shaped and typed like `latents`; `stats.nfe`
    the (B,) denoiser evaluations of each sample.

  Raises:
    ValueError: `latents` not NHWC, `init` of another shape, σ_min >= σ_max or not
      positive (when concrete), an unknown solver, a model with round_sigma.

  Example:
    >>> import jax
    >>> from edmjax import oracle
    >>> denoise = oracle.gaussian_denoiser(0.0, 0.5)
    >>> z = jax.random.normal(jax.random.key(0), (2, 4, 4, 1))
    >>> x, stats = jax.jit(lambda z, tol: ode_sampler(denoise, z, rtol=tol, atol=tol)
    ...                    )(z, 1e-3)
    >>> x.shape, stats.nfe.shape
    ((2, 4, 4, 1), (2,))
  """
  check_continuous(round_sigma, "ode_sampler")
  latents = _common.float_latents(latents)
  dtype = latents.dtype
  _checks.check_positive("sigma_min", sigma_min)
  _checks.check_less("sigma_min", sigma_min, "sigma_max", sigma_max)
  sigma_min = jnp.asarray(sigma_min, dtype)
  sigma_max = jnp.asarray(sigma_max, dtype)
  x0 = _common.initial_state(latents, sigma_max, init)

  def drift(u, x, args):
    del args
    sigma = jnp.exp(u)                                  # (B,): each sample's own σ
    return x - jnp.asarray(denoise(x, sigma)).astype(dtype)

  x, stats = solve_adaptive(drift, x0, None, jnp.log(sigma_max), jnp.log(sigma_min),
                            solver=solver, rtol=rtol, atol=atol, dt0=dt0,
                            max_steps=max_steps, throw=throw, what="ode_sampler")
  if denoise_to_zero:
    x = _common.call_denoiser(denoise, x, sigma_min)
    stats = stats._replace(nfe=stats.nfe + 1)
  if not throw:
    x = jnp.where(bcast(stats.success), x, jnp.asarray(math.nan, dtype))
  return x, stats


def per_device(fn: Callable, mesh, axis: str = "data", *, replicated: int = 0) -> Callable:
  """`fn(*args)` run by each device on its own rows, with no collective.

  `jax.shard_map` over `axis`: the positional arguments after the first `replicated`
  ones, and every output, are split on their leading (batch) axis; the first
  `replicated` arguments (e.g. the network's weights) are whole on every device. Each
  device runs its own adaptive loops over its rows and finishes when its own slowest
  sample does; the devices never wait on each other inside the solve (what
  k-diffusion's issue #79 hit with per-rank adaptive solves under
  torch.distributed). The batch must divide evenly over the mesh's `axis`.

  Example:
    >>> import jax
    >>> from edmjax import oracle
    >>> mesh = jax.make_mesh((1,), ("data",), axis_types=(jax.sharding.AxisType.Auto,))
    >>> denoise = oracle.gaussian_denoiser(0.0, 0.5)
    >>> run = jax.jit(per_device(lambda z: ode_sampler(denoise, z), mesh))
    >>> x, stats = run(jax.random.normal(jax.random.key(0), (2, 4, 4, 1)))
  """
  _checks.check_int_at_least("replicated", replicated, 0)

  def run(*args):
    if len(args) < replicated:
      raise ValueError(f"per_device: {len(args)} arguments, fewer than replicated="
                       f"{replicated}.")
    specs = (P(),) * replicated + (P(axis),) * (len(args) - replicated)
    return jax.shard_map(fn, mesh=mesh, in_specs=specs, out_specs=P(axis),
                         check_vma=False)(*args)

  return run
