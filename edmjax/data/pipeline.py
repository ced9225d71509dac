"""Deterministic, resumable batching: the batch stream is a pure function of
(seed, position).

The stream of a source with N examples is the concatenation of epochs; epoch `e`
visits every example exactly once, in the order of ``epoch_permutation(N, seed,
e)``. Example number `i` of the stream (counting from 0 over all epochs) is
``epoch_permutation(N, seed, i // N)[i % N]``. A global batch of size B read at
`position` p holds stream examples p, ..., p + B - 1 (it may straddle an epoch
boundary). The only state of an input pipeline is therefore the integer
`position` (the number of examples consumed): save it in a checkpoint, restore
it, and the following batches are identical.

Multi-host: every process walks the same global stream (same seed, same
positions) and reads only its own contiguous slice of each global batch: process
k of P takes rows ``[k * B / P, (k + 1) * B / P)``, the rows that
``jax.make_array_from_process_local_data`` expects for a batch axis sharded over
a device mesh laid out in process order.

The permutation is built from a SplitMix64 hash of (seed, epoch, index) and a
stable argsort, in NumPy integer arithmetic only, so the order does not depend
on the NumPy version (``np.random.Generator`` streams are not guaranteed stable
across versions).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from edmjax import _arrays
from edmjax import _checks
from edmjax.data.sources import Source

__all__ = [
    "Batch",
    "BatchIterator",
    "batch_at",
    "epoch_permutation",
    "stream_indices",
]

_MASK64 = (1 << 64) - 1
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)


class Batch(NamedTuple):
  """One batch as host NumPy arrays.

  Attributes:
    images: float32, shape (b, H, W, C) (NHWC), values in [-1, 1].
    labels: int32, shape (b,).
  """

  images: np.ndarray
  labels: np.ndarray


def _check_seed(seed: int) -> None:
  if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
    raise ValueError(f"seed must be a Python int, got {seed!r}.")


def epoch_permutation(num_examples: int, seed: int, epoch: int) -> np.ndarray:
  """The order in which epoch `epoch` visits the examples: a permutation.

  Args:
    num_examples: N >= 1.
    seed: any int (used modulo 2**64).
    epoch: epoch number >= 0.

  Returns:
    int64 array of shape (N,) holding each of 0, ..., N - 1 once.
  """
  _checks.check_int_at_least("num_examples", num_examples, 1)
  _check_seed(seed)
  _checks.check_int_at_least("epoch", epoch, 0)
  base = _arrays.splitmix64(np.uint64(int(seed) & _MASK64))
  base = _arrays.splitmix64(base ^ np.uint64(int(epoch) & _MASK64))
  with np.errstate(over="ignore"):
    keys = _arrays.splitmix64(base + np.arange(num_examples, dtype=np.uint64) * _GOLDEN)
  return np.argsort(keys, kind="stable").astype(np.int64)


def _check_stream(num_examples: int, position: int, count: int) -> None:
  _checks.check_int_at_least("num_examples", num_examples, 1)
  _checks.check_int_at_least("position", position, 0)
  _checks.check_int_at_least("count", count, 0)


def stream_indices(num_examples: int, position: int, count: int, *, seed: int,
                   shuffle: bool = True) -> np.ndarray:
  """Example indices of stream entries ``position, ..., position + count - 1``.

  Args:
    num_examples: N, the size of the source.
    position: number of examples consumed before this read (>= 0).
    count: number of indices wanted.
    seed: shuffling seed.
    shuffle: False visits 0, ..., N - 1 in order every epoch.

  Returns:
    int64 array of shape (count,).
  """
  _check_stream(num_examples, position, count)
  _check_seed(seed)
  return _stream_indices(num_examples, position, count, seed, shuffle, None)


def _stream_indices(num_examples: int, position: int, count: int, seed: int,
                    shuffle: bool, cache: dict | None) -> np.ndarray:
  """stream_indices with an optional memo {epoch: permutation}."""
  stream = np.arange(position, position + count, dtype=np.int64)
  offsets = stream % num_examples
  if not shuffle:
    return offsets
  epochs = stream // num_examples
  out = np.empty(count, dtype=np.int64)
  for epoch in np.unique(epochs):
    epoch = int(epoch)
    perm = None if cache is None else cache.get(epoch)
    if perm is None:
      perm = epoch_permutation(num_examples, seed, epoch)
      if cache is not None:
        if len(cache) >= 2:
          cache.pop(min(cache))
        cache[epoch] = perm
    sel = epochs == epoch
    out[sel] = perm[offsets[sel]]
  return out


def _check_hosts(batch_size: int, process_index: int,
                 process_count: int) -> int:
  _checks.check_int_at_least("batch_size", batch_size, 1)
  _checks.check_int_at_least("process_count", process_count, 1)
  _checks.check_int_at_least("process_index", process_index, 0)
  if process_index >= process_count:
    raise ValueError(
        f"process_index={process_index} must be in [0, process_count="
        f"{process_count}).")
  if batch_size % process_count:
    raise ValueError(
        f"batch_size={batch_size} (the global batch) must be a multiple of "
        f"process_count={process_count}.")
  return batch_size // process_count


def batch_at(source: Source, position: int, *, batch_size: int, seed: int = 0,
             shuffle: bool = True, process_index: int = 0,
             process_count: int = 1) -> Batch:
  """This process' slice of the global batch that starts at `position`.

  A pure function of its arguments: the same (source, seed, position) always
  gives the same batch.

  Args:
    source: a :class:`~edmjax.data.sources.Source` (e.g. a ``Dataset``).
    position: number of examples of the global stream consumed so far.
    batch_size: global batch size B (over all processes).
    seed: shuffling seed.
    shuffle: whether each epoch is shuffled.
    process_index: this process (``jax.process_index()``).
    process_count: number of processes (``jax.process_count()``).

  Returns:
    :class:`Batch` with images (B / process_count, H, W, C) NHWC float32 in
    [-1, 1] and labels (B / process_count,) int32.
  """
  _check_seed(seed)
  return _batch_at(source, position, batch_size, seed, shuffle, process_index,
                   process_count, None)


def _batch_at(source: Source, position: int, batch_size: int, seed: int,
              shuffle: bool, process_index: int, process_count: int,
              cache: dict | None) -> Batch:
  """batch_at with an optional permutation memo."""
  local = _check_hosts(batch_size, process_index, process_count)
  n = len(source)
  if n == 0:
    raise ValueError(f"Source {getattr(source, 'name', source)!r} is empty.")
  _checks.check_int_at_least("position", position, 0)
  indices = _stream_indices(n, position + process_index * local, local, seed,
                            shuffle, cache)
  images, labels = source.get(indices)
  return Batch(images=np.asarray(images, dtype=np.float32),
               labels=np.asarray(labels, dtype=np.int32))


class BatchIterator:
  """An endless iterator of batches whose whole state is ``position``.

  ``next(it)`` returns ``batch_at(source, it.position, ...)`` and advances
  ``it.position`` by the global batch size. Save ``it.position`` in a checkpoint;
  ``BatchIterator(source, ..., position=saved)`` continues with exactly the same
  batches.

  Example:
    >>> from edmjax.data.sources import load_digits
    >>> ds = load_digits()
    >>> it = BatchIterator(ds, batch_size=128, seed=0)
    >>> batch = next(it)            # images (128, 8, 8, 1) NHWC, labels (128,)
    >>> saved = it.position
    >>> again = BatchIterator(ds, batch_size=128, seed=0, position=saved)
    >>> bool((next(again).images == next(it).images).all())
    True
  """

  def __init__(self, source: Source, *, batch_size: int, seed: int = 0,
               shuffle: bool = True, position: int = 0, process_index: int = 0,
               process_count: int = 1):
    self._local = _check_hosts(batch_size, process_index, process_count)
    _checks.check_int_at_least("position", position, 0)
    _check_seed(seed)
    if len(source) == 0:
      raise ValueError(f"Source {getattr(source, 'name', source)!r} is empty.")
    self.source = source
    self.batch_size = batch_size
    self.seed = seed
    self.shuffle = shuffle
    self.process_index = process_index
    self.process_count = process_count
    self.position = int(position)
    self._cache: dict[int, np.ndarray] = {}

  @property
  def epoch(self) -> float:
    """Number of epochs consumed, fractional."""
    return self.position / len(self.source)

  def batch_at(self, position: int) -> Batch:
    """The batch at `position` (does not move the iterator)."""
    return _batch_at(self.source, position, self.batch_size, self.seed,
                     self.shuffle, self.process_index, self.process_count,
                     self._cache)

  def __iter__(self) -> BatchIterator:
    return self

  def __next__(self) -> Batch:
    batch = self.batch_at(self.position)
    self.position += self.batch_size
    return batch
