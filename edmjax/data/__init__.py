"""edmjax.data."""
