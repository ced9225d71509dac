"""edmjax.sr."""
