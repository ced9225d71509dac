"""edmjax: the EDM design space (Karras et al. 2022) as pure JAX functions."""

__version__ = "0.1.0"
