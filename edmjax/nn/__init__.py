"""edmjax.nn."""
