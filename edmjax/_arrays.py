"""Array helpers shared by the whole package (like `_checks`): one place for each.

* `Array`: the annotation of an array argument or result (a JAX array, or a NumPy
  array / Python number where host values are accepted: `jax.typing.ArrayLike`).
* `bcast(v, like)`: a per-sample `(B,)` vector reshaped to broadcast against a
  `(B, H, W, C)` batch (NHWC images).
* `xp_of(*xs)`: NumPy for host values, jax.numpy as soon as one input is a JAX value
  (noise tables stay float64 on the host unless σ is traced).
* `splitmix64(x)`: the SplitMix64 finaliser on uint64 arrays, the hash behind the
  data pipeline's permutations and the photo patches' crops.

Example:
  >>> import jax.numpy as jnp, numpy as np
  >>> from edmjax import _arrays
  >>> _arrays.bcast(jnp.array([1.0, 2.0]), jnp.zeros((2, 4, 4, 3))).shape
  (2, 1, 1, 1)
  >>> _arrays.xp_of(np.float64(1.0)) is np, _arrays.xp_of(jnp.ones(2)) is jnp
  (True, True)
  >>> int(_arrays.splitmix64(np.uint64(0)))
  16294208416658607535
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["Array", "bcast", "xp_of", "splitmix64"]

Array = jax.typing.ArrayLike

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


def bcast(v, like=4):
  """`v` (shape (B,) or (B, ...)) with trailing unit axes to broadcast against `like`
  (an array, or its number of dimensions; default 4, NHWC)."""
  ndim = like if isinstance(like, int) else like.ndim
  return jnp.reshape(v, jnp.shape(v) + (1,) * (ndim - jnp.ndim(v)))


def xp_of(*xs):
  """jax.numpy as soon as one input is a JAX array or tracer, else NumPy."""
  return jnp if any(isinstance(x, jax.Array) for x in xs) else np


def splitmix64(x) -> np.ndarray:
  """SplitMix64 finaliser on uint64 arrays (wrapping arithmetic), elementwise."""
  x = np.asarray(x, dtype=np.uint64)
  with np.errstate(over="ignore"):
    x = x + _GOLDEN
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))
