"""edmjax.train."""
