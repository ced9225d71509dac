"""The Gaussian mixture the sampler tests draw from, and the check of its statistics.

Three components on (4, 4, 1) images; `check_mixture(samples)` assigns each sample to
its most likely component and asserts every weight within 2 points and every
component's mean and std within 2% (relative).
"""

import jax.numpy as jnp
import numpy as np

from edmjax import oracle

GMM_MEANS = (np.array([-1.5, 0.5, 2.0])[:, None, None, None]
             * np.linspace(0.8, 1.2, 16).reshape(1, 4, 4, 1))    # (K=3, 4, 4, 1)
GMM_STDS = np.array([0.3, 0.15, 0.4])
GMM_WEIGHTS = np.array([0.5, 0.2, 0.3])
GMM_DENOISE = oracle.gmm_denoiser(GMM_MEANS, GMM_STDS, GMM_WEIGHTS)


def check_mixture(samples):
  """Weights within 2 points; each component's mean and std within 2% (relative)."""
  x = np.asarray(samples, np.float64)
  component = np.asarray(oracle.gmm_assign(jnp.asarray(x), GMM_MEANS, GMM_STDS,
                                           GMM_WEIGHTS))
  for k in range(len(GMM_WEIGHTS)):
    xk = x[component == k]
    weight = len(xk) / len(x)
    mean = xk.mean(axis=0)
    std = np.sqrt(np.mean((xk - mean)**2))
    mean_err = np.linalg.norm(mean - GMM_MEANS[k]) / np.linalg.norm(GMM_MEANS[k])
    assert abs(weight - GMM_WEIGHTS[k]) <= 0.02, (k, weight)
    assert mean_err <= 0.02, (k, mean_err)
    assert abs(std / GMM_STDS[k] - 1) <= 0.02, (k, std)
