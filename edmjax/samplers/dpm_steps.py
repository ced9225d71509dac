"""Single steps of DPM-Solver-1, -2 and -3 (Lu et al. 2022) in λ = −log σ.

Lu, Zhou, Bao, Chen, Li, Zhu, "DPM-Solver: A Fast ODE Solver for Diffusion
Probabilistic Model Sampling in Around 10 Steps" (arXiv 2206.00927), Algorithms 4–5
with the noise prediction ε(x; σ) = (x − D(x; σ))/σ of an EDM denoiser (σ(t) = t,
s(t) = 1, so α = 1 and the half-log-SNR is λ = −log σ). From λ to λ' = λ + h, with
σ(λ) = e^{−λ}:

.. math::
  x_1 &= x − σ(λ') (e^h − 1)\\, ε(x; λ),\\\\
  x_2 &= x_1 − \\frac{σ(λ')}{2 r_1} (e^h − 1) (ε(u_1; s_1) − ε(x; λ)),\\quad
         s_1 = λ + r_1 h,\\ u_1 = x − σ(s_1)(e^{r_1 h} − 1) ε(x; λ),\\\\
  x_3 &= x_1 − \\frac{σ(λ')}{r_2}\\Big(\\frac{e^h − 1}{h} − 1\\Big)(ε(u_2; s_2) − ε(x; λ)),

u_2 = x − σ(s_2)(e^{r_2 h} − 1) ε − σ(s_2) (r_2/r_1) ((e^{r_2 h} − 1)/(r_2 h) − 1)
(ε(u_1; s_1) − ε), with (r_1, r_2) = (1/3, 2/3): the forms of k-diffusion's
`DPMSolver`, shared by `dpm_fast_sampler` and `dpm_adaptive_sampler`. The step
arguments λ, λ' (and h) are scalars, or one per sample (shape (B,)) for adaptive
step sizes.
"""

from __future__ import annotations

import jax.numpy as jnp

__all__ = ["sigma_of_lambda", "lambda_of_sigma", "eps_at", "dpm_solver_1_step",
           "dpm_solver_2_step", "dpm_solver_3_step"]


def sigma_of_lambda(lam):
  """σ = e^{−λ}."""
  return jnp.exp(-lam)


def lambda_of_sigma(sigma):
  """λ = −log σ."""
  return -jnp.log(sigma)


def _image(v, x):
  """A scalar, or a (B,) vector reshaped to (B, 1, 1, 1), to scale NHWC `x`."""
  v = jnp.asarray(v, x.dtype)
  return v if v.ndim == 0 else jnp.reshape(v, (-1,) + (1,) * (x.ndim - 1))


def eps_at(denoise, x, lam):
  """(ε(x; σ), D(x; σ)) at σ = e^{−λ}: ε = (x − D)/σ."""
  sigma = sigma_of_lambda(jnp.asarray(lam, x.dtype))
  denoised = jnp.asarray(
      denoise(x, jnp.broadcast_to(sigma, (x.shape[0],)))).astype(x.dtype)
  return (x - denoised) / _image(sigma, x), denoised


def dpm_solver_1_step(x, eps, lam, lam_next):
  """DPM-Solver-1 (DDIM): x − σ(λ') (e^h − 1) ε, h = λ' − λ; no evaluation."""
  h = lam_next - lam
  return x - _image(sigma_of_lambda(lam_next) * jnp.expm1(h), x) * eps


def dpm_solver_2_step(denoise, x, eps, lam, lam_next, r1=0.5):
  """DPM-Solver-2 with intermediate point s_1 = λ + r_1 h; one evaluation.

  Returns `(x_2, eps_r1)`, the latter ε(u_1; s_1) (reused by the third-order step).
  """
  h = lam_next - lam
  s1 = lam + r1 * h
  u1 = x - _image(sigma_of_lambda(s1) * jnp.expm1(r1 * h), x) * eps
  eps_r1, _ = eps_at(denoise, u1, s1)
  sigma_next, expm1_h = sigma_of_lambda(lam_next), jnp.expm1(h)
  x2 = (x - _image(sigma_next * expm1_h, x) * eps
        - _image(sigma_next / (2 * r1) * expm1_h, x) * (eps_r1 - eps))
  return x2, eps_r1


def dpm_solver_3_step(denoise, x, eps, lam, lam_next, eps_r1=None, r1=1 / 3, r2=2 / 3):
  """DPM-Solver-3 with intermediate points λ + r_1 h, λ + r_2 h.

  Two evaluations, or one when `eps_r1` (ε at the first intermediate point, as
  returned by `dpm_solver_2_step` with the same r_1) is given.
  """
  h = lam_next - lam
  s1, s2 = lam + r1 * h, lam + r2 * h
  if eps_r1 is None:
    u1 = x - _image(sigma_of_lambda(s1) * jnp.expm1(r1 * h), x) * eps
    eps_r1, _ = eps_at(denoise, u1, s1)
  sigma_s2, expm1_r2h = sigma_of_lambda(s2), jnp.expm1(r2 * h)
  u2 = (x - _image(sigma_s2 * expm1_r2h, x) * eps
        - _image(sigma_s2 * (r2 / r1) * (expm1_r2h / (r2 * h) - 1), x) * (eps_r1 - eps))
  eps_r2, _ = eps_at(denoise, u2, s2)
  sigma_next, expm1_h = sigma_of_lambda(lam_next), jnp.expm1(h)
  return (x - _image(sigma_next * expm1_h, x) * eps
          - _image(sigma_next / r2 * (expm1_h / h - 1), x) * (eps_r2 - eps))
