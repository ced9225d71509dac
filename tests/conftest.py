"""Test configuration: 8 forced CPU devices (for the sharding tests) and strict ranks.

XLA_FLAGS must be set before jax is imported anywhere, so it is set here.
Tests that need float64 use `with jax.enable_x64(True):` locally.
"""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import jax  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")
