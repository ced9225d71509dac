"""Checking values that are traced: σ ranges and the like inside `jax.jit`.

Every library function checks the numbers it is given (σ_min < σ_max, finite
positive σ, ρ > 0, a well-formed σ table, ...) and raises a ValueError naming the
value. Those checks read the number on the host, at trace time. A number passed as
an argument of a jitted function is a tracer: it has no value yet, and reading it
would need a device round-trip per call, so by default it is **not checked** — a
traced `sigma_max = inf` gives NaN samples, not an error.

`checked(fn)` turns the same checks on for traced values: while `fn` is traced, each
check that meets a tracer becomes a `jax.experimental.checkify` check, and the
functionalized `fn` returns `(error, out)`; `error.throw()` raises with the check's
message (naming the value), or does nothing when every check passed. The checks
cost a few reductions per call; use it to debug, or where the inputs are untrusted.

Example:

  >>> import jax, jax.numpy as jnp
  >>> from edmjax import checking, schedules
  >>> table = jax.jit(checking.checked(
  ...     lambda sigma_max: schedules.karras_sigmas(4, 0.002, sigma_max)))
  >>> error, sigmas = table(jnp.float32(80.0))
  >>> error.throw()  # every check passed
  >>> error, sigmas = table(jnp.float32(jnp.inf))
  >>> print(error.get().splitlines()[0])
  sigma_max must be finite and > 0, got inf. (`check` failed)
"""

from __future__ import annotations

import functools
from typing import Any, Callable

from jax.experimental import checkify

from edmjax import _checks

__all__ = ["checked", "traced_checks"]

traced_checks = _checks.traced_checks


def checked(fn: Callable[..., Any], errors=checkify.user_checks) -> Callable[..., Any]:
  """`fn` with edmjax's checks applied to traced values too; returns `(error, out)`.

  Args:
    fn: a function calling edmjax (not already jitted: a jitted `fn` would reuse
      a trace made without the checks). Jit the result instead.
    errors: the checkify error set; the default, `checkify.user_checks`, holds the
      library's checks only (add `checkify.float_checks` to also catch NaN made
      anywhere).

  Returns:
    `checked_fn(*args, **kwargs) -> (checkify.Error, fn(*args, **kwargs))`.
  """
  functional = checkify.checkify(fn, errors=errors)

  @functools.wraps(fn)
  def checked_fn(*args, **kwargs):
    with _checks.traced_checks():
      return functional(*args, **kwargs)

  return checked_fn
