"""The one way to sample a model: `sample(model, latents, key, spec)`.

`SamplerSpec` names a sampler and its options (checked once, when the spec is made;
a frozen, hashable value: a jit static argument). `sample` runs it on a model value
(`edmjax.model.Denoiser`, `edmjax.model.EpsModel` or a bare `denoise(x, sigma)`),
applying the model's noise range in one place, as NVlabs/edm's `generate.py` does:

* σ_min ← max(σ_min, model.sigma_min), σ_max ← min(σ_max, model.sigma_max);
* the sampler's noise levels are rounded with `model.round_sigma` (a DDPM or iDDPM
  network is only queried on the levels it was trained on); a table whose rounded
  levels repeat is an error that says to use fewer steps;
* a DDPM ε-model given to an EDM-family sampler goes through the VP bridge
  (`ddpm.ddpm_as_denoiser`, Karras et al. 2022 Appendix C.3.4); DDPM's ancestral
  sampler and DDIM use the ε-model itself (for an EDM denoiser, the ε-model it
  implies on a β table, `ddpm.ddpm_eps_from_denoiser`).

Every script, the training loop's sample grids, super-resolution and the notebook
sample through this function, so one checkpoint and one seed give one image.

======================  ================================================  ============
name                    sampler                                           NFE
======================  ================================================  ============
'edm'                   NVlabs' `edm_sampler` (Algorithm 2, Heun, churn)   2N − 1
'ablation'              NVlabs' `ablation_sampler` (Table 1 design space) 2N − 1 or N
'heun'                  k-diffusion's `sample_heun` over a σ schedule      2N − 1
'euler'                 k-diffusion's `sample_euler`                       N
'euler_ancestral'       k-diffusion's `sample_euler_ancestral`            N
'dpm_2'                 k-diffusion's `sample_dpm_2` (churn)               2N − 1
'dpm_2_ancestral'       k-diffusion's `sample_dpm_2_ancestral`            2N − 1
'lms'                   k-diffusion's `sample_lms` (order <= 4)            N
'dpmpp_2s_ancestral'    k-diffusion's `sample_dpmpp_2s_ancestral`         2N − 1
'dpmpp_sde'             k-diffusion's `sample_dpmpp_sde`                   2N − 1
'dpmpp_2m'              DPM-Solver++(2M) (`sample_dpmpp_2m`)              N
'dpmpp_2m_sde'          k-diffusion's `sample_dpmpp_2m_sde`                N
'dpmpp_3m_sde'          k-diffusion's `sample_dpmpp_3m_sde`                N
'dpm_fast'              k-diffusion's `sample_dpm_fast` (no table)        `nfe`
'dpm_adaptive'          k-diffusion's `sample_dpm_adaptive` (no table)    adaptive (*)
'headstart'             from an image at σ_start (needs `init`)           N or 2N − 1
'ddpm'                  DDPM ancestral sampling, all T steps              T
'ddim'                  DDIM (Song et al. 2021), diffusers' spacings      N
'ode'                   adaptive diffrax solve (Tsit5, ...), per sample   adaptive (*)
======================  ================================================  ============

(*) `nfe()` of 'dpm_adaptive' is its budget, `order × max_steps`; the evaluations it
spends are per sample (`samplers.dpm_adaptive_sampler(..., return_info=True)`). For
'ode' likewise the budget, `samplers.solver_nfe(solver, max_steps) + 1`; the
evaluations each sample spent are `stats.nfe` of `sample(..., return_trajectory=True)`,
which returns `(samples, samplers.ODEStats)`.

The table samplers take `schedule` ∈ {karras, exponential, polyexponential, vp}
(`sigma_table`); 'dpm_fast' and 'dpm_adaptive' step uniformly or adaptively in
λ = −log σ over the model's clipped range and take no table (a discrete model
rounds what it is asked inside its denoiser).

An 'ode' solve that exceeds `max_steps` raises from inside the program
(`samplers.ode`). Its options are static in the spec, as every sampler's: a new rtol
is a new spec (one trace each); `samplers.ode_sampler` itself takes traced tolerances
and σ values.

`SamplerSpec.options_of(name)` lists a sampler's options and defaults. Starting from
an image (`init=`, SDEdit / headstart): x_0 = init + σ_0 · latents, where σ_0 is the
first level of the table (set `sigma_max`, or headstart's `sigma_start`).

Latents are unit Gaussian NHWC and keys follow `edmjax.keys`. Nothing is jitted
here: jit the caller with the spec static.

Example:
  >>> import jax
  >>> from edmjax import oracle, sampling
  >>> spec = sampling.SamplerSpec("dpmpp_2m", num_steps=10)
  >>> spec.nfe()
  10
  >>> z = jax.random.normal(jax.random.key(0), (4, 8, 8, 1))
  >>> x = jax.jit(lambda z: sampling.sample(oracle.gaussian_denoiser(0.0, 0.5), z,
  ...                                        spec=spec))(z)
  >>> x.shape
  (4, 8, 8, 1)
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from edmjax import _checks
from edmjax import ddpm
from edmjax import samplers
from edmjax import schedules
from edmjax.model import Denoiser, EpsModel
from edmjax.samplers import ablation as ablation_lib

__all__ = ["SAMPLER_NAMES", "SCHEDULE_NAMES", "SamplerSpec", "sample", "as_model",
           "steps_for_nfe", "sigma_table"]


# ----------------------------------------------------------------------------- options


def _num(name, v, *, positive=False, nonnegative=False, finite=True, allow_none=False):
  if v is None and allow_none:
    return
  if isinstance(v, bool) or not isinstance(v, (int, float, np.integer, np.floating)):
    raise ValueError(f"{name}={v!r} is not allowed; it must be a number.")
  v = float(v)
  if math.isnan(v):
    raise ValueError(f"{name}=nan is not allowed.")
  if finite and not math.isfinite(v):
    raise ValueError(f"{name}={v!r} is not allowed; it must be finite.")
  if positive and not v > 0:
    raise ValueError(f"{name}={v!r} is not allowed; it must be > 0.")
  if nonnegative and not v >= 0:
    raise ValueError(f"{name}={v!r} is not allowed; it must be >= 0.")


def _int_at_least(minimum):
  return lambda name, v: _checks.check_int_at_least(name, v, minimum)


def _choice(*allowed):
  return lambda name, v: _checks.check_choice(name, v, allowed)


def _positive(name, v):
  _num(name, v, positive=True)


def _positive_or_none(name, v):
  _num(name, v, positive=True, allow_none=True)


def _level_maybe_traced(name, v):
  """A positive number, or a JAX scalar (traced inside jit: not checked here)."""
  if isinstance(v, (jax.Array, jax.core.Tracer)):
    if v.ndim:
      raise ValueError(f"{name} must be a scalar, got shape {v.shape}.")
    _checks.check_positive(name, v)  # a no-op when traced
    return
  _num(name, v, positive=True)


def _nonnegative(name, v):
  _num(name, v, nonnegative=True)


def _nonnegative_maybe_inf(name, v):
  _num(name, v, nonnegative=True, finite=False)


def _alpha(name, v):
  _num(name, v, positive=True)
  if float(v) > 1:
    raise ValueError(f"{name}={v!r} is not allowed; 0 < alpha <= 1 (1 is Heun's method).")


def _unit_interval(name, v):
  _num(name, v, positive=True)
  if float(v) > 1:
    raise ValueError(f"{name}={v!r} is not allowed; 0 < {name} <= 1.")


def _bool(name, v):
  if not isinstance(v, (bool, np.bool_)):
    raise ValueError(f"{name}={v!r} is not allowed; it must be True or False.")


class _Opt(NamedTuple):
  default: Any
  check: Callable[[str, Any], None]
  doc: str


_RANGE = {
    "num_steps": _Opt(18, _int_at_least(2), "solver steps N"),
    "sigma_min": _Opt(0.002, _positive, "lowest nonzero noise level (clipped to the model's)"),
    "sigma_max": _Opt(80.0, _positive, "highest noise level (clipped to the model's)"),
    "rho": _Opt(7.0, _positive, "Karras time-step exponent ρ"),
}
SCHEDULE_NAMES = ("karras", "exponential", "polyexponential", "vp")
_SCHEDULE = {
    "schedule": _Opt("karras", _choice(*SCHEDULE_NAMES),
                     "σ schedule of the table (karras, exponential, polyexponential: "
                     "its exponent is rho, vp: VP steps fit to the range)"),
}
_CHURN = {
    "S_churn": _Opt(0.0, _nonnegative, "total churn (Algorithm 2)"),
    "S_min": _Opt(0.0, _nonnegative, "churn only for σ >= S_min"),
    "S_max": _Opt(math.inf, _nonnegative_maybe_inf, "churn only for σ <= S_max"),
    "S_noise": _Opt(1.0, _nonnegative, "noise inflation"),
}
_BETAS = {
    "beta_schedule": _Opt("linear", _choice("linear", "cosine"),
                          "β table of the ε-model implied by an EDM denoiser "
                          "(ignored for an ε-model, which carries its own)"),
    "T": _Opt(1000, _int_at_least(1), "steps of that β table"),
}


class _Sampler(NamedTuple):
  options: dict
  nfe: Callable[[dict, int], int]
  run: Callable[..., Any]
  needs_key: Callable[[dict], bool]
  doc: str


_REGISTRY: dict[str, _Sampler] = {}


def _register(name, options, nfe, needs_key, doc):
  def wrap(run):
    _REGISTRY[name] = _Sampler(dict(options), nfe, run, needs_key, doc)
    return run
  return wrap


def _never(opts):
  del opts
  return False


def _churns(opts):
  return float(opts["S_churn"]) > 0


# ----------------------------------------------------------------------------- the spec


@dataclasses.dataclass(frozen=True, init=False)
class SamplerSpec:
  """A sampler of `SAMPLER_NAMES` and its options, checked when the spec is made.

  `SamplerSpec("edm", num_steps=32, S_churn=10.0)`. Only the options given are
  stored (the rest take the sampler's defaults, `options_of(name)`), so specs
  compare and hash by what was asked for; a frozen value, usable as a jit static
  argument.

  One exception to "static": headstart's `sigma_start` may be a traced JAX scalar
  (a spec made inside a jitted function, so that a σ_start sweep compiles once);
  such a spec is not hashable and is checked by the sampler, not here.

  Raises:
    ValueError: an unknown sampler name, an option the sampler does not have (the
      message lists its options), or an option value out of range — each naming
      the option and the value.
  """
  name: str
  options: tuple

  def __init__(self, name: str = "edm", **options):
    _checks.check_choice("sampler", name, tuple(_REGISTRY))
    entry = _REGISTRY[name]
    unknown = sorted(set(options) - set(entry.options))
    if unknown:
      raise ValueError(
          f"sampler {name!r} has no option {unknown[0]!r}; its options are: "
          + ", ".join(entry.options) + ".")
    for key, value in options.items():
      entry.options[key].check(key, value)
    object.__setattr__(self, "name", name)
    object.__setattr__(self, "options", tuple(sorted(options.items())))
    merged = self.kwargs
    if "sigma_min" in merged and "sigma_max" in merged and \
        merged["sigma_min"] is not None and merged["sigma_max"] is not None:
      _checks.check_less("sigma_min", merged["sigma_min"], "sigma_max", merged["sigma_max"])
    if name == "headstart" and merged["num_steps"] >= 2:
      _checks.check_less("sigma_min", merged["sigma_min"], "sigma_start",
                         merged["sigma_start"])

  @staticmethod
  def options_of(name: str) -> dict:
    """{option: (default, description)} of sampler `name`."""
    _checks.check_choice("sampler", name, tuple(_REGISTRY))
    return {k: (o.default, o.doc) for k, o in _REGISTRY[name].options.items()}

  @classmethod
  def parse(cls, name: str, items=()) -> "SamplerSpec":
    """A spec from command-line style `'option=value'` strings, typed by the defaults.

    Raises:
      ValueError: a malformed item or a value that does not parse (naming both).
    """
    _checks.check_choice("sampler", name, tuple(_REGISTRY))
    opts = _REGISTRY[name].options
    out = {}
    for item in items:
      key, sep, text = item.partition("=")
      key, text = key.strip(), text.strip()
      if not sep or not key:
        raise ValueError(f"sampler option {item!r} must look like name=value, e.g. "
                         "num_steps=32.")
      if key not in opts:
        raise ValueError(f"sampler {name!r} has no option {key!r}; its options are: "
                         + ", ".join(opts) + ".")
      out[key] = _parse_value(key, text, opts[key].default)
    return cls(name, **out)

  @property
  def kwargs(self) -> dict:
    """Every option of the sampler: the given ones over the defaults."""
    merged = {k: o.default for k, o in _REGISTRY[self.name].options.items()}
    merged.update(self.options)
    return merged

  def get(self, option: str):
    return self.kwargs[option]

  def replace(self, **options) -> "SamplerSpec":
    """A spec of the same sampler with `options` changed."""
    return SamplerSpec(self.name, **{**dict(self.options), **options})

  def nfe(self, T: int | None = None) -> int:
    """Network evaluations per sample (T: the ε-model's steps, for 'ddpm'; default
    the spec's own `T` option)."""
    return _REGISTRY[self.name].nfe(self.kwargs, T)

  def needs_key(self) -> bool:
    """True when the sampler adds noise (it then needs a key)."""
    return _REGISTRY[self.name].needs_key(self.kwargs)

  @property
  def label(self) -> str:
    """A short name, e.g. 'edm-18' or 'ddpm'."""
    n = self.kwargs.get("num_steps")
    return self.name if n is None else f"{self.name}-{n}"

  def __repr__(self):
    opts = "".join(f", {k}={v!r}" for k, v in self.options)
    return f"SamplerSpec({self.name!r}{opts})"


def _parse_value(key, text, default):
  try:
    if isinstance(default, bool):
      if text.lower() in ("1", "true", "yes", "on"):
        return True
      if text.lower() in ("0", "false", "no", "off"):
        return False
      raise ValueError
    if isinstance(default, int):
      f = float(text)
      if f != int(f):
        raise ValueError
      return int(f)
    if isinstance(default, float) or default is None:
      if default is None and text.lower() == "none":
        return None
      return float(text)
    return text
  except ValueError:
    kind = type(default).__name__ if default is not None else "number or none"
    raise ValueError(f"sampler option {key}={text!r} is not a valid {kind}.") from None


SAMPLER_NAMES: tuple = ()  # filled below, after the registry


def steps_for_nfe(name: str, nfe: int, **options) -> int:
  """The `num_steps` of sampler `name` that spends exactly `nfe` evaluations.

  Raises:
    ValueError: when no step count spends `nfe` (e.g. an even NFE for Heun), naming
      the nearest ones, or for a sampler without steps ('ddpm').
  """
  _checks.check_int_at_least("nfe", nfe, 1)
  spec = SamplerSpec(name, **options)
  entry = _REGISTRY[name]
  if "num_steps" not in entry.options:
    raise ValueError(f"sampler {name!r} has no num_steps; its NFE is {spec.nfe()}.")
  counts = []
  for n in range(1, nfe + 1):
    try:
      entry.options["num_steps"].check("num_steps", n)
    except ValueError:
      continue
    counts.append(entry.nfe({**spec.kwargs, "num_steps": n}, None))
    if counts[-1] == nfe:
      return n
  near = sorted(sorted(set(counts), key=lambda c: (abs(c - nfe), c))[:2])
  raise ValueError(f"sampler {name!r} cannot spend exactly nfe={nfe} evaluations; "
                   f"the nearest it can are {near}.")


# ----------------------------------------------------------------------------- the entry


def as_model(model) -> Denoiser:
  """A `Denoiser` from a `Denoiser` (itself), an `EpsModel` (the DDPM bridge,
  `ddpm.ddpm_as_denoiser`, carrying the ε-model's σ table) or a bare callable
  `denoise(x, sigma)` (a continuous model: the full range, no rounding)."""
  if isinstance(model, Denoiser):
    return model
  if isinstance(model, EpsModel):
    return ddpm.ddpm_as_denoiser(model)
  if callable(model):
    return Denoiser(model)
  raise ValueError(f"model must be an edmjax.model.Denoiser, an EpsModel or a callable "
                   f"denoise(x, sigma); got {type(model).__name__}.")


def sample(model, latents, key=None, spec: SamplerSpec | str | None = None, *,
           class_labels=None, init=None, return_trajectory: bool = False):
  """Draws samples from `model` with the sampler `spec`.

  Args:
    model: an `edmjax.model.Denoiser`, an `edmjax.model.EpsModel` or a callable
      `denoise(x, sigma)`.
    latents: NHWC unit-Gaussian latents (B, H, W, C) (for 'headstart': its starting
      noise n, conventionally `keys.start_noise(key, init)`).
    key: one jax.random key or one per sample (`edmjax.keys`); needed when the
      sampler adds noise (`spec.needs_key()`).
    spec: the sampler (a `SamplerSpec`, or a name for its defaults); None is
      `SamplerSpec('edm')` (18 steps, 35 NFE).
    class_labels: one-hot `(B, label_dim)` or integer `(B,)` labels for a
      class-conditional model; None is unconditional (NVlabs' zeros).
    init: optional NHWC image shaped like `latents` to start from (SDEdit /
      headstart): x_0 = init + σ_0 · latents. Required by 'headstart'.
    return_trajectory: also return what the sampler records per step (a
      `samplers.Trajectory` for the EDM family; the stacked states for
      'ddpm'/'ddim'; for 'ode', its per-sample `samplers.ODEStats`).

  Returns:
    Samples shaped like `latents` (not clipped), or `(samples, trajectory)`.

  Raises:
    ValueError: a bad model, a missing key for a noisy sampler, labels for an
      unconditional model, an empty σ range after clipping to the model's, rounded
      levels that repeat, `init` missing (headstart) or not shaped like `latents`.
  """
  if spec is None or isinstance(spec, str):
    spec = SamplerSpec(spec or "edm")
  if not isinstance(spec, SamplerSpec):
    raise ValueError(f"spec must be a SamplerSpec or a sampler name, got {spec!r}.")
  _checks.check_nhwc("latents", latents)
  if class_labels is not None and np.shape(class_labels)[:1] != tuple(latents.shape[:1]):
    raise ValueError(f"class_labels has shape {tuple(np.shape(class_labels))}; expected "
                     f"one label per sample, batch {latents.shape[0]}.")
  net = as_model(model).with_labels(class_labels)
  latents = jnp.asarray(latents)
  if not jnp.issubdtype(latents.dtype, jnp.floating):
    latents = latents.astype(jnp.float32)
  if init is not None and tuple(np.shape(init)) != tuple(latents.shape):
    raise ValueError(f"init has shape {tuple(np.shape(init))}; expected the latents' "
                     f"shape {tuple(latents.shape)} (NHWC).")
  opts = spec.kwargs
  entry = _REGISTRY[spec.name]
  if key is None and entry.needs_key(opts):
    raise ValueError(f"sampler {spec!r} adds noise; pass a jax.random key (one key, or "
                     "one key per sample).")
  return entry.run(net, latents, key, opts, init, return_trajectory)


def sigma_table(model: Denoiser, num_steps: int, sigma_min: float, sigma_max: float,
                rho: float = 7.0, schedule: str = "karras") -> np.ndarray:
  """The `(N + 1,)` float64 table a sampler steps on for `model`, ending in 0.

  The range is clipped to the model's (NVlabs' rule), the N levels come from the
  named schedule over [σ_min, σ_max] and are rounded with the model's `round_sigma`:

  * 'karras': EDM's Eq. 5 with exponent ρ (`schedules.karras_sigmas`);
  * 'exponential': even in log σ (`schedules.exponential_sigmas`);
  * 'polyexponential': k-diffusion's polynomial in log σ with exponent ρ
    (`schedules.polyexponential_sigmas`; k-diffusion's default for it is ρ = 1, the
    exponential schedule: pass rho=1.0 for it);
  * 'vp': the VP time steps t_i = 1 + i/(N−1)(ε_s − 1), ε_s = 10⁻³, with β refit so
    that σ(1) = σ_max and σ(ε_s) = σ_min (`schedules.vp_sigma_steps`, EDM's VP
    discretization); for the original VP range (σ_min, σ_max) =
    `schedules.vp_default_sigma_range()` this is k-diffusion's `get_sigmas_vp`.

  Raises:
    ValueError: an empty range, an unknown schedule, or rounded levels that are not
      strictly decreasing (too many steps for a discrete model's table).
  """
  model = as_model(model)
  _checks.check_choice("schedule", schedule, SCHEDULE_NAMES)
  lo, hi = model.sigma_range(sigma_min, sigma_max)
  if schedule == "karras":
    levels = schedules.edm_sigma_steps(num_steps, lo, hi, rho)
  elif schedule == "exponential":
    levels = schedules.exponential_sigmas(num_steps, lo, hi)[:-1]
  elif schedule == "polyexponential":
    levels = schedules.polyexponential_sigmas(num_steps, lo, hi, rho)[:-1]
  else:
    levels = schedules.vp_sigma_steps(num_steps, lo, hi)
  levels = _rounded(model, np.asarray(levels, np.float64), num_steps)
  return np.append(levels, 0.0)


def _rounded(model: Denoiser, levels, num_steps):
  if model.round_sigma is None:
    return levels
  out = np.asarray(model.round_sigma(np.asarray(levels, np.float64)), np.float64)
  if np.any(np.diff(out) >= 0):
    raise ValueError(
        f"Rounding {num_steps} noise levels to the levels the model supports gives "
        f"repeated levels ({np.array2string(out, threshold=8, precision=4)}); use "
        "fewer steps (num_steps).")
  return out


# ----------------------------------------------------------------------------- samplers


@_register("edm", {**_RANGE, **_CHURN},
           nfe=lambda o, T: 2 * o["num_steps"] - 1, needs_key=_churns,
           doc="NVlabs/edm's edm_sampler: Algorithm 2 (Heun, churn), Karras steps")
def _run_edm(net, latents, key, o, init, traj):
  lo, hi = net.sigma_range(o["sigma_min"], o["sigma_max"])
  return samplers.edm_sampler(
      net, latents, key, num_steps=o["num_steps"], sigma_min=lo, sigma_max=hi,
      rho=o["rho"], S_churn=o["S_churn"], S_min=o["S_min"], S_max=o["S_max"],
      S_noise=o["S_noise"], round_sigma=net.round_sigma, init=init,
      return_trajectory=traj)


_ABLATION = {
    "num_steps": _RANGE["num_steps"],
    "sigma_min": _Opt(None, _positive_or_none,
                      "lowest level; None: the discretization's default"),
    "sigma_max": _Opt(None, _positive_or_none,
                      "highest level; None: the discretization's default"),
    "rho": _RANGE["rho"],
    "solver": _Opt("heun", _choice(*samplers.SOLVERS), "euler or heun"),
    "discretization": _Opt("edm", _choice(*schedules.DISCRETIZATIONS), "time steps"),
    "schedule": _Opt("linear", _choice(*schedules.SCHEDULES), "σ(t)"),
    "scaling": _Opt("none", _choice(*schedules.SCALINGS), "s(t)"),
    "epsilon_s": _Opt(1e-3, _positive, "VP end time ε_s"),
    "C_1": _Opt(0.001, _positive, "iDDPM table C_1"),
    "C_2": _Opt(0.008, _positive, "iDDPM table C_2"),
    "M": _Opt(1000, _int_at_least(1), "iDDPM table size M"),
    "alpha": _Opt(1.0, _alpha, "explicit trapezoid α (1: Heun)"),
    **_CHURN,
}


@_register("ablation", _ABLATION,
           nfe=lambda o, T: 2 * o["num_steps"] - 1 if o["solver"] == "heun"
           else o["num_steps"], needs_key=_churns,
           doc="NVlabs/edm's ablation_sampler: every design choice of Table 1")
def _run_ablation(net, latents, key, o, init, traj):
  default_min, default_max = ablation_lib.default_sigma_range(o["discretization"],
                                                               o["epsilon_s"])
  lo, hi = net.sigma_range(default_min if o["sigma_min"] is None else o["sigma_min"],
                           default_max if o["sigma_max"] is None else o["sigma_max"])
  kw = {k: o[k] for k in ("num_steps", "rho", "solver", "discretization", "schedule",
                          "scaling", "epsilon_s", "C_1", "C_2", "M", "alpha", "S_churn",
                          "S_min", "S_max", "S_noise")}
  return samplers.ablation_sampler(net, latents, key, sigma_min=lo, sigma_max=hi,
                                   round_sigma=net.round_sigma, init=init,
                                   return_trajectory=traj, **kw)


def _table_of(net, o):
  return sigma_table(net, o["num_steps"], o["sigma_min"], o["sigma_max"], o["rho"],
                     o["schedule"])


def _solve(solver):
  def run(net, latents, key, o, init, traj):
    table = _table_of(net, o)
    x0 = samplers.initial_state(latents, jnp.asarray(table[0], latents.dtype), init)
    return samplers.solve_from(net, x0, table, solver=solver, key=key,
                               S_churn=o["S_churn"], S_min=o["S_min"], S_max=o["S_max"],
                               S_noise=o["S_noise"], round_sigma=net.round_sigma,
                               return_trajectory=traj)
  return run


_register("heun", {**_RANGE, **_SCHEDULE, **_CHURN},
          nfe=lambda o, T: 2 * o["num_steps"] - 1, needs_key=_churns,
          doc="k-diffusion's sample_heun (Algorithm 2 over a σ schedule)")(_solve("heun"))
_register("euler", {**_RANGE, **_SCHEDULE, **_CHURN},
          nfe=lambda o, T: o["num_steps"], needs_key=_churns,
          doc="k-diffusion's sample_euler (Algorithm 2 without the correction)"
          )(_solve("euler"))


@_register("euler_ancestral",
           {**_RANGE, **_SCHEDULE,
            "eta": _Opt(1.0, _nonnegative, "ancestral noise fraction η"),
            "S_noise": _CHURN["S_noise"]},
           nfe=lambda o, T: o["num_steps"],
           needs_key=lambda o: float(o["eta"]) > 0 and float(o["S_noise"]) > 0,
           doc="k-diffusion's sample_euler_ancestral")
def _run_euler_ancestral(net, latents, key, o, init, traj):
  return samplers.euler_ancestral_sampler(net, latents, key, sigmas=_table_of(net, o),
                                          eta=o["eta"], S_noise=o["S_noise"], init=init,
                                          return_trajectory=traj)


@_register("dpmpp_2m", {**_RANGE, **_SCHEDULE}, nfe=lambda o, T: o["num_steps"],
           needs_key=_never, doc="DPM-Solver++(2M), k-diffusion's sample_dpmpp_2m")
def _run_dpmpp_2m(net, latents, key, o, init, traj):
  return samplers.dpmpp_2m_sampler(net, latents, key, sigmas=_table_of(net, o), init=init,
                                   return_trajectory=traj)


_ANCESTRAL = {
    "eta": _Opt(1.0, _nonnegative, "ancestral noise fraction η (0: the ODE solver)"),
    "S_noise": _CHURN["S_noise"],
}


def _ancestral_needs_key(opts):
  return float(opts["eta"]) > 0 and float(opts["S_noise"]) > 0


def _table_sampler(name, function, options, nfe, needs_key, doc, option_names):
  """Registers a sampler over `_table_of`'s σ table, passing `option_names`."""
  def run(net, latents, key, o, init, traj):
    return function(net, latents, key, sigmas=_table_of(net, o), init=init,
                    return_trajectory=traj, **{k: o[k] for k in option_names})
  _register(name, {**_RANGE, **_SCHEDULE, **options}, nfe=nfe, needs_key=needs_key,
            doc=doc)(run)


def _two_per_step(o, T):
  return 2 * o["num_steps"] - 1


def _one_per_step(o, T):
  return o["num_steps"]


_table_sampler("dpm_2", samplers.dpm_2_sampler, _CHURN, _two_per_step, _churns,
               "k-diffusion's sample_dpm_2 (DPM-Solver-2 steps in Algorithm 2)",
               tuple(_CHURN))
_table_sampler("dpm_2_ancestral", samplers.dpm_2_ancestral_sampler, _ANCESTRAL,
               _two_per_step, _ancestral_needs_key,
               "k-diffusion's sample_dpm_2_ancestral", tuple(_ANCESTRAL))
_table_sampler("lms", samplers.lms_sampler,
               {"order": _Opt(4, _choice(1, 2, 3, 4), "multistep order (1..4)")},
               _one_per_step, _never, "k-diffusion's sample_lms (linear multistep)",
               ("order",))
_table_sampler("dpmpp_2s_ancestral", samplers.dpmpp_2s_ancestral_sampler, _ANCESTRAL,
               _two_per_step, _ancestral_needs_key,
               "k-diffusion's sample_dpmpp_2s_ancestral", tuple(_ANCESTRAL))
_table_sampler("dpmpp_sde", samplers.dpmpp_sde_sampler,
               {**_ANCESTRAL, "r": _Opt(0.5, _unit_interval,
                                  "intermediate point λ_i + r h, 0 < r <= 1")},
               _two_per_step, _ancestral_needs_key,
               "k-diffusion's sample_dpmpp_sde (Brownian-consistent draws)",
               tuple(_ANCESTRAL) + ("r",))
_table_sampler("dpmpp_2m_sde", samplers.dpmpp_2m_sde_sampler,
               {**_ANCESTRAL,
                "solver_type": _Opt("midpoint", _choice(*samplers.SDE_SOLVER_TYPES),
                                    "second-order correction: midpoint or heun")},
               _one_per_step, _ancestral_needs_key, "k-diffusion's sample_dpmpp_2m_sde",
               tuple(_ANCESTRAL) + ("solver_type",))
_table_sampler("dpmpp_3m_sde", samplers.dpmpp_3m_sde_sampler, _ANCESTRAL, _one_per_step,
               _ancestral_needs_key, "k-diffusion's sample_dpmpp_3m_sde",
               tuple(_ANCESTRAL))

_LAMBDA_RANGE = {"sigma_min": _RANGE["sigma_min"], "sigma_max": _RANGE["sigma_max"]}
_LAMBDA_NOISE = {
    "eta": _Opt(0.0, _nonnegative, "ancestral noise fraction η (0: the ODE solver)"),
    "S_noise": _CHURN["S_noise"],
}


@_register("dpm_fast",
           {"nfe": _Opt(18, _int_at_least(1), "evaluations n (⌊n/3⌋ + 1 steps)"),
            **_LAMBDA_RANGE, **_LAMBDA_NOISE},
           nfe=lambda o, T: o["nfe"], needs_key=_ancestral_needs_key,
           doc="k-diffusion's sample_dpm_fast (DPM-Solver-fast, uniform in log σ)")
def _run_dpm_fast(net, latents, key, o, init, traj):
  lo, hi = net.sigma_range(o["sigma_min"], o["sigma_max"])
  return samplers.dpm_fast_sampler(net, latents, key, nfe=o["nfe"], sigma_min=lo,
                                   sigma_max=hi, eta=o["eta"], S_noise=o["S_noise"],
                                   init=init, return_trajectory=traj)


_ADAPTIVE = {
    **_LAMBDA_RANGE,
    "order": _Opt(3, _choice(2, 3), "2 (DPM-Solver-12) or 3 (DPM-Solver-23)"),
    "rtol": _Opt(0.05, _nonnegative, "relative tolerance"),
    "atol": _Opt(0.0078, _positive, "absolute tolerance"),
    "h_init": _Opt(0.05, _positive, "first step in log σ"),
    "pcoeff": _Opt(0.0, _num, "PID controller k_P"),
    "icoeff": _Opt(1.0, _num, "PID controller k_I"),
    "dcoeff": _Opt(0.0, _num, "PID controller k_D"),
    "accept_safety": _Opt(0.81, _positive, "accept a step when the factor >= this"),
    **_LAMBDA_NOISE,
    "max_steps": _Opt(1000, _int_at_least(1), "iteration budget; samples that do not "
                                              "finish within it are NaN"),
}


@_register("dpm_adaptive", _ADAPTIVE, nfe=lambda o, T: o["order"] * o["max_steps"],
           needs_key=_ancestral_needs_key,
           doc="k-diffusion's sample_dpm_adaptive (PID step-size control, per sample)")
def _run_dpm_adaptive(net, latents, key, o, init, traj):
  lo, hi = net.sigma_range(o["sigma_min"], o["sigma_max"])
  kw = {k: o[k] for k in ("order", "rtol", "atol", "h_init", "pcoeff", "icoeff",
                          "dcoeff", "accept_safety", "eta", "S_noise", "max_steps")}
  return samplers.dpm_adaptive_sampler(net, latents, key, sigma_min=lo, sigma_max=hi,
                                       init=init, return_trajectory=traj, **kw)


@_register("headstart",
           {"sigma_start": _Opt(0.5, _level_maybe_traced,
                                "starting noise level σ_start (may be a traced JAX "
                                "scalar: sweep it without recompiling)"),
            "num_steps": _Opt(1, _int_at_least(1), "steps N (1: one evaluation)"),
            "sigma_min": _RANGE["sigma_min"], "rho": _RANGE["rho"],
            "solver": _Opt("euler", _choice(*samplers.SOLVERS), "euler or heun"),
            **_CHURN},
           nfe=lambda o, T: samplers.headstart_nfe(o["num_steps"], o["solver"]),
           needs_key=_churns,
           doc="from init + σ_start · latents down to 0 (SR headstart, SDEdit)")
def _run_headstart(net, latents, key, o, init, traj):
  if init is None:
    raise ValueError("sampler 'headstart' starts from an image: pass init=... (e.g. the "
                     "upsampled low-resolution image).")
  start = _checks.concrete_value(o["sigma_start"])
  if start is not None and not net.sigma_min <= float(start) <= net.sigma_max:
    raise ValueError(f"sigma_start={float(start)!r} is outside the noise range the "
                     f"model supports [{net.sigma_min!r}, {net.sigma_max!r}].")
  sigma_min = max(float(o["sigma_min"]), net.sigma_min) if o["num_steps"] >= 2 \
      else o["sigma_min"]
  return samplers.headstart(net, init, key, sigma_start=o["sigma_start"],
                            num_steps=o["num_steps"], sigma_min=sigma_min, rho=o["rho"],
                            solver=o["solver"], noise=latents, S_churn=o["S_churn"],
                            S_min=o["S_min"], S_max=o["S_max"], S_noise=o["S_noise"],
                            round_sigma=net.round_sigma, return_trajectory=traj)


def _eps_and_betas(net: Denoiser, o):
  """The ε-model and β table DDPM's samplers run on."""
  if net.eps is not None:
    return net.eps.fn, net.eps.betas
  if o["beta_schedule"] == "cosine":
    betas = ddpm.cosine_beta_schedule(o["T"])
  else:
    betas = ddpm.linear_beta_schedule(o["T"])
  return ddpm.ddpm_eps_from_denoiser(net, betas), betas


def _no_init(name, init):
  if init is not None:
    raise ValueError(f"sampler {name!r} does not start from an image (init); use an "
                     "EDM-family sampler or 'headstart'.")


@_register("ddpm",
           {"variance": _Opt("beta", _choice("beta", "beta_tilde"),
                             "posterior variance: β (Ho et al.'s σ² = β) or β̃"),
            "clip_denoised": _Opt(False, _bool, "clip x̂_0 to [-1, 1] each step"),
            **_BETAS},
           nfe=lambda o, T: o["T"] if T is None else T, needs_key=lambda o: True,
           doc="DDPM ancestral sampling over all T steps (Ho et al. 2020)")
def _run_ddpm(net, latents, key, o, init, traj):
  _no_init("ddpm", init)
  eps_fn, betas = _eps_and_betas(net, o)
  variance = "posterior" if o["variance"] == "beta_tilde" else "beta"
  return ddpm.ddpm_sampler(eps_fn, latents, key, betas, variance=variance,
                           clip_denoised=o["clip_denoised"], return_trajectory=traj)


@_register("ddim",
           {"num_steps": _Opt(50, _int_at_least(1), "steps N of the subsequence"),
            "eta": _Opt(0.0, _nonnegative, "η (0: deterministic DDIM)"),
            "spacing": _Opt("linspace", _choice(*ddpm.DDIM_SPACINGS),
                            "timestep spacing: linspace, leading (the DDIM paper's) "
                            "or trailing (diffusers' three)"),
            **_BETAS},
           nfe=lambda o, T: o["num_steps"], needs_key=lambda o: float(o["eta"]) > 0,
           doc="DDIM (Song et al. 2021) on a step subsequence of diffusers' spacings")
def _run_ddim(net, latents, key, o, init, traj):
  _no_init("ddim", init)
  eps_fn, betas = _eps_and_betas(net, o)
  return ddpm.ddim_sampler(eps_fn, latents, betas, num_steps=o["num_steps"],
                           eta=o["eta"], key=key, spacing=o["spacing"],
                           return_trajectory=traj)


@_register("ode",
           {"rtol": _Opt(1e-4, _positive, "relative tolerance of the step controller"),
            "atol": _Opt(1e-4, _positive, "absolute tolerance of the step controller"),
            "solver": _Opt("tsit5", _choice(*samplers.ADAPTIVE_SOLVERS),
                           "diffrax solver: " + ", ".join(samplers.ADAPTIVE_SOLVERS)),
            "sigma_min": _RANGE["sigma_min"], "sigma_max": _RANGE["sigma_max"],
            "dt0": _Opt(0.05, _positive, "first step, as a fraction of log(σ_max/σ_min)"),
            "max_steps": _Opt(4096, _int_at_least(1),
                              "most solver steps per sample (more is an error)")},
           nfe=lambda o, T: samplers.solver_nfe(o["solver"], o["max_steps"]) + 1,
           needs_key=_never,
           doc="the probability-flow ODE solved adaptively (diffrax), per-sample steps")
def _run_ode(net, latents, key, o, init, traj):
  samplers.check_continuous(net.round_sigma, "sampler 'ode'")
  lo, hi = net.sigma_range(o["sigma_min"], o["sigma_max"])
  x, stats = samplers.ode_sampler(net, latents, key, rtol=o["rtol"], atol=o["atol"],
                                  solver=o["solver"], sigma_min=lo, sigma_max=hi,
                                  dt0=o["dt0"], max_steps=o["max_steps"], init=init)
  return (x, stats) if traj else x


SAMPLER_NAMES = tuple(_REGISTRY)
