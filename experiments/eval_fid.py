"""FID / FD of a checkpoint or an image folder, and reference statistics to compare with.

Two commands:

  ref   writes reference statistics (.npz: mu, sigma, count, metadata) of real images:
        an edmjax data set by name (--dataset digits, lfw_subset, folder:..., tfds:...)
        or a folder of PNG/JPEG images (--images DIR --resolution R)
  fd    Fréchet distance of generated images against reference statistics (--ref); the
        images come from a training work directory (--checkpoint WORKDIR: N samples with
        any sampler, e.g. --sampler edm --num-steps 18) or from a folder (--images DIR)

NVlabs/edm's reference statistics (`fid.py ref`, e.g. the published cifar10-32x32.npz:
an .npz with just mu and sigma) are accepted by --ref, and `ref` writes a file
NVlabs' fid.py reads (mu, sigma, plus count and metadata). NVlabs computes its
statistics with StyleGAN3's TorchScript Inception, edmjax with a Flax port using the
pytorch-fid weights: the same TensorFlow graph, an unmeasured difference
(docs/pretrained.md); a note says so when a reference carries no edmjax metadata.

Features: --features inception (the standard FID Inception-v3; needs the weights
file pt_inception-2015-12-05-6726825d.pth, given by --inception PATH or
$EDMJAX_INCEPTION_WEIGHTS) or --features digits (the embedded digits classifier,
offline: FD_digits). With digits features and no --ref, the reference is the
classifier's own training digits (FD_digits as edmjax.eval.digits_metrics reports it).

Samples use per-seed latents and keys (seed s gives the same image in any batch).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from edmjax import cli  # noqa: E402  pylint: disable=wrong-import-position
import guidance_args  # noqa: E402  pylint: disable=wrong-import-position
import sample  # noqa: E402  pylint: disable=wrong-import-position  (check_writable)

EXAMPLES = """
Examples:
  # offline: FD_digits of 1,000 Heun samples (35 NFE) of an EDM digits run
  python experiments/eval_fid.py fd --checkpoint out/digits_edm --features digits \\
      --num-images 1000
  # a DDPM run with DDIM at 100 steps, and through the VP bridge with EDM's Heun
  python experiments/eval_fid.py fd --checkpoint out/digits_ddpm --sampler ddim --num-steps 100
  python experiments/eval_fid.py fd --checkpoint out/digits_ddpm --sampler edm --num-steps 18
  # FID: reference statistics of an image folder, then FID of a run against them
  python experiments/eval_fid.py ref --images data/cifar10_train --resolution 32 \\
      --features inception --inception ~/weights/pt_inception-2015-12-05-6726825d.pth \\
      --out refs/cifar10.npz
  python experiments/eval_fid.py fd --checkpoint out/cifar10_ddpmpp --ref refs/cifar10.npz \\
      --features inception --num-images 50000
  # what would run
  python experiments/eval_fid.py fd --checkpoint out/digits_edm --dry-run
