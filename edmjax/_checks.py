"""Input checks shared by the library: clear ValueErrors raised at trace time.

Every error names the offending value and says what is allowed. Checks on numbers
run only when the number is concrete (a Python or NumPy scalar, or a concrete
array); a traced value cannot be inspected without a device round-trip, so it is
passed through unchecked.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import jax
import numpy as np


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


def check_positive(name: str, value: Any) -> None:
  """Raises ValueError if a concrete `value` has any entry <= 0 (or non-finite)."""
  v = concrete_value(value)
  if v is None:
    return
  if v.size and not np.all(v > 0):
    bad = v[~(v > 0)].ravel()[0] if v.ndim else v
    raise ValueError(f"{name} must be > 0, got {_fmt(bad)}.")


def check_nonnegative(name: str, value: Any) -> None:
  """Raises ValueError if a concrete `value` has any entry < 0 (or is NaN)."""
  v = concrete_value(value)
  if v is None:
    return
  if v.size and not np.all(v >= 0):
    bad = v[~(v >= 0)].ravel()[0] if v.ndim else v
    raise ValueError(f"{name} must be >= 0, got {_fmt(bad)}.")


def check_less(name_lo: str, lo: Any, name_hi: str, hi: Any) -> None:
  """Raises ValueError if concrete `lo` >= `hi`."""
  a, b = concrete_value(lo), concrete_value(hi)
  if a is None or b is None:
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
