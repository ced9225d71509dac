"""Draw samples from a training work directory's newest checkpoint (EMA parameters).

Thin driver: restores the run (edmjax.train.load_state), wraps its network as a
denoiser (or, for DDPM runs, an ε-model) and calls the chosen sampler of
edmjax.samplers / edmjax.ddpm. Each seed has its own latents and noise key, so a
seed gives the same image at any --batch size. Writes a PNG grid and an .npz.
"""

from __future__ import annotations

import argparse
import inspect
import os
import sys

EXAMPLES = """
Examples:
  python experiments/sample.py --workdir out/digits_edm --seeds 0-63
  python experiments/sample.py --workdir out/digits_edm --sampler ablation \\
      --opt solver=euler --opt discretization=vp --opt num_steps=50
  python experiments/sample.py --workdir out/digits_edm --sampler dpmpp_2m --opt num_steps=10
  python experiments/sample.py --workdir out/digits_ddpm --sampler ddim --opt num_steps=50
  python experiments/sample.py --workdir out/digits_edm --class 3 --seeds 0-15
"""

SAMPLERS = ("edm", "ablation", "euler_ancestral", "dpmpp_2m", "ddpm", "ddim")


class _Formatter(argparse.RawDescriptionHelpFormatter,
                 argparse.ArgumentDefaultsHelpFormatter):
  pass


def parse_seeds(text: str) -> list[int]:
  """'0-63' or '1,5,9' or '0-3,10' -> a list of ints."""
  out = []
  for part in text.split(","):
    if "-" in part:
      a, b = part.split("-")
      out.extend(range(int(a), int(b) + 1))
    elif part.strip():
      out.append(int(part))
  return out


def _parse_opts(fn, opts):
  """'name=value' strings -> kwargs typed like `fn`'s keyword defaults."""
  params = inspect.signature(fn).parameters
  kwargs = {}
  for item in opts:
    name, _, text = item.partition("=")
    if name not in params or params[name].kind != inspect.Parameter.KEYWORD_ONLY:
      allowed = [n for n, p in params.items() if p.kind == inspect.Parameter.KEYWORD_ONLY]
      raise SystemExit(f"error: {fn.__name__} has no option {name!r}; options: {allowed}")
    default = params[name].default
    if isinstance(default, bool):
      value = text.lower() in ("1", "true", "yes")
    elif isinstance(default, int):
      value = int(text)
    elif isinstance(default, float) or default is None and text.replace(".", "").replace(
        "e-", "").replace("-", "").isdigit():
      value = float(text)
    else:
      value = text
    kwargs[name] = value
  return kwargs


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__ + EXAMPLES, formatter_class=_Formatter)
  p.add_argument("--workdir", required=True, metavar="DIR", help="training work directory")
  p.add_argument("--seeds", default="0-63", metavar="RANGE", help="e.g. 0-63 or 1,5,9")
  p.add_argument("--sampler", default="edm", choices=SAMPLERS)
  p.add_argument("--opt", action="append", default=[], metavar="NAME=VALUE",
                 help="sampler keyword option (repeatable), e.g. num_steps=32")
  p.add_argument("--class", dest="class_label", type=int, default=None, metavar="C",
                 help="class label for a class-conditional run (default: seed %% classes)")
  p.add_argument("--batch", type=int, default=64, metavar="N", help="seeds per batch")
  p.add_argument("--step", type=int, default=None, help="checkpoint step (default: newest)")
  p.add_argument("--out", default=None, metavar="PATH",
                 help="output path without extension (default: WORKDIR/generated/<sampler>)")
  args = p.parse_args(argv)

  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from edmjax import ddpm, samplers  # pylint: disable=g-import-not-at-top
  from edmjax.train import loop, models, monitor  # pylint: disable=g-import-not-at-top

  cfg, built, state = loop.load_state(args.workdir, step=args.step)
  is_ddpm = cfg.loss.objective == "ddpm"
  fns = {"edm": samplers.edm_sampler, "ablation": samplers.ablation_sampler,
         "euler_ancestral": samplers.euler_ancestral_sampler,
         "dpmpp_2m": samplers.dpmpp_2m_sampler, "ddpm": ddpm.ddpm_sampler,
         "ddim": ddpm.ddim_sampler}
  fn = fns[args.sampler]
  kwargs = _parse_opts(fn, args.opt)
  if args.sampler == "ddim":
    kwargs.setdefault("num_steps", 50)
  variables = {"params": state.ema_params, **state.buffers}
  dtype = models.compute_dtype(cfg.net)
  seeds = parse_seeds(args.seeds)
  image_shape = loop._geometry(cfg)[0]  # pylint: disable=protected-access

  def run(seed_batch, labels):
    latents, keys = models.seed_latents_and_keys(seed_batch, image_shape)
    class_labels = jax.nn.one_hot(labels, built.label_dim) if built.label_dim else None
    if args.sampler in ("ddpm", "ddim"):
      eps_fn = (models.make_eps_fn(built.model, variables, dtype=dtype,
                                   class_labels=class_labels) if is_ddpm else
                ddpm.ddpm_eps_from_denoiser(models.make_model_denoiser(
                    built.model, variables, cfg.loss, dtype=dtype,
                    class_labels=class_labels), models.ddpm_betas(cfg.loss)))
      betas = models.ddpm_betas(cfg.loss)
      if args.sampler == "ddpm":
        return ddpm.ddpm_sampler(eps_fn, latents, keys, betas, **kwargs)
      return ddpm.ddim_sampler(eps_fn, latents, betas, key=keys, **kwargs)
    if is_ddpm:
      denoise = ddpm.ddpm_as_denoiser(models.make_eps_fn(
          built.model, variables, dtype=dtype, class_labels=class_labels),
          models.ddpm_betas(cfg.loss))
    else:
      denoise = models.make_model_denoiser(built.model, variables, cfg.loss, dtype=dtype,
                                           class_labels=class_labels)
    return fn(denoise, latents, keys, **kwargs)

  run_jit = jax.jit(run)
  images = []
  for s in range(0, len(seeds), args.batch):
    chunk = np.asarray(seeds[s:s + args.batch], np.uint32)
    n = len(chunk)
    pad = np.concatenate([chunk, np.repeat(chunk[-1:], args.batch - n)])  # one shape
    if args.class_label is not None:
      labels = np.full(args.batch, args.class_label, np.int32)
    else:
      labels = (pad % max(built.label_dim, 1)).astype(np.int32)
    images.append(np.asarray(run_jit(jnp.asarray(pad), jnp.asarray(labels)))[:n])
  images = np.concatenate(images)
  out = args.out or os.path.join(args.workdir, "generated", args.sampler)
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  np.savez(out + ".npz", images=images, seeds=np.asarray(seeds))
  monitor.save_grid(out + ".png", np.clip(images, -1, 1))
  print(f"{len(seeds)} samples -> {out}.png, {out}.npz")
  return 0


if __name__ == "__main__":
  sys.exit(main())
