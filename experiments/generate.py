"""Generate images from an NVlabs/edm network pickle in JAX: NVlabs' generate.py, edmjax inside.

Loads the pickle with edmjax.pretrained.load_network (nothing in it is executed),
draws one image per seed with any sampler of edmjax.sampling and writes one PNG per
seed with NVlabs' naming (OUTDIR/000123.png, or OUTDIR/000000/000123.png with
--subdirs) and NVlabs' conversion (x * 127.5 + 128, clipped, truncated to uint8).

NVlabs' options keep their names and meaning: --steps --sigma_min --sigma_max --rho
--S_churn --S_min --S_max --S_noise run NVlabs' edm_sampler (Algorithm 2), and any of
--solver --disc --schedule --scaling switches to its ablation_sampler, as NVlabs'
generate.py does; the noise range is clipped to the network's and the steps are
rounded to its levels (edmjax.sampling.sample). --sampler NAME (--opt NAME=VALUE)
runs any other edmjax sampler (--list-samplers). --guidance W guides the network by
--guide-network PKL (autoguidance) or by itself without labels (classifier-free),
optionally only for σ in --guidance-interval LO,HI (edmjax.guidance).

Seeds. NVlabs draws each seed's latents from a torch generator seeded with the seed;
that stream cannot be reproduced in JAX. edmjax's rule (edmjax.keys): seed s gives
latents normal(fold_in(key(s), 0)) and the sampler's noise key fold_in(key(s), 1), so
an image depends on its seed only, not on --batch or the device count. To reproduce
NVlabs' images exactly, pass NVlabs' latents with --latents FILE.npz. Without --class,
a class-conditional network gets class seed % label_dim (NVlabs draws it at random).

The batch is split over every device (GPUs, or on a CPU one JAX device per core).
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import guidance_args  # noqa: E402  pylint: disable=wrong-import-position
import sample  # noqa: E402  pylint: disable=wrong-import-position  (--seeds, --list-samplers)
from edmjax import cli  # noqa: E402  pylint: disable=wrong-import-position

EXAMPLES = """
Examples:
  # 64 CIFAR-10 images with NVlabs' deterministic sampler (18 steps, 35 NFE)
  python experiments/generate.py --network edm-cifar10-32x32-cond-vp.pkl \\
      --outdir out/cifar10 --seeds 0-63 --batch 64
  # 50,000 images for FID, in subdirectories of 1,000 (NVlabs' layout)
  python experiments/generate.py --network edm-cifar10-32x32-cond-vp.pkl \\
      --outdir fid-tmp --seeds 0-49999 --subdirs
  # NVlabs' stochastic ImageNet settings (Table 5), class 88
  python experiments/generate.py --network edm-imagenet-64x64-cond-adm.pkl \\
      --outdir out/imagenet --class 88 --steps 256 --S_churn 40 --S_min 0.05 \\
      --S_max 50 --S_noise 1.003
  # the ablation sampler: Euler with VP discretization and schedule
  python experiments/generate.py --network baseline-cifar10-32x32-uncond-vp.pkl \\
      --outdir out/vp --solver euler --disc vp --schedule vp --scaling vp --steps 512
  # any edmjax sampler
  python experiments/generate.py --network edm-ffhq-64x64-uncond-vp.pkl \\
      --outdir out/ffhq --sampler dpmpp_2m --steps 10
  # NVlabs' own latents (an .npz with 'latents' NHWC, optional 'seeds', 'labels')
  python experiments/generate.py --network edm-afhqv2-64x64-uncond-vp.pkl \\
      --outdir out/afhq --latents nvlabs_latents.npz
  # autoguidance by a smaller network for σ in (0.28, 5.42] (NVlabs/edm2's --gnet);
  # without --guide-network, classifier-free guidance (the network without labels)
  python experiments/generate.py --network main.pkl --outdir out/guided \
      --guidance 2 --guide-network small.pkl --guidance-interval 0.28,5.42
  # what would run
  python experiments/generate.py --network net.pkl --outdir out/x --dry-run
"""

NVLABS_SAMPLER_OPTIONS = {  # NVlabs' option -> (edmjax option, NVlabs' default)
    "steps": ("num_steps", 18), "sigma_min": ("sigma_min", None),
    "sigma_max": ("sigma_max", None), "rho": ("rho", 7.0), "S_churn": ("S_churn", 0.0),
    "S_min": ("S_min", 0.0), "S_max": ("S_max", float("inf")), "S_noise": ("S_noise", 1.0),
    "solver": ("solver", None), "disc": ("discretization", None),
    "schedule": ("schedule", None), "scaling": ("scaling", None),
}
ABLATION_OPTIONS = ("solver", "disc", "schedule", "scaling")


_Formatter = cli.HelpFormatter


def image_path(outdir: str, seed: int, subdirs: bool) -> str:
  """NVlabs' file name of a seed's image."""
  folder = os.path.join(outdir, f"{seed - seed % 1000:06d}") if subdirs else outdir
  return os.path.join(folder, f"{seed:06d}.png")


def to_uint8(images):
  """NVlabs' conversion: (x * 127.5 + 128).clip(0, 255) truncated to uint8, NHWC."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  return np.clip(np.asarray(images, np.float32) * 127.5 + 128, 0, 255).astype(np.uint8)


