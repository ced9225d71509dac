"""Images from integer seeds, sharded over every device: the one generation program.

`generate(model, seeds, spec, image_shape=..., batch_size=...)` draws one image per
seed with `edmjax.sampling.sample`: seed s has its own latents and sampler key
(`edmjax.keys.seed_latents_and_keys`, NVlabs' per-seed rule), so an image depends on
its seed, the model and the spec only. The seeds are cut into batches of one fixed
shape (the last one padded by repeating its last seed), one program is compiled for
that shape, and each batch is split over the devices of a 1-D mesh (on a CPU,
present the host as one JAX device per core first:
`edmjax.train.parallel.split_cpu_into_devices`). The training loop's sample grids
run the same program (`make_generator`), so a run's grid and the images of
`experiments/sample.py`, `eval_fid.py` or the notebook agree bit for bit for the
same checkpoint, seeds, sampler, batch size and device count.

The network's weights should be arguments of the compiled program, not constants
in it (a constant copy of every weight in the program, and one compilation per
checkpoint): pass `model` as a function of `variables`, e.g.
`edmjax.train.models.RunModelFn(cfg)` (what `loop.load_run` returns as
`info.model_fn`) with `variables=...`. Programs are cached by (model, spec, shape,
mesh), so calling `generate` again with an equal model function and spec does not
compile again.

Example:
  >>> from edmjax import oracle, sampling
  >>> from edmjax.train import generate
  >>> images = generate.generate(oracle.gaussian_denoiser(0.0, 0.5), range(5),
  ...                            sampling.SamplerSpec("euler", num_steps=4),
  ...                            image_shape=(8, 8, 1), batch_size=4)
  >>> images.shape, images.dtype
  ((5, 8, 8, 1), dtype('float32'))
"""

from __future__ import annotations

import functools
import itertools
import sys
from typing import Any, Callable

import jax
import numpy as np
from tqdm.auto import tqdm

from edmjax import _checks
from edmjax import keys as keys_lib
from edmjax import sampling
from edmjax.train import parallel

__all__ = ["generate", "make_generator", "generation_mesh", "padded_batches"]


def generation_mesh(batch_size: int, devices=None) -> jax.sharding.Mesh:
  """A 'data' mesh over as many of `devices` (default: all) as divide `batch_size`."""
  _checks.check_int_at_least("batch_size", batch_size, 1)
  devices = list(jax.devices() if devices is None else devices)
  n = max(d for d in range(1, len(devices) + 1) if batch_size % d == 0)
  return parallel.make_mesh(devices[:n])


@functools.lru_cache(maxsize=16)
def make_generator(model, spec: sampling.SamplerSpec, image_shape, *, mesh,
                   variables_arg: bool = False, labels_arg: bool = False,
                   latents_arg: bool = False) -> Callable:
  """The jitted generation program `run(variables, seeds, class_labels) -> images`.

  Args:
    model: a model value (`edmjax.model.Denoiser`, `EpsModel` or a `denoise(x,
      sigma)` callable), or with `variables_arg` a function `variables -> model`.
    spec: the sampler (static in the program).
    image_shape: (H, W, C) of one image.
    mesh: the 1-D device mesh; the batch is split over its 'data' axis.
    variables_arg: whether `model` takes the variables (then they are a
      replicated argument of the program, not constants in it).
    labels_arg: whether the program takes class labels ((B,) integer); otherwise
      pass None.

  Returns:
    `run(variables, seeds, class_labels)`: uint32 seeds (B,) with B a multiple of the
    mesh size -> float32 images (B, H, W, C), replicated on the mesh (so every
    process of a multi-host run can read them). Not clipped.
  """
  if not isinstance(spec, sampling.SamplerSpec):
    raise ValueError(f"spec must be an edmjax.sampling.SamplerSpec, got {spec!r}.")
  image_shape = tuple(int(v) for v in image_shape)
  rows = parallel.batch_sharding(mesh)

  def run(variables, seeds, class_labels, latents=None):
    net = model(variables) if variables_arg else model
    seed_latents, sampler_keys = keys_lib.seed_latents_and_keys(seeds, image_shape)
    latents = jax.lax.with_sharding_constraint(
        latents if latents_arg else seed_latents, rows)
    sampler_keys = jax.lax.with_sharding_constraint(sampler_keys, rows)
    if labels_arg:
      class_labels = jax.lax.with_sharding_constraint(class_labels, rows)
    return sampling.sample(net, latents, sampler_keys, spec, class_labels=class_labels)

  return jax.jit(run, out_shardings=parallel.replicated_sharding(mesh))


