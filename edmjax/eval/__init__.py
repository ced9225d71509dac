"""edmjax.eval."""