"""


_Formatter = cli.HelpFormatter


def parse_args(argv=None):
  p = argparse.ArgumentParser(description=__doc__ + EXAMPLES, formatter_class=_Formatter)
  cli.add_debug_option(p)
  sub = p.add_subparsers(dest="command", required=True, metavar="{ref,fd}")

  def common(q):
    q.add_argument("--features", default="digits", choices=("inception", "digits"),
                   help="feature network")
    q.add_argument("--inception", default=None, metavar="PATH",
                   help="FID Inception weights (None: $EDMJAX_INCEPTION_WEIGHTS)")
    q.add_argument("--images", default=None, metavar="DIR", help="a folder of images")
    q.add_argument("--resolution", type=int, default=None, metavar="R",
                   help="resize folder images to R x R (required with --images)")
    q.add_argument("--channels", type=int, default=None, metavar="C",
                   help="1 or 3 (None: the source's own; folders: 3)")
    q.add_argument("--batch", type=int, default=256, metavar="B", help="batch size")
    q.add_argument("--dry-run", action="store_true", help="print the plan and exit")

  r = sub.add_parser("ref", help="write reference statistics", formatter_class=_Formatter)
  common(r)
  r.add_argument("--dataset", default=None, metavar="NAME",
                 help="an edmjax data set: digits, lfw_subset, folder:PATH, tfds:NAME")
  r.add_argument("--max-images", type=int, default=None, metavar="N",
                 help="use at most the first N images")
  r.add_argument("--out", required=True, metavar="FILE.npz", help="output statistics")

  f = sub.add_parser("fd", help="Fréchet distance against reference statistics",
                     formatter_class=_Formatter)
  common(f)
  f.add_argument("--ref", default=None, metavar="FILE.npz",
                 help="reference statistics (digits features: default the classifier's "
                      "training digits)")
  f.add_argument("--checkpoint", default=None, metavar="WORKDIR",
                 help="training work directory to sample from")
  f.add_argument("--step", type=int, default=None, metavar="N", help="checkpoint step")
  f.add_argument("--sampler", default="edm", metavar="NAME",
                 help="any sampler of edmjax.sampling (experiments/sample.py "
                      "--list-samplers); a DDPM run with an EDM-family sampler goes "
                      "through the VP bridge")
  f.add_argument("--num-steps", type=int, default=None, metavar="N",
                 help="sampler steps (None: the sampler's default, 18 for edm)")
  f.add_argument("--opt", action="append", default=[], metavar="NAME=VALUE",
                 help="other sampler option (repeatable), e.g. S_churn=10")
  f.add_argument("--cpu-devices", type=int, default=None, metavar="N",
                 help="on CPU, split the host into N JAX devices for sampling (default: "
                      "one per core, as many as divide --batch; 0 = leave one device); "
                      "sample on at most N devices")
  guidance_args.add_arguments(f)
  f.add_argument("--num-images", type=int, default=1000, metavar="N")
  f.add_argument("--seed", type=int, default=0, metavar="S", help="first seed")
  f.add_argument("--save-images", default=None, metavar="FILE.npz",
                 help="also save the generated images")
  f.add_argument("--json", default=None, metavar="FILE", help="write the result as JSON")
  return p.parse_args(argv)


def _batches(images, batch):
  for i in range(0, len(images), batch):
    yield images[i:i + batch]


def _folder_images(args):
  from edmjax.data import sources  # pylint: disable=g-import-not-at-top
  if args.resolution is None:
    raise SystemExit("error: --images needs --resolution R (images are centre-cropped and "
                     "resized to R x R).")
  ds = sources.load_image_folder(args.images, args.resolution, channels=args.channels or 3)
  return ds.images


def _network(args):
  from edmjax.eval import features  # pylint: disable=g-import-not-at-top
  try:
    return features.feature_network(args.features, inception_path=args.inception)
  except FileNotFoundError as e:
    raise SystemExit(f"error: {e}") from None


def _stats(net, images, batch):
  import jax  # pylint: disable=g-import-not-at-top
  from edmjax.eval import features  # pylint: disable=g-import-not-at-top
  apply = jax.jit(net.apply)
  return features.accumulate_feature_stats(lambda x: apply(net.variables, x),
                                           _batches(images, batch), net.dim)


def cmd_ref(args):
  if (args.dataset is None) == (args.images is None):
    print("error: give exactly one of --dataset NAME or --images DIR.", file=sys.stderr)
    return 2
  source = args.dataset or f"folder {args.images}"
  print(f"reference statistics of {source} with {args.features} features -> {args.out}")
  if args.dry_run:
    return 0
  from edmjax.data import sources  # pylint: disable=g-import-not-at-top
  from edmjax.eval import frechet  # pylint: disable=g-import-not-at-top
  net = _network(args)
  if args.images:
    images = _folder_images(args)
  else:
    ds = sources.load_dataset(args.dataset, resolution=args.resolution,
                              channels=args.channels)
    images = getattr(ds, "images", None)
    if images is None:
      import numpy as np  # pylint: disable=g-import-not-at-top
      n = len(ds) if args.max_images is None else min(len(ds), args.max_images)
      images = ds.get(np.arange(n))[0]
  if args.max_images:
    images = images[:args.max_images]
  stats = _stats(net, images, args.batch)
  mu, sigma = frechet.feature_mean_cov(stats)
  os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
  frechet.save_reference_stats(args.out, mu, sigma, count=int(stats.count),
                               metadata={**net.metadata, "source": source,
                                         "resolution": args.resolution})
  print(f"wrote {args.out}: {int(stats.count)} images, {net.dim}-d features")
  return 0


def sampler_spec(args):
  """The sampler of `fd` (checked before anything slow)."""
  from edmjax import sampling  # pylint: disable=g-import-not-at-top
  opts = list(args.opt) + ([] if args.num_steps is None else [f"num_steps={args.num_steps}"])
  spec = sampling.SamplerSpec.parse(args.sampler, opts)
  if spec.name == "headstart":
    raise ValueError("--sampler headstart starts from an image; choose a sampler that "
                     "starts from noise.")
  return spec


def generate_images(args, spec):
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from edmjax.train import generate  # pylint: disable=g-import-not-at-top
  _, model, info, model_fn, variables, what = guidance_args.load(args.checkpoint, args,
                                                                 step=args.step)
  seeds = np.arange(args.seed, args.seed + args.num_images, dtype=np.int64)
  labels = (seeds % info.label_dim).astype(np.int32) if info.label_dim else None
  mesh = (generate.generation_mesh(args.batch, jax.devices()[:args.cpu_devices])
          if args.cpu_devices else None)
  images = generate.generate(model_fn, seeds, spec, image_shape=info.image_shape,
                             batch_size=args.batch, class_labels=labels,
                             variables=variables, mesh=mesh, progress=True)
  nfe = spec.nfe(model.eps.T if model.eps is not None else None)
  return images, f"{what}, {spec.label} ({nfe} NFE)"


def _reference(args, net):
  """The reference statistics of `fd`, checked against the feature network (None: error)."""
  if not args.ref:
    from edmjax.eval import load_digits_classifier  # pylint: disable=g-import-not-at-top
    return load_digits_classifier().reference
  from edmjax.eval import frechet  # pylint: disable=g-import-not-at-top
  try:
    ref = frechet.load_reference_stats(args.ref)
  except (OSError, ValueError) as e:
    print(f"error: --ref {args.ref}: {e}", file=sys.stderr)
    return None
  meta_net = ref.metadata.get("network")
  if meta_net and meta_net != net.metadata["network"]:
    print(f"error: {args.ref} holds {meta_net} statistics, but --features "
          f"{args.features} was asked for.", file=sys.stderr)
    return None
  if ref.mu.shape[0] != net.dim:
    print(f"error: --ref {args.ref} holds {ref.mu.shape[0]}-d statistics; --features "
          f"{args.features} gives {net.dim}-d features.", file=sys.stderr)
    return None
  if not ref.metadata and args.features == "inception":
    print(f"note: {args.ref} has no edmjax metadata (NVlabs' fid.py or pytorch-fid "
          "statistics). NVlabs computes them with StyleGAN3's TorchScript Inception; edmjax "
          "uses a Flax port with the pytorch-fid weights, the same TensorFlow graph. Their "
          "difference is unmeasured (docs/pretrained.md).")
  return ref


def _usage_error(message):
  raise cli.UsageError(message)


def cmd_fd(args):
  if (args.checkpoint is None) == (args.images is None):
    print("error: give exactly one of --checkpoint WORKDIR or --images DIR.", file=sys.stderr)
    return 2
  if args.ref is None and args.features != "digits":
    print("error: --ref FILE.npz is required with inception features (make one with the "
          "'ref' command).", file=sys.stderr)
    return 2
  if args.batch < 1:
    raise cli.UsageError(f"--batch={args.batch} is not allowed; it must be >= 1.")
  if args.ref is not None and not os.path.isfile(args.ref):
    raise cli.UsageError(f"--ref={args.ref!r} does not exist or is not a file.")
  spec = None
  if args.checkpoint:
    if args.num_images < 2:
      raise cli.UsageError(f"--num-images={args.num_images} is not allowed; a Fréchet "
                           "distance needs the covariance of >= 2 images (use thousands: "
                           "FID is biased at small counts).")
    if not os.path.isfile(os.path.join(args.checkpoint, "config.json")):
      raise cli.UsageError(f"--checkpoint={args.checkpoint!r} has no config.json; pass a "
                           "work directory of experiments/train.py.")
    spec = sampler_spec(args)
    guidance_args.check(args, _usage_error)
    if args.cpu_devices != 0:
      from edmjax.train import parallel  # pylint: disable=g-import-not-at-top
      parallel.split_cpu_into_devices(args.batch, max_devices=args.cpu_devices)
  what = (f"{args.num_images} samples of {args.checkpoint} ({spec!r})" if args.checkpoint
          else f"folder {args.images}")
  ref_name = args.ref or "the digits classifier's training digits"
  print(f"FD with {args.features} features: {what} vs {ref_name}")
  if args.dry_run:
    return 0
  import numpy as np  # pylint: disable=g-import-not-at-top
  net = _network(args)
  ref = _reference(args, net)  # before anything slow
  if ref is None:
    return 2
  for option in ("save_images", "json"):
    path = getattr(args, option)
    if path:  # before sampling: a folder that cannot be written fails now, not after
      sample.check_writable(os.path.dirname(os.path.abspath(path)),
                            "--" + option.replace("_", "-"))
  t0 = time.time()
  if args.checkpoint:
    try:
      images, what = generate_images(args, spec)
    except (FileNotFoundError, ValueError) as e:
      print(f"error: {e}", file=sys.stderr)
      return 2
    if args.save_images:
      np.savez(args.save_images, images=images)
  else:
    images = _folder_images(args)
  t_gen = time.time() - t0
  if not np.all(np.isfinite(images)):
    print(f"error: {int(np.sum(~np.isfinite(images)))} generated pixel values are not "
          "finite; the model or sampler diverged (see experiments/diagnose.py).",
          file=sys.stderr)
    return 1
  images = np.clip(images, -1.0, 1.0)
  from edmjax.eval import frechet  # pylint: disable=g-import-not-at-top
  stats = _stats(net, images, args.batch)
  mu, sigma = frechet.feature_mean_cov(stats)
  fd = frechet.frechet_distance(mu, sigma, ref.mu, ref.sigma)
  name = "FID" if args.features == "inception" else "FD_digits"
  result = {"metric": name, "value": fd, "num_images": int(stats.count), "images": what,
            "reference": ref_name, "reference_count": int(ref.count),
            "seconds_generating": t_gen, "seconds_total": time.time() - t0}
  print(f"{name} = {fd:.4f}  ({int(stats.count)} images: {what})")
  if args.json:
    with open(args.json, "w", encoding="utf-8") as f:
      json.dump(result, f, indent=1)
  return 0


@cli.entry_point
def main(argv=None):
  args = parse_args(argv)
  return cmd_ref(args) if args.command == "ref" else cmd_fd(args)


if __name__ == "__main__":
  sys.exit(main())