def save_png(path: str, image) -> None:
  from PIL import Image  # pylint: disable=g-import-not-at-top
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  if image.shape[2] == 1:
    Image.fromarray(image[:, :, 0], "L").save(path)
  else:
    Image.fromarray(image, "RGB").save(path)


def build_parser():
  from edmjax import sampling  # pylint: disable=g-import-not-at-top
  p = argparse.ArgumentParser(description=__doc__ + EXAMPLES, formatter_class=_Formatter)
  cli.add_debug_option(p)
  p.add_argument("--network", metavar="PKL", help="NVlabs/edm network pickle (a local file)")
  p.add_argument("--outdir", metavar="DIR", help="where to save the PNGs")
  p.add_argument("--seeds", default="0-63", metavar="LIST", help="e.g. 0-63 or 0-3,10")
  p.add_argument("--subdirs", action="store_true",
                 help="one subdirectory per 1000 seeds (NVlabs' layout)")
  p.add_argument("--class", dest="class_idx", type=int, default=None, metavar="INT",
                 help="class label (default: seed %% label_dim for a conditional network)")
  p.add_argument("--batch", dest="max_batch_size", type=int, default=64, metavar="INT",
                 help="maximum batch size")
  g = p.add_argument_group(
      "NVlabs' sampler options (None: not set; NVlabs' defaults: steps 18, rho 7, "
      "S_churn 0, S_min 0, S_max inf, S_noise 1; sigma range 0.002-80 for the EDM "
      "sampler, the discretization's own for the ablation sampler)")
  g.add_argument("--steps", dest="steps", type=int, default=None, metavar="INT",
                 help="number of sampling steps (18)")
  for name in ("sigma_min", "sigma_max", "rho", "S_churn", "S_min", "S_max", "S_noise"):
    g.add_argument(f"--{name}", type=float, default=None, metavar="FLOAT", help=name)
  g.add_argument("--solver", choices=("euler", "heun"), default=None,
                 help="ablate ODE solver")
  g.add_argument("--disc", choices=("vp", "ve", "iddpm", "edm"), default=None,
                 help="ablate time step discretization {t_i}")
  g.add_argument("--schedule", choices=("vp", "ve", "linear"), default=None,
                 help="ablate noise schedule sigma(t)")
  g.add_argument("--scaling", choices=("vp", "none"), default=None,
                 help="ablate signal scaling s(t)")
  e = p.add_argument_group("edmjax options")
  e.add_argument("--sampler", default=None, choices=sampling.SAMPLER_NAMES,
                 help="edmjax sampler (None: NVlabs' rule, edm or ablation)")
  e.add_argument("--opt", action="append", default=[], metavar="NAME=VALUE",
                 help="sampler option (repeatable); see --list-samplers")
  e.add_argument("--list-samplers", action="store_true",
                 help="list every sampler with its options and defaults, then exit")
  e.add_argument("--latents", default=None, metavar="FILE.npz",
                 help="sample these latents ('latents' (n, H, W, C) unit Gaussian; optional "
                      "'seeds' (n,) for file names and sampler noise, 'labels' (n,))")
  e.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"),
                 help="the network's compute dtype (preconditioning stays float32)")
  e.add_argument("--cpu-devices", type=int, default=None, metavar="N",
                 help="on CPU, split the host into N JAX devices (default: one per core, "
                      "as many as divide --batch; 0 = leave one device)")
  e.add_argument("--no-progress", action="store_true", help="no progress bar")
  e.add_argument("--dry-run", action="store_true",
                 help="load the network, print what would run and exit")
  g = p.add_argument_group("guidance: D_w = D_guide + W (D_main - D_guide)")
  g.add_argument("--guidance", type=float, default=1.0, metavar="W",
                 help="guidance weight (1: none)")
  g.add_argument("--guide-network", default=None, metavar="PKL",
                 help="the guide (autoguidance: a smaller or shorter-trained network, "
                      "NVlabs/edm2's --gnet); default: classifier-free guidance with the "
                      "network itself without labels")
  g.add_argument("--guidance-interval", default=None, metavar="LO,HI",
                 help="guide only for sigma in (LO, HI] (Kynkäänniemi et al. 2024)")
  return p