def padded_batches(values, batch_size: int):
  """Yields (padded batch, number of real entries): `values` cut into `batch_size`
  rows, the last batch padded by repeating its last row (one shape for all)."""
  values = np.asarray(values)
  for s in range(0, len(values), batch_size):
    chunk = values[s:s + batch_size]
    n = len(chunk)
    if n < batch_size:
      chunk = np.concatenate([chunk, np.repeat(chunk[-1:], batch_size - n, axis=0)])
    yield chunk, n


def generate(model, seeds, spec: sampling.SamplerSpec | str, *, image_shape,
             batch_size: int, class_labels=None, variables: Any = None, mesh=None,
             progress: bool = False, latents=None) -> np.ndarray:
  """One image per seed, drawn with `spec` in fixed-shape batches over the devices.

  Args:
    model: a model value (`edmjax.model.Denoiser`, `EpsModel`, or a `denoise(x,
      sigma)` callable); or, with `variables`, a function `variables -> model`
      (e.g. `edmjax.train.models.RunModelFn(cfg)`).
    seeds: integer seeds (n,) in the uint32 range; seed s gives the same image in
      any batch (`edmjax.keys.seed_latents_and_keys`).
    spec: the sampler, a `SamplerSpec` or a name (its defaults).
    image_shape: (H, W, C) of one image (NHWC).
    batch_size: images per compiled batch.
    class_labels: integer labels (n,), one per seed, for a class-conditional
      model; None samples it unconditionally (NVlabs' zero labels).
    variables: the network's variables when `model` is a function of them.
    mesh: the device mesh (default: `generation_mesh(batch_size)`, every device
      that divides the batch); `batch_size` must be a multiple of its size.
    progress: show a tqdm bar over the batches.
    latents: optional (n, H, W, C) unit-Gaussian latents, one per seed, sampled
      instead of the seeds' own (e.g. NVlabs' latents); the seeds then only give
      the sampler's noise keys.

  Returns:
    float32 images (n, H, W, C), NHWC, not clipped.

  Raises:
    ValueError: no seeds, seeds outside the uint32 range, labels not one per seed,
      a batch size the mesh does not divide, or a bad spec — before anything is
      compiled.
  """
  spec = sampling.SamplerSpec(spec) if isinstance(spec, str) else spec
  _checks.check_int_at_least("batch_size", batch_size, 1)
  seeds = np.asarray(list(seeds) if not hasattr(seeds, "__len__") else seeds)
  if seeds.ndim != 1 or seeds.size == 0:
    raise ValueError(f"seeds must be a non-empty list of integers, got shape {seeds.shape}.")
  if not np.issubdtype(seeds.dtype, np.integer) or seeds.min() < 0 or \
      seeds.max() > np.iinfo(np.uint32).max:
    raise ValueError("seeds must be integers in [0, 2**32 - 1].")
  seeds = seeds.astype(np.uint32)
  if class_labels is not None:
    class_labels = np.asarray(class_labels)
    if class_labels.shape != seeds.shape or not np.issubdtype(class_labels.dtype,
                                                              np.integer):
      raise ValueError(f"class_labels has shape {class_labels.shape}; expected one "
                       f"integer label per seed, ({len(seeds)},).")
    class_labels = class_labels.astype(np.int32)
  image_shape = tuple(int(v) for v in image_shape)
  mesh = generation_mesh(batch_size) if mesh is None else mesh
  if batch_size % mesh.devices.size:
    raise ValueError(f"batch_size={batch_size} must be a multiple of the mesh's "
                     f"{mesh.devices.size} devices.")
  if variables is not None:  # the weights, replicated on the mesh's devices
    variables = jax.device_put(variables, parallel.replicated_sharding(mesh))
  if latents is not None:
    latents = np.asarray(latents, np.float32)
    if latents.shape != (len(seeds),) + image_shape:
      raise ValueError(f"latents has shape {latents.shape}; expected one {image_shape} "
                       f"(H, W, C) latent per seed: ({len(seeds)}, {', '.join(map(str, image_shape))}).")
  run = make_generator(model, spec, image_shape, mesh=mesh,
                       variables_arg=variables is not None,
                       labels_arg=class_labels is not None,
                       latents_arg=latents is not None)
  seed_batches = padded_batches(seeds, batch_size)
  label_batches = (padded_batches(class_labels, batch_size) if class_labels is not None
                   else itertools.repeat((None, 0)))
  latent_batches = (padded_batches(latents, batch_size) if latents is not None
                    else itertools.repeat((None, 0)))
  total = -(-len(seeds) // batch_size)
  bar = tqdm(total=total, unit="batch", file=sys.stderr, dynamic_ncols=True,
             disable=not progress)
  out = []
  try:
    for (chunk, n), (labels, _), (z, _) in zip(seed_batches, label_batches,
                                               latent_batches):
      images = run(variables, chunk, labels, z)
      out.append(np.asarray(jax.device_get(images))[:n])
      bar.update(1)
  finally:
    bar.close()
  return np.concatenate(out)
