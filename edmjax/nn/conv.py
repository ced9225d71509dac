"""2-D convolution whose weight gradient is fast on XLA:CPU.

`conv2d` is `lax.conv_general_dilated` (NHWC x HWIO, stride 1, symmetric padding) with a
custom VJP. The input gradient is XLA's own. The weight gradient
`dW[i, j, c, o] = sum_{n, y, x} x_pad[n, y + i, x + j, c] g[n, y, x, o]` is computed one of
two ways:

  * `"xla"`: XLA's transposed convolution, as `jax.grad` would give;
  * `"chunked"`: a 1x1 kernel without padding becomes one matrix product over the
    `(n, y, x)` positions; a larger kernel is the sum of XLA's weight gradients over
    batch chunks of about `CHUNK_POSITIONS` output positions each.

Why: XLA:CPU runs the weight gradient as a convolution whose "kernel" is the whole
output gradient. Once that no longer fits in cache (`N * H * W` beyond a few thousand
positions at 64 channels) it drops from ~110 to ~33 GFLOP/s on one core of the
reference machine, 4x slower than the forward pass; summed over chunks it stays fast
(measured in `benchmarks/RESULTS.md`). A 1x1 weight gradient as a convolution runs at
~12 GFLOP/s and as a matrix product at ~65.

The chunks are strided (`n mod K`), not contiguous: a batch sharded over devices in
contiguous blocks leaves every chunk evenly sharded, so the chunking adds no
communication under data parallelism. `"auto"` (the default) chooses `"chunked"` when
the default backend is the CPU and `"xla"` elsewhere (cuDNN and the TPU compiler
handle the weight gradient well); the environment variable `EDMJAX_CONV_WEIGHT_GRAD`
(`xla` or `chunked`), read at trace time, overrides that choice for every `"auto"` call,
which is how `benchmarks/train_step.py --weight-grad` compares the two. The two modes
agree to float rounding.

Threads: on one XLA:CPU device (jaxlib 0.10) a convolution runs on one core. XLA:CPU
hands every float32 NHWC convolution with more than 16 channels to YNNPACK (a
`__ynn_fusion` in the compiled program), which runs it on the calling thread, and its
runtime executes the program's operations one after another; only elementwise loop
fusions and YNNPACK's matrix products use the other cores. That is why one device
samples at half the speed of two (`benchmarks/RESULTS.md`). Neither the dimension
numbers nor the kernel layout change that (XLA canonicalises them before YNNPACK
claims the convolution). `--xla_cpu_experimental_ynn_fusion_type=` (no YNNPACK)
gives Eigen's convolution, which does use every core, but it changes results at
float rounding and makes a training step's gradients about 2x slower per CPU-second;
the library does not set it.
"""

from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp

WEIGHT_GRAD_MODES = ("auto", "xla", "chunked")

CHUNK_POSITIONS = 4096
"""Target output positions (`n * H * W`) per chunk of the chunked weight gradient."""

MAX_CHUNKS = 16
"""Upper bound on the number of chunks, which bounds the size of the compiled program."""

ENV_VAR = "EDMJAX_CONV_WEIGHT_GRAD"

_DIMS = ("NHWC", "HWIO", "NHWC")


def _conv(x: jax.Array, w: jax.Array, padding: int) -> jax.Array:
  return jax.lax.conv_general_dilated(x, w, window_strides=(1, 1),
                                      padding=((padding, padding), (padding, padding)),
                                      dimension_numbers=_DIMS)


