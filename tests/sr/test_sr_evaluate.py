"""The unseen-photographs table: bicubic against headstart, checked against direct runs."""

import jax
import jax.numpy as jnp
import numpy as np
from skimage.metrics import peak_signal_noise_ratio

from edmjax.nn.sr3_unet import SR3UNet
from edmjax.sr import degrade
from edmjax.sr import evaluate as sr_evaluate
from edmjax.sr import inference
from edmjax.sr import model as model_lib


def test_evaluate_photographs_matches_direct_runs():
  net = SR3UNet(img_resolution=16, channels=3, model_channels=8, channel_mult=(1,),
                channel_mult_emb=2, num_blocks=1, attn_resolutions=(), dropout=0.0)
  x = jnp.zeros((1, 16, 16, 3))
  variables = jax.jit(net.init)(jax.random.key(0), x, jnp.zeros((1,)), x)
  leaves, tree = jax.tree.flatten(variables)
  keys = jax.random.split(jax.random.key(1), len(leaves))
  variables = jax.tree.unflatten(tree, [v + 0.05 * jax.random.normal(k, v.shape)
                                        for v, k in zip(leaves, keys)])
  cfg = model_lib.SRConfig()
  smooth = jnp.linspace(-0.8, 0.8, 24)[None, None, :, None] * jnp.ones((1, 16, 1, 3))
  images = {"smooth": smooth,
            "noise": jax.random.uniform(jax.random.key(2), (1, 16, 16, 3), minval=-1,
                                        maxval=1)}
  rows = sr_evaluate.evaluate_photographs(net, variables, cfg, 0.1, images,
                                          sigma_start=0.3, log=None)
  assert [r["image"] for r in rows] == ["smooth", "noise"]
  assert rows[0]["shape"] == [16, 24]
  for r in rows:
    hr = images[r["image"]]
    lr = degrade.degrade_clean(hr, cfg.degrade)
    den, u = inference.sr_denoiser(net, variables, lr, cfg, 0.1)
    sr = inference.super_resolve(den, u, jax.random.key(0), mode="headstart",
                                 sigma_start=0.3, num_steps=1)
    bic = peak_signal_noise_ratio(np.asarray(hr[0], np.float64),
                                  np.asarray(u[0], np.float64), data_range=2.0)
    head = peak_signal_noise_ratio(np.asarray(hr[0], np.float64),
                                   np.asarray(sr[0], np.float64), data_range=2.0)
    np.testing.assert_allclose(r["bicubic_psnr"], bic, atol=2e-3)
    np.testing.assert_allclose(r["psnr"], head, atol=2e-3)
    np.testing.assert_allclose(r["gain"], r["psnr"] - r["bicubic_psnr"], atol=1e-9)
  table = sr_evaluate.format_photographs(rows)
  gains = [r["gain"] for r in rows]
  assert f"{np.mean(gains):+.2f} / {np.median(gains):+.2f}" in table
  assert table.count("\n") == 1 + len(rows) + 1
