"""Data parallelism: one device mesh, batches sharded on 'data', state replicated.

One `jax.jit` runs the step over the global batch; XLA inserts the gradient
all-reduce. Several hosts join through `jax.distributed.initialize`; each feeds
only its own rows of the global batch (`edmjax.data.pipeline.batch_at(...,
process_index, process_count)`), which `global_batch` assembles into one global
array with `jax.make_array_from_process_local_data`. With threefry partitionable
random numbers (the default in this JAX), σ, noise and dropout drawn for the
global batch do not depend on how it is sharded.
"""

from __future__ import annotations

import os
import warnings

import jax
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from edmjax import _checks

__all__ = ["DATA_AXIS", "make_mesh", "batch_sharding", "replicated_sharding",
           "global_batch", "replicate", "initialize_distributed", "check_batch_divisible",
           "split_cpu_into_devices"]

DATA_AXIS = "data"


def make_mesh(devices=None) -> jax.sharding.Mesh:
  """A 1-D mesh ('data',) over all devices of all processes (or `devices`).

  The axis is `AxisType.Auto`: XLA propagates shardings through the network (the
  default of `jax.make_mesh` in this JAX is Explicit, which would require every
  reshape of a sharded activation to name its output sharding).
  """
  auto = (jax.sharding.AxisType.Auto,)
  if devices is None:
    return jax.make_mesh((jax.device_count(),), (DATA_AXIS,), axis_types=auto)
  return jax.sharding.Mesh(np.asarray(devices), (DATA_AXIS,), axis_types=auto)


def batch_sharding(mesh) -> NamedSharding:
  """Rows split across the 'data' axis; other axes whole."""
  return NamedSharding(mesh, P(DATA_AXIS))


def replicated_sharding(mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def check_batch_divisible(batch_size: int, mesh, accum_steps: int = 1) -> None:
  """Raises a clear ValueError unless every device gets whole microbatch rows."""
  n = mesh.devices.size
  if batch_size % (n * accum_steps):
    raise ValueError(
        f"batch_size={batch_size} must be a multiple of devices ({n}) x accum_steps "
        f"({accum_steps}) = {n * accum_steps}, so that every microbatch splits evenly "
        "over the devices.")


def split_cpu_into_devices(batch_size: int, accum_steps: int = 1,
                           max_devices: int | None = None, *,
                           devices: int | None = None) -> int:
  """Presents this host's CPU cores as several JAX CPU devices; returns the count.

  XLA:CPU runs most of a step's operations (convolutions included) on one thread per
  device, so one CPU device leaves all but one core idle for most of the step. With
  one device per core and the batch sharded over them, the 32x32 DDPM++ training step
  of `benchmarks/train_step.py` runs about 1.3x faster on 2 cores (RESULTS.md), with the
  same parameters to float rounding (tests/train).

  Two ways to choose the count:

  * `devices=N` (a script's `--cpu-devices N`): exactly N. A microbatch
    (`batch_size // accum_steps`) that N does not divide is a ValueError naming both,
    never a silent fallback to fewer devices.
  * otherwise, automatically: the largest count `<= max_devices` (default: the cores
    this process may use) that divides the microbatch, so that every microbatch
    splits evenly. When that is fewer than `max_devices` (batch 7 on 2 cores: 1
    device), a `UserWarning` says so and names the batch sizes that would use them all.

  It only works before JAX initialises its backends (the first JAX computation or
  device query) and is skipped, returning 0, when that has happened, when
  `XLA_FLAGS` already sets `--xla_force_host_platform_device_count`, or when
  `jax_num_cpu_devices` was set. It does not affect GPU or TPU devices.

  Raises:
    ValueError: `devices` is not an int >= 1 or does not divide the microbatch.
  """
  micro = max(1, batch_size // max(1, accum_steps))
  if devices is not None:
    _checks.check_int_at_least("devices (--cpu-devices)", devices, 1)
    if micro % devices:
      per = f"batch_size={batch_size}" + (
          f" / accum_steps={accum_steps} = {micro}" if accum_steps > 1 else "")
      raise ValueError(
          f"devices={devices} (--cpu-devices) does not divide the microbatch ({per}); every device "
          f"needs whole rows. Use a batch size that is a multiple of {devices * max(1, accum_steps)}, "
          "or a device count that divides it.")
  if ("xla_force_host_platform_device_count" in os.environ.get("XLA_FLAGS", "")
      or jax.config.jax_num_cpu_devices != -1):
    return 0
  if devices is not None:
    n = devices
  else:
    cores = max_devices or len(os.sched_getaffinity(0))
    n = max(d for d in range(1, max(1, cores) + 1) if micro % d == 0)
    if n < cores:
      warnings.warn(
          f"using {n} of {cores} CPU devices: batch_size={batch_size} (microbatch {micro}) "
          f"is not a multiple of {cores}; a batch that is would use every core.",
          UserWarning, stacklevel=2)
  try:
    jax.config.update("jax_num_cpu_devices", n)
  except RuntimeError:  # backends already initialised
    return 0
  return n


def global_batch(local_arrays, mesh):
  """This process' rows (NumPy) -> global arrays sharded on 'data' (a pytree)."""
  sharding = batch_sharding(mesh)
  nproc = jax.process_count()

  def one(x):
    x = np.asarray(x)
    shape = (x.shape[0] * nproc,) + x.shape[1:]
    return jax.make_array_from_process_local_data(sharding, x, shape)

  return jax.tree.map(one, local_arrays)


def replicate(tree, mesh):
  """Places every leaf of `tree` on all devices of `mesh` (replicated)."""
  return jax.device_put(tree, replicated_sharding(mesh))


def initialize_distributed(coordinator_address: str | None = None,
                           num_processes: int | None = None,
                           process_id: int | None = None, *,
                           cpu_collectives: str | None = "gloo") -> None:
  """`jax.distributed.initialize` (call before any other JAX call of the process).

  On CPU, cross-process collectives need an implementation: `cpu_collectives`
  ('gloo' by default; None leaves JAX's setting). With no arguments, JAX detects
  the cluster (SLURM, Cloud TPU, ...).
  """
  if cpu_collectives is not None:
    jax.config.update("jax_cpu_collectives_implementation", cpu_collectives)
  jax.distributed.initialize(coordinator_address=coordinator_address,
                             num_processes=num_processes, process_id=process_id)