def sampler_spec(args):
  """The SamplerSpec of NVlabs' options, --sampler and --opt (ValueError on conflicts)."""
  from edmjax import sampling  # pylint: disable=g-import-not-at-top
  given = {k: getattr(args, k) for k in NVLABS_SAMPLER_OPTIONS if getattr(args, k) is not None}
  name = args.sampler
  if name is None:
    name = "ablation" if any(k in given for k in ABLATION_OPTIONS) else "edm"
  allowed = sampling.SamplerSpec.options_of(name)
  opts = {}
  for k, v in given.items():
    option = NVLABS_SAMPLER_OPTIONS[k][0]
    if option not in allowed:
      raise ValueError(f"--{k} is not an option of sampler {name!r} (its options: "
                       f"{', '.join(allowed) or 'none'}).")
    opts[option] = v
  spec = sampling.SamplerSpec.parse(name, args.opt)
  clash = sorted(set(opts) & set(spec.kwargs) & {
      o.split("=", 1)[0].strip() for o in args.opt})
  if clash:
    raise ValueError(f"--opt {clash[0]}=... repeats an NVlabs option; give it once.")
  return spec.replace(**opts) if opts else spec


@cli.entry_point
def main(argv=None):
  p = build_parser()
  args = p.parse_args(argv)
  if args.list_samplers:
    sample.print_samplers()
    return 0
  if not args.network or not args.outdir:
    p.error("--network and --outdir are required")
  if args.max_batch_size < 1:
    p.error(f"--batch={args.max_batch_size} is not allowed; it must be >= 1")
  try:
    spec = sampler_spec(args)
    seeds = None if args.latents else sample.parse_seeds(args.seeds)
  except ValueError as e:
    p.error(str(e))
  if args.network.startswith(("http://", "https://")):
    p.error(f"--network {args.network!r} is a URL; edmjax does not download. Fetch it "
            f"first (e.g. curl -O {args.network}) and pass the local file")
  for option, path in (("--network", args.network), ("--guide-network", args.guide_network)):
    if path is not None and not os.path.isfile(path):
      p.error(f"{option} {path!r} does not exist")
  guided = guidance_args.check_weight_and_interval(args, p.error, "guide_network")
  sample.check_writable(args.outdir, "--outdir")
  latents_file = None
  if args.latents:
    if not os.path.isfile(args.latents):
      p.error(f"--latents {args.latents!r} does not exist")
    latents_file = _read_latents(p, args.latents)

  from edmjax.train import parallel  # pylint: disable=g-import-not-at-top
  if args.cpu_devices != 0:
    parallel.split_cpu_into_devices(args.max_batch_size, max_devices=args.cpu_devices)
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  from edmjax import pretrained  # pylint: disable=g-import-not-at-top
  from edmjax.train import generate, models  # pylint: disable=g-import-not-at-top

  try:
    net = pretrained.load_network(args.network)
  except (ValueError, FileNotFoundError) as e:
    p.error(f"--network: {e}")
  shape = (net.img_resolution, net.img_resolution, net.img_channels)
  gnet = None
  if args.guide_network is not None:
    try:
      gnet = pretrained.load_network(args.guide_network)
    except (ValueError, FileNotFoundError) as e:
      p.error(f"--guide-network: {e}")
    gshape = (gnet.img_resolution, gnet.img_resolution, gnet.img_channels)
    if gshape != shape:
      p.error(f"--guide-network makes {gshape} images, --network {shape}")
    if gnet.label_dim not in (0, net.label_dim):
      p.error(f"--guide-network has label_dim {gnet.label_dim}, --network "
              f"{net.label_dim}")
  elif guided and not net.label_dim:
    p.error(f"--guidance {args.guidance:g} without --guide-network is classifier-free "
            "guidance, which needs a class-conditional network; this one is "
            "unconditional (give a guide with --guide-network)")
  if latents_file is not None:
    latents, seeds, labels = latents_file
    if latents.shape[1:] != shape:
      p.error(f"--latents holds shape {latents.shape}; the network makes "
              f"(n, {', '.join(map(str, shape))}) images")
  else:
    latents, labels = None, None
  if args.class_idx is not None:
    if not net.label_dim:
      p.error(f"--class {args.class_idx}: the network is unconditional (label_dim=0)")
    if not 0 <= args.class_idx < net.label_dim:
      p.error(f"--class {args.class_idx} is not allowed; the network has "
              f"{net.label_dim} classes (0 to {net.label_dim - 1})")
    labels = np.full(len(seeds), args.class_idx, np.int32)
  elif net.label_dim and labels is None:
    labels = (np.asarray(seeds, np.int64) % net.label_dim).astype(np.int32)
  elif labels is not None and not net.label_dim:
    p.error("--latents holds 'labels', but the network is unconditional")
  if labels is not None and labels.size and (labels.min() < 0 or labels.max() >= net.label_dim):
    p.error(f"labels must lie in [0, {net.label_dim - 1}]")

  devices = jax.devices()[:args.cpu_devices] if args.cpu_devices else None
  mesh = generate.generation_mesh(args.max_batch_size, devices)
  n_params = sum(int(np.prod(a.shape)) for a in jax.tree_util.tree_leaves(net.variables))
  print(f"{args.network}: {net.class_name} over {net.arch} ({n_params:,} parameters), "
        f"{shape[0]}x{shape[1]}x{shape[2]}, label_dim {net.label_dim}, sigma "
        f"[{net.sigma_min:.6g}, {net.sigma_max:.6g}]")
  print(f"{len(seeds)} images with {spec!r} ({spec.nfe()} NFE), batch "
        f"{args.max_batch_size} over {mesh.devices.size} {jax.default_backend()} device(s), "
        f"{args.dtype} -> {image_path(args.outdir, int(seeds[0]), args.subdirs)} ...")
  if guided:
    print(f"guidance w={args.guidance:g} by " + (
        f"{args.guide_network} ({gnet.class_name} over {gnet.arch})" if gnet else
        "the network without labels (classifier-free)") + (
        "" if args.interval is None else
        f" for sigma in ({args.interval[0]:g}, {args.interval[1]:g}]"))
  if args.dry_run:
    return 0

  dtype = jnp.bfloat16 if args.dtype == "bfloat16" else None
  model_fn = net.make_model if dtype is None else _WithDtype(net, dtype)
  variables = net.variables
  if guided:
    guide_fn = None if gnet is None else (
        gnet.make_model if dtype is None else _WithDtype(gnet, dtype))
    model_fn = models.GuidedModelFn(model_fn, guide_fn, args.interval)
    variables = {"main": net.variables, "guide": {} if gnet is None else gnet.variables,
                 "guidance": np.float32(args.guidance)}
  chunk = args.max_batch_size * max(1, 16 // max(1, -(-args.max_batch_size // 64)))
  from tqdm.auto import tqdm  # pylint: disable=g-import-not-at-top
  bar = tqdm(total=len(seeds), unit="img", file=sys.stderr, dynamic_ncols=True,
             disable=args.no_progress)
  try:
    for start in range(0, len(seeds), chunk):
      part = slice(start, start + chunk)
      part_labels = None if labels is None else labels[part]
      if latents is None:
        images = generate.generate(model_fn, seeds[part], spec, image_shape=shape,
                                   batch_size=args.max_batch_size,
                                   class_labels=part_labels, variables=variables,
                                   mesh=mesh)
      else:
        images = generate.generate(model_fn, seeds[part], spec, image_shape=shape,
                                   batch_size=args.max_batch_size,
                                   class_labels=part_labels, variables=variables,
                                   mesh=mesh, latents=latents[part])
      for seed, image in zip(seeds[part], to_uint8(images)):
        save_png(image_path(args.outdir, int(seed), args.subdirs), image)
      bar.update(len(images))
  finally:
    bar.close()
  print(f"wrote {len(seeds)} images to {args.outdir}")
  return 0


class _WithDtype:
  """`variables -> model` in a compute dtype (hashable, so programs are cached)."""

  def __init__(self, net, dtype):
    self.net, self.dtype = net, dtype

  def __call__(self, variables):
    return self.net.make_model(variables, compute_dtype=self.dtype)

  def __eq__(self, other):
    return (isinstance(other, _WithDtype) and other.net is self.net
            and other.dtype == self.dtype)

  def __hash__(self):
    return hash((id(self.net), str(self.dtype)))


def _read_latents(p, path):
  import numpy as np  # pylint: disable=g-import-not-at-top
  with np.load(path, allow_pickle=False) as f:
    if "latents" not in f:
      p.error(f"--latents {path!r} holds {sorted(f.keys())}; it needs 'latents' "
              "(n, H, W, C)")
    latents = np.asarray(f["latents"], np.float32)
    seeds = np.asarray(f["seeds"]) if "seeds" in f else np.arange(len(latents))
    labels = np.asarray(f["labels"]) if "labels" in f else None
  if latents.ndim != 4 or not len(latents):
    p.error(f"--latents: 'latents' has shape {latents.shape}; expected (n, H, W, C), n >= 1")
  if seeds.shape != (len(latents),) or not np.issubdtype(seeds.dtype, np.integer):
    p.error(f"--latents: 'seeds' has shape {seeds.shape}; expected ({len(latents)},) ints")
  if labels is not None and (labels.shape != (len(latents),) or
                             not np.issubdtype(labels.dtype, np.integer)):
    p.error(f"--latents: 'labels' has shape {labels.shape}; expected ({len(latents)},) "
            "integer classes")
  return latents, seeds.astype(np.int64), None if labels is None else labels.astype(np.int32)


if __name__ == "__main__":
  sys.exit(main())