def num_chunks(batch: int, positions_per_image: int) -> int:
  """Number of batch chunks `K` for the chunked weight gradient (a divisor of `batch`).

  Chunks of about `CHUNK_POSITIONS` positions, at most `MAX_CHUNKS` of them; `K` is the
  smallest divisor of `batch` at least the count those two rules give.
  """
  per_chunk = max(1, CHUNK_POSITIONS // max(1, positions_per_image))
  want = min(MAX_CHUNKS, -(-batch // per_chunk))
  if want <= 1:
    return 1
  return next(k for k in range(want, batch + 1) if batch % k == 0)


def _weight_grad_chunked(x: jax.Array, w: jax.Array, g: jax.Array, padding: int) -> jax.Array:
  kh, kw, c_in, c_out = w.shape
  acc = jnp.promote_types(w.dtype, jnp.float32)
  if kh == kw == 1 and padding == 0:
    dw = jnp.einsum("nyxc,nyxo->co", x, g, preferred_element_type=acc)
    return dw.reshape(w.shape).astype(w.dtype)
  n = x.shape[0]
  # Materialise x and g once: without the barrier XLA fuses their producers into every
  # chunk's slice and recomputes them K times.
  x, g = jax.lax.optimization_barrier((x, g))
  k = num_chunks(n, max(x.shape[1] * x.shape[2], g.shape[1] * g.shape[2]))

  def one(xc, gc):
    return jax.vjp(lambda w_: _conv(xc, w_, padding), w)[1](gc)[0].astype(acc)

  if k == 1:
    return one(x, g).astype(w.dtype)
  xs = x.reshape((n // k, k) + x.shape[1:])
  gs = g.reshape((n // k, k) + g.shape[1:])
  dw = one(xs[:, 0], gs[:, 0])
  for j in range(1, k):
    dw = dw + one(xs[:, j], gs[:, j])
  return dw.astype(w.dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def _conv2d(x, w, padding, chunked):
  del chunked
  return _conv(x, w, padding)


def _conv2d_fwd(x, w, padding, chunked):
  del chunked
  return _conv(x, w, padding), (x, w)


def _conv2d_bwd(padding, chunked, res, g):
  x, w = res
  dx = jax.vjp(lambda x_: _conv(x_, w, padding), x)[1](g)[0]
  if chunked:
    dw = _weight_grad_chunked(x, w, g, padding)
  else:
    dw = jax.vjp(lambda w_: _conv(x, w_, padding), w)[1](g)[0]
  return dx, dw


_conv2d.defvjp(_conv2d_fwd, _conv2d_bwd)


def conv2d(x: jax.Array, w: jax.Array, padding: int, *, weight_grad: str = "auto") -> jax.Array:
  """NHWC `x` `(N, H, W, C)` convolved with HWIO `w` `(kh, kw, C, O)`, stride 1.

  Args:
    x: input images, NHWC.
    w: kernel, HWIO, with `w.shape[2] == x.shape[-1]`.
    padding: zeros added on every side of both spatial axes (`kernel // 2` for "same").
    weight_grad: `"auto"`, `"xla"` or `"chunked"`: how the gradient with respect to `w`
      is computed (see the module docstring); the forward value is the same.

  Returns:
    `(N, H + 2 padding - kh + 1, W + 2 padding - kw + 1, O)`.
  """
  if weight_grad not in WEIGHT_GRAD_MODES:
    raise ValueError(f"conv2d: unknown weight_grad={weight_grad!r}; "
                     f"allowed: {', '.join(WEIGHT_GRAD_MODES)}.")
  if x.ndim != 4 or w.ndim != 4 or w.shape[2] != x.shape[-1]:
    raise ValueError(f"conv2d: expected NHWC x and HWIO w with matching channels, got "
                     f"x {x.shape} and w {w.shape}.")
  if padding < 0:
    raise ValueError(f"conv2d: padding must be >= 0, got {padding}.")
  if weight_grad == "auto":
    weight_grad = os.environ.get(ENV_VAR) or ("chunked" if jax.default_backend() == "cpu"
                                              else "xla")
    if weight_grad not in WEIGHT_GRAD_MODES[1:]:
      raise ValueError(f"conv2d: {ENV_VAR}={weight_grad!r} is not one of xla, chunked.")
  return _conv2d(x, w, int(padding), weight_grad == "chunked")
