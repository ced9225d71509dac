"""Batching: a pure function of (seed, position), exact resume, host slicing."""

import numpy as np
import pytest

from edmjax import data


def _tagged(n):
  """A data set whose label is the example index (so batches reveal indices)."""
  images = np.broadcast_to(
      (np.arange(n, dtype=np.float32) / n)[:, None, None, None], (n, 2, 2, 1))
  return data.Dataset(images=np.ascontiguousarray(images),
                      labels=np.arange(n, dtype=np.int32), num_classes=n,
                      name="tagged")


def _labels(it, num_batches):
  return np.concatenate([next(it).labels for _ in range(num_batches)])


def test_each_epoch_is_a_permutation_and_epochs_differ():
  n, b = 37, 8
  it = data.BatchIterator(_tagged(n), batch_size=b, seed=3)
  stream = _labels(it, -(-3 * n // b))
  epochs = [stream[e * n:(e + 1) * n] for e in range(3)]
  for epoch in epochs:
    np.testing.assert_array_equal(np.sort(epoch), np.arange(n))
  assert not np.array_equal(epochs[0], epochs[1])
  assert not np.array_equal(epochs[0], np.arange(n))
  assert it.position == -(-3 * n // b) * b


def test_same_seed_same_batches_different_seed_different_batches():
  ds = data.load_digits()
  a = data.BatchIterator(ds, batch_size=64, seed=7)
  b = data.BatchIterator(ds, batch_size=64, seed=7)
  c = data.BatchIterator(ds, batch_size=64, seed=8)
  for _ in range(3):
    ba, bb, bc = next(a), next(b), next(c)
    np.testing.assert_array_equal(ba.images, bb.images)
    np.testing.assert_array_equal(ba.labels, bb.labels)
    assert not np.array_equal(ba.images, bc.images)
  assert ba.images.shape == (64, 8, 8, 1) and ba.images.dtype == np.float32


def test_resume_from_saved_position_gives_identical_batches():
  ds = data.load_digits()
  it = data.BatchIterator(ds, batch_size=500, seed=1)
  for _ in range(5):  # crosses an epoch boundary (1,797 examples)
    next(it)
  saved = it.position
  expected = [next(it) for _ in range(3)]
  resumed = data.BatchIterator(ds, batch_size=500, seed=1, position=saved)
  for want in expected:
    got = next(resumed)
    np.testing.assert_array_equal(got.images, want.images)
    np.testing.assert_array_equal(got.labels, want.labels)
  # batch_at is the same pure function.
  np.testing.assert_array_equal(
      data.batch_at(ds, saved, batch_size=500, seed=1).labels,
      expected[0].labels)


def test_batch_straddles_the_epoch_boundary_seamlessly():
  n = 10
  ds = _tagged(n)
  batch = data.batch_at(ds, 8, batch_size=4, seed=0)
  np.testing.assert_array_equal(batch.labels[:2],
                                data.epoch_permutation(n, 0, 0)[8:])
  np.testing.assert_array_equal(batch.labels[2:],
                                data.epoch_permutation(n, 0, 1)[:2])


def test_process_slices_partition_the_global_batch():
  ds = _tagged(50)
  for position in (0, 48, 96):
    whole = data.batch_at(ds, position, batch_size=16, seed=5).labels
    parts = [data.batch_at(ds, position, batch_size=16, seed=5,
                           process_index=k, process_count=4).labels
             for k in range(4)]
    assert all(p.shape == (4,) for p in parts)
    np.testing.assert_array_equal(np.concatenate(parts), whole)
  host = data.BatchIterator(ds, batch_size=16, seed=5, process_index=2,
                            process_count=4)
  next(host)
  assert host.position == 16  # the global position, identical on every host


def test_unshuffled_stream_is_in_order():
  batch = data.batch_at(_tagged(5), 3, batch_size=4, seed=0, shuffle=False)
  np.testing.assert_array_equal(batch.labels, [3, 4, 0, 1])


def test_permutation_is_frozen_across_versions():
  # Changing this order would silently change resumed runs; it must not move.
  assert data.epoch_permutation(10, 0, 0).tolist() == [0, 7, 8, 2, 5, 9, 4, 6,
                                                       3, 1]


@pytest.mark.parametrize("kwargs, words", [
    (dict(batch_size=10, process_count=4), ["batch_size=10", "process_count=4"]),
    (dict(batch_size=8, process_index=2, process_count=2),
     ["process_index=2", "[0, process_count=2)"]),
    (dict(batch_size=0), ["batch_size=0", ">= 1"]),
    (dict(batch_size=8, position=-1), ["position=-1", ">= 0"]),
])
def test_bad_pipeline_arguments_raise_value_error(kwargs, words):
  with pytest.raises(ValueError) as err:
    data.BatchIterator(_tagged(10), **kwargs)
  for word in words:
    assert word in str(err.value)
