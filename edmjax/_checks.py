"""Input checks shared by the library: clear ValueErrors raised at trace time.

Every error names the offending value and says what is allowed. Checks on numbers
run when the number is concrete (a Python or NumPy scalar, or a concrete array). A
traced value (an argument of a jitted function) cannot be read at trace time, so by
default it passes unchecked; inside `traced_checks()` (what `edmjax.checking.checked`
sets while it traces) the same checks become `jax.experimental.checkify` checks,
reported when the checkified function returns.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import checkify

_TRACED_CHECKS = contextvars.ContextVar("edmjax_traced_checks", default=False)


@contextlib.contextmanager
def traced_checks():
  """Within this context, checks of traced values emit `checkify.check`s.

  Only meaningful while tracing a function that is then functionalized by
  `checkify.checkify` (see `edmjax.checking.checked`); an unfunctionalized
  `checkify.check` under jit is an error.
  """
  token = _TRACED_CHECKS.set(True)
  try:
    yield
  finally:
    _TRACED_CHECKS.reset(token)


def traced_checks_enabled() -> bool:
  return _TRACED_CHECKS.get()


def check_traced(ok, message: str, *values) -> None:
  """A checkify check that `ok` holds everywhere, reporting the entry of each of
  `values` (shaped like `ok`) where it first fails (`message` has one `{}` per value).
  Only for use inside `traced_checks()`."""
  ok = jnp.ravel(jnp.asarray(ok))
  first = jnp.argmin(ok)
  bad = [jnp.ravel(jnp.asarray(v))[first] for v in values]
  checkify.check(jnp.all(ok), message, *bad)


def is_concrete(x: Any) -> bool:
  """True when `x` can be read on the host without tracing (not a jax Tracer)."""
  return not isinstance(x, jax.core.Tracer)


def concrete_value(x: Any):
  """The NumPy value of `x`, or None when `x` is traced."""
  if not is_concrete(x):
    return None
  try:
    return np.asarray(x)
  except Exception:  # pragma: no cover - e.g. a key array
    return None


def _fmt(v) -> str:
  """A short, readable rendering of a checked value (scalars without array(...))."""
  v = np.asarray(v)
  if v.size == 1:
    return repr(v.reshape(()).item())
  return np.array2string(v, threshold=6)


def check_choice(name: str, value: Any, allowed: Iterable[Any]) -> None:
  """Raises ValueError unless `value` is one of `allowed`."""
  allowed = tuple(allowed)
  if value not in allowed:
    raise ValueError(
        f"{name}={value!r} is not supported; allowed values: "
        + ", ".join(repr(a) for a in allowed) + ".")


def check_int_at_least(name: str, value: Any, minimum: int) -> None:
  """Raises ValueError unless `value` is an int >= `minimum`."""
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
    raise ValueError(f"{name} must be a Python int >= {minimum}, got {value!r}.")
  if value < minimum:
    raise ValueError(f"{name}={value} is too small; it must be >= {minimum}.")


def check_number(name: str, value: Any, low: float | None = None,
                 high: float | None = None, *, low_open: bool = False,
                 high_open: bool = False) -> None:
  """Raises ValueError unless `value` is a finite real number in the interval.

  The interval is [low, high] (`low_open` / `high_open` exclude an end; None leaves
  that side unbounded); the message names the value and the interval, e.g.
  "net.dropout=1.5 is not allowed; it must be in [0, 1)."
  """
  if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
    raise ValueError(f"{name} must be a number, got {value!r}.")
  v = float(value)
  if not np.isfinite(v):
    raise ValueError(f"{name}={value!r} is not allowed; it must be finite.")
  ok = ((low is None or (v > low if low_open else v >= low)) and
        (high is None or (v < high if high_open else v <= high)))
  if ok:
    return
  if low is not None and high is not None:
    interval = (f"in {'(' if low_open else '['}{low:g}, {high:g}"
                f"{')' if high_open else ']'}")
  elif low is not None:
    interval = f"{'>' if low_open else '>='} {low:g}"
  else:
    interval = f"{'<' if high_open else '<='} {high:g}"
  raise ValueError(f"{name}={value!r} is not allowed; it must be {interval}.")


def check_positive(name: str, value: Any) -> None:
  """Raises ValueError if a concrete `value` has any entry <= 0 or non-finite (±inf,
  NaN): every quantity checked this way (σ, σ ranges, standard deviations, ρ, β) is
  a finite positive number, and an infinite one turns a whole result into NaN."""
  v = concrete_value(value)
  if v is None:
    if not is_concrete(value) and _TRACED_CHECKS.get():
      value = jnp.asarray(value)
      check_traced(jnp.isfinite(value) & (value > 0),
                    f"{name} must be finite and > 0, got {{}}.", value)
    return
  if v.size and not np.all(v > 0):
    bad = v[~(v > 0)].ravel()[0] if v.ndim else v
    raise ValueError(f"{name} must be > 0, got {_fmt(bad)}.")
  if v.size and not np.all(np.isfinite(v)):
    bad = v[~np.isfinite(v)].ravel()[0] if v.ndim else v
    raise ValueError(f"{name} must be finite, got {_fmt(bad)}.")


def check_nonnegative(name: str, value: Any) -> None:
  """Raises ValueError if a concrete `value` has any entry < 0 (or is NaN)."""
  v = concrete_value(value)
  if v is None:
    if not is_concrete(value) and _TRACED_CHECKS.get():
      value = jnp.asarray(value)
      check_traced(value >= 0, f"{name} must be >= 0, got {{}}.", value)
    return
  if v.size and not np.all(v >= 0):
    bad = v[~(v >= 0)].ravel()[0] if v.ndim else v
    raise ValueError(f"{name} must be >= 0, got {_fmt(bad)}.")


def check_less(name_lo: str, lo: Any, name_hi: str, hi: Any) -> None:
  """Raises ValueError if concrete `lo` >= `hi`."""
  a, b = concrete_value(lo), concrete_value(hi)
  if a is None or b is None:
    if not (is_concrete(lo) and is_concrete(hi)) and _TRACED_CHECKS.get():
      lo_a, hi_a = jnp.asarray(lo), jnp.asarray(hi)
      shape = jnp.broadcast_shapes(lo_a.shape, hi_a.shape)
      lo_a, hi_a = jnp.broadcast_to(lo_a, shape), jnp.broadcast_to(hi_a, shape)
      check_traced(lo_a < hi_a, f"{name_lo}={{}} must be smaller than {name_hi}={{}}.",
                    lo_a, hi_a)
    return
  if not np.all(a < b):
    raise ValueError(
        f"{name_lo}={_fmt(a)} must be smaller than {name_hi}={_fmt(b)}.")


def check_nhwc(name: str, x: Any) -> None:
  """Raises ValueError unless `x` is a 4-D NHWC array."""
  shape = getattr(x, "shape", None)
  if shape is None or len(shape) != 4:
    raise ValueError(
        f"{name} must be a 4-D NHWC array (batch, height, width, channels), "
        f"got shape {shape}.")


def check_batch_keys(key: Any, batch: int) -> None:
  """Raises ValueError unless `key` is one key or a vector of `batch` keys."""
  shape = getattr(key, "shape", None)
  if shape is None:
    raise ValueError(f"key must be a jax.random key, got {type(key).__name__}.")
  typed = jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
  base = () if typed else (2,)
  if tuple(shape) == base:
    return
  if tuple(shape) == (batch,) + base:
    return
  raise ValueError(
      f"key has shape {tuple(shape)}; expected one key (shape {base}) or one key "
      f"per sample (shape {(batch,) + base}) for a batch of {batch}.")
