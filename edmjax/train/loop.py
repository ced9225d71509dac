"""Training a diffusion model: `train(config, workdir)`; loading it back: `load_run(workdir)`.

`train` builds the run (`build`: the network, Adam, and the jitted init, step and
sample-grid programs) and runs it on the generic loop of `edmjax.train.runner` with
its hooks: metrics (fetched one step late, so the host never waits on the step),
checkpoints and sample grids (`edmjax.train.generate`, the program every script
samples with). The loop is the outermost driver, so it is where `jax.jit` is
applied: the step (`edmjax.train.step.make_train_step`) is jitted once per process
and configuration, with the state replicated and the batch sharded over a mesh of
every device (`edmjax.train.parallel`); data, keys and σ are array arguments and
never recompile it.

`load_run(workdir)` gives (config, model, info) for sampling: the EMA network as a
model value (`models.run_model`) from config.json and the checkpoint alone.

A work directory holds:

  config.json        the resolved config: σ_data estimated from the data when None,
                     the data's image shape and class count (so that `load_run`
                     builds the model without the data)
  checkpoints/<step> orbax checkpoints of the `TrainState` (last `keep_checkpoints`)
  metrics.jsonl      one JSON object per `log_every` steps
  loss.png           loss and loss per σ bin against kimg
  loss_per_sigma.csv the same numbers as CSV
  samples/           sample grids (EMA parameters): step_<step>.png and .npz
  snapshots/         EMA tracks every `snapshot_nimg` images (`optim.ema_stds`;
                     `edmjax.train.snapshots`), for post-hoc EMA
  neighbours.json    nearest-training-neighbour distances: samples vs held-out images

Calling `train` again on the same work directory resumes from its newest complete
checkpoint (parameters, EMA, Adam state, RNG key, data position and skip counters),
and the continued run is identical to an uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.experimental import multihost_utils
import numpy as np

from edmjax.data import augmentation
from edmjax.data import pipeline
from edmjax.data import sources
from edmjax.data import stats
from edmjax.model import Denoiser
from edmjax.train import checkpoint
from edmjax.train import generate
from edmjax.train import models
from edmjax.train import monitor
from edmjax.train import optim
from edmjax.train import parallel
from edmjax.train import runner
from edmjax.train import snapshots
from edmjax.train import step as step_lib
from edmjax.train.config import (SampleConfig, TrainConfig, from_json, to_dict, to_json,
                                 validate)
from edmjax.train.state import TrainState, count_params, init_state, init_variables

__all__ = ["train", "TrainResult", "TrainingDivergedError", "load_data", "resolve_config",
           "build", "Built", "read_config", "load_run", "RunInfo", "DataBundle",
           "training_images", "grid_seeds_and_labels", "write_snapshots"]

_INIT_COMPILER_OPTIONS = {"xla_backend_optimization_level": 0}  # init runs once


class TrainingDivergedError(RuntimeError):
  """Raised when `max_consecutive_bad_steps` steps in a row had a non-finite loss."""


class TrainResult(NamedTuple):
  """What `train` returns: the final state and where the outputs are."""
  state: TrainState
  config: TrainConfig
  workdir: str
  neighbours: dict | None


class DataBundle(NamedTuple):
  """The training source, held-out real images (or None) and the data's geometry."""
  source: Any
  heldout: np.ndarray | None
  image_shape: tuple[int, int, int]
  num_classes: int


def load_data(cfg: TrainConfig, source=None) -> DataBundle:
  """Loads `cfg.data` (or uses `source`) and holds out `data.holdout` examples: a
  seeded sample (`data.seed`), stratified by class when the source has labels
  (`edmjax.data.split_holdout`), never a whole class."""
  dc = cfg.data
  if source is None:
    source = sources.load_dataset(dc.name, resolution=dc.resolution, channels=dc.channels,
                                  split=dc.split, data_dir=dc.data_dir)
  source, heldout = sources.split_holdout(source, dc.holdout, seed=dc.seed)
  first = source.get(np.arange(1))[0]
  return DataBundle(source=source, heldout=heldout, image_shape=tuple(first.shape[1:]),
                    num_classes=int(source.num_classes))


def training_images(source, max_examples: int = 8192) -> np.ndarray:
  """The training images of `source` (NHWC), or `max_examples` evenly spread ones."""
  images = getattr(source, "images", None)
  if images is not None:
    return np.asarray(images)
  n = len(source)
  idx = np.linspace(0, n - 1, min(n, max_examples)).astype(np.int64)
  return source.get(idx)[0]


def resolve_config(cfg: TrainConfig, data: DataBundle) -> TrainConfig:
  """Fills what depends on the data: σ_data (when None) from the training images, and
  the data's image shape and class count (`data.image_shape`, `data.num_classes`).

  Raises:
    ValueError: a class-conditional run on a source without classes, or an
      `image_shape` / `num_classes` set in the config that the data does not have.
  """
  if cfg.loss.sigma_data is None:
    sigma_data = round(stats.estimate_sigma_data(training_images(data.source)), 4)
    cfg = dataclasses.replace(cfg, loss=dataclasses.replace(cfg.loss, sigma_data=sigma_data))
  if cfg.data.cond and data.num_classes < 1:
    raise ValueError(f"data.cond=True but the source {cfg.data.name!r} has no classes.")
  for name, have in (("image_shape", tuple(data.image_shape)),
                     ("num_classes", int(data.num_classes))):
    want = getattr(cfg.data, name)
    if want is not None and (tuple(want) if name == "image_shape" else want) != have:
      raise ValueError(f"data.{name}={want} is set, but the data {cfg.data.name!r} has "
                       f"{name} {have}; leave it None (it is read from the data).")
  return dataclasses.replace(cfg, data=dataclasses.replace(
      cfg.data, image_shape=tuple(data.image_shape), num_classes=int(data.num_classes)))


class Built(NamedTuple):
  """The compiled pieces of a run (shared by every `train` call with the same config)."""
  model: Any
  optimizer: Any
  init: Any      # key data -> TrainState (replicated)
  step: Any      # (state, images, labels) -> (state, metrics)
  sample: Any    # (variables, seeds, labels) -> images: the `generate` program
  label_dim: int
  augment_dim: int
  grid_mesh: Any  # the mesh `sample` runs on


def _step_key(cfg: TrainConfig) -> TrainConfig:
  """`cfg` without the fields that do not change the compiled step."""
  return dataclasses.replace(
      cfg, total_steps=0, log_every=0, checkpoint_every=0, sample_every=0,
      keep_checkpoints=1, max_consecutive_bad_steps=1, sample=SampleConfig(),
      data=dataclasses.replace(cfg.data, name="", split="", data_dir=None, holdout=0,
                               seed=0, resolution=None, channels=None, image_shape=None,
                               num_classes=None))


def build(cfg: TrainConfig, mesh, image_shape, num_classes: int = 0) -> Built:
  """Model, optimizer and the jitted init / step / sample functions of a run."""
  return _build(_step_key(cfg), cfg.sample, mesh, tuple(image_shape), int(num_classes))


@functools.lru_cache(maxsize=8)
def _build(cfg: TrainConfig, sample_cfg: SampleConfig, mesh, image_shape,
           num_classes: int) -> Built:
  label_dim = num_classes if cfg.data.cond else 0
  augment_fn, augment_dim = None, 0
  if cfg.data.augment_p > 0:
    aug_cfg = augmentation.edm_augment_config(cfg.data.augment_p)
    augment_dim = aug_cfg.augment_dim

    def augment_fn(key, images):
      return augmentation.augment(key, images, aug_cfg)

  model = models.build_net(cfg.net, img_resolution=image_shape[0], channels=image_shape[2],
                           label_dim=label_dim, augment_dim=augment_dim)
  optimizer = optim.make_optimizer(cfg.optim)
  rep = parallel.replicated_sharding(mesh)
  data_sharding = parallel.batch_sharding(mesh)

  def init(key_data):
    return init_state(model, optimizer, key_data, image_shape, label_dim=label_dim,
                      augment_dim=augment_dim, ema_stds=tuple(cfg.optim.ema_stds))

  init_jit = jax.jit(init, out_shardings=rep)
  init_c = functools.partial(_compile_once, init_jit, _INIT_COMPILER_OPTIONS)

  train_step = step_lib.make_train_step(model, cfg, label_dim=label_dim,
                                        augment_fn=augment_fn, optimizer=optimizer)
  step_jit = jax.jit(train_step, in_shardings=(rep, data_sharding, data_sharding),
                     out_shardings=(rep, rep), donate_argnums=0)

  run_cfg = dataclasses.replace(cfg, data=dataclasses.replace(
      cfg.data, image_shape=image_shape, num_classes=num_classes))
  sample = generate.make_generator(models.RunModelFn(run_cfg),
                                   sample_cfg.spec(), image_shape, mesh=mesh,
                                   variables_arg=True, labels_arg=label_dim > 0)
  return Built(model=model, optimizer=optimizer, init=init_c, step=step_jit,
               sample=sample, label_dim=label_dim, augment_dim=augment_dim,
               grid_mesh=mesh)


def _compile_once(jitted, options, *args):
  """Runs `jitted` through an explicitly compiled executable (with compiler options)."""
  return jitted.lower(*args).compile(compiler_options=options)(*args)


def read_config(workdir: str) -> TrainConfig:
  """The resolved config a run saved in `workdir/config.json`."""
  with open(os.path.join(workdir, "config.json"), encoding="utf-8") as f:
    return from_json(f.read())


class RunInfo(NamedTuple):
  """What `load_run` read besides the model.

  Attributes:
    workdir: the run's work directory.
    step: the checkpoint's step.
    position: training images seen at that step (NVlabs' `cur_nimg`).
    image_shape: (H, W, C) of the images the net was built for.
    label_dim: classes of a class-conditional run (0: unconditional).
    sigma_data: σ_data of an edm run (the config's), else None.
    variables: {'params': the EMA parameters, **buffers}: the weights the model
      closes over.
    model_fn: `variables -> Denoiser` (`models.RunModelFn` of the config), to
      pass to `generate.generate(..., variables=info.variables)` so that the
      weights are arguments of the compiled program.
  """
  workdir: str
  step: int
  position: int
  image_shape: tuple
  label_dim: int
  sigma_data: float | None
  variables: Any
  model_fn: Any


def load_run(workdir: str, *, step: int | None = None,
             ema: float | str | None = None) -> tuple[TrainConfig, Denoiser, RunInfo]:
  """(config, model, info) of a run's newest (or given) checkpoint, for sampling.

  Reads only config.json and the EMA parameters and buffers of the checkpoint and
  builds only the network: no data set, optimizer, augmentation or train step. The
  model is `models.run_model(cfg, variables)` (NVlabs' preconditioning and σ range
  of the objective; the VP bridge with the run's σ table for DDPM runs). Runs saved
  before config.json recorded `data.image_shape` read it from their data once.

  Args:
    workdir: the run's work directory.
    step: the checkpoint (default: the newest).
    ema: which averaged weights: None, the EMA of `optim.ema_halflife_kimg`; a σ_rel
      of `optim.ema_stds`, that power-function EMA track at the checkpoint; or the
      path of a snapshot or post-hoc reconstruction file (`edmjax.train.snapshots`,
      `experiments/reconstruct_phema.py`), whose parameters replace the EMA (the
      checkpoint still gives the buffers; `info.position` is the file's nimg).

  Raises:
    FileNotFoundError: the work directory has no config.json, no checkpoint or not
      the given step, or the `ema` file does not exist.
    ValueError: a σ_rel the run did not track, or a file whose parameters do not
      fit the network.
  """
  if not os.path.exists(os.path.join(workdir, "config.json")):
    raise FileNotFoundError(f"{workdir!r} has no config.json; is it a training work "
                            "directory (experiments/train.py --workdir)?")
  cfg = read_config(workdir)
  if cfg.data.image_shape is None or (cfg.data.cond and cfg.data.num_classes is None):
    image_shape, num_classes = _data_geometry(cfg)
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(
        cfg.data, image_shape=image_shape, num_classes=num_classes))
  image_shape, label_dim, augment_dim = models.run_geometry(cfg)
  net = models.build_run_net(cfg)
  shapes = jax.eval_shape(lambda k: init_variables(
      net, k, image_shape, label_dim=label_dim, augment_dim=augment_dim), jax.random.key(0))
  rep = parallel.replicated_sharding(parallel.make_mesh())
  field, file_params, file_nimg = "ema_params", None, None
  if isinstance(ema, str):
    if not os.path.exists(ema):
      raise FileNotFoundError(f"ema={ema!r}: no such snapshot or reconstruction file.")
    file_params, file_nimg, _ = snapshots.load(ema)
    _check_fits(ema, file_params, shapes["params"])
    field = None
  elif ema is not None:
    stds = [round(float(s), 6) for s in cfg.optim.ema_stds]
    if round(float(ema), 6) not in stds:
      raise ValueError(f"ema={ema!r}: the run tracked power-function EMAs with σ_rel "
                       f"{tuple(cfg.optim.ema_stds)} (optim.ema_stds); pass one of them, "
                       "or a reconstruction file (experiments/reconstruct_phema.py).")
    field = "ema_tracks"
  wanted = {"buffers": {k: v for k, v in shapes.items() if k != "params"},
            "position": jax.ShapeDtypeStruct((), jnp.int32)}
  if field == "ema_params":
    wanted["ema_params"] = shapes["params"]
  elif field == "ema_tracks":
    wanted["ema_tracks"] = tuple(shapes["params"] for _ in cfg.optim.ema_stds)
  target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=rep),
                        wanted)
  fields, at = checkpoint.load_fields(workdir, target, step=step)
  if field == "ema_params":
    params = fields["ema_params"]
  elif field == "ema_tracks":
    params = fields["ema_tracks"][stds.index(round(float(ema), 6))]
  else:
    params = jax.tree.map(lambda v, s: jax.device_put(jnp.asarray(v, s.dtype), rep),
                          file_params, shapes["params"])
  variables = {"params": params, **fields["buffers"]}
  model = models.run_model(cfg, variables)
  info = RunInfo(workdir=workdir, step=at,
                 position=int(fields["position"]) if file_nimg is None else file_nimg,
                 image_shape=image_shape, label_dim=label_dim,
                 sigma_data=(cfg.loss.sigma_data if cfg.loss.objective in ("edm", "edm2")
                             else None),
                 variables=variables, model_fn=models.RunModelFn(cfg))
  return cfg, model, info


def _check_fits(path: str, params, shapes) -> None:
  """Raises ValueError unless `params` has the tree and shapes of `shapes`."""
  def flat(tree):
    return {jax.tree_util.keystr(p): tuple(np.shape(v))
            for p, v in jax.tree_util.tree_flatten_with_path(tree)[0]}
  if flat(params) != flat(shapes):
    raise ValueError(f"ema={path!r}: its parameters do not fit this run's network "
                     "(another run's snapshot?).")


def _data_geometry(cfg: TrainConfig):
  """(image_shape, num_classes) of the config's data, read from the data itself."""
  meta = cfg.data
  source = sources.load_dataset(meta.name, resolution=meta.resolution,
                                channels=meta.channels, split=meta.split,
                                data_dir=meta.data_dir)
  first = source.get(np.arange(1))[0]
  return tuple(first.shape[1:]), int(source.num_classes)


def _bin_labels():
  e = step_lib.SIGMA_BIN_EDGES
  return [f"σ<{e[0]:g}"] + [f"{a:g}-{b:g}" for a, b in zip(e[:-1], e[1:])] + [f"σ>{e[-1]:g}"]


def train(cfg: TrainConfig, workdir: str, *, source=None, stop_at_step: int | None = None,
          progress: bool = True, mesh=None, log=print) -> TrainResult:
  """Trains (or resumes) a run in `workdir`; see the module docstring for the outputs.

  Args:
    cfg: the run's config (`sigma_data=None` is estimated from the training images).
    workdir: output directory; resumes from its newest checkpoint when there is one.
    source: an `edmjax.data` source to use instead of loading `cfg.data.name`.
    stop_at_step: stop (with a checkpoint) after this step, before `total_steps`;
      a later call continues the same run.
    progress: show a tqdm progress bar (process 0).
    mesh: device mesh (default: all devices on one 'data' axis).
    log: where status lines go (process 0), or None.

  Returns:
    A `TrainResult` (final state, resolved config, workdir, neighbour report).

  Raises:
    TrainingDivergedError: after `cfg.max_consecutive_bad_steps` non-finite steps in
      a row (the checkpoints on disk hold the last good, finite state).
  """
  lead = jax.process_index() == 0
  say = (log if lead and log is not None else (lambda *a, **k: None))
  validate(cfg)
  runner.check_writable(workdir)
  mesh = mesh or parallel.make_mesh()
  parallel.check_batch_divisible(cfg.batch_size, mesh, cfg.accum_steps)

  data = load_data(cfg, source)
  cfg = validate(resolve_config(cfg, data), image_shape=data.image_shape)
  config_path = os.path.join(workdir, "config.json")
  if os.path.exists(config_path):
    old = to_dict(read_config(workdir))
    new = to_dict(cfg)
    changed = [k for k in new if old.get(k) != new[k]]
    if changed:
      say(f"note: config differs from {config_path} in {changed}; using the new one.")

  built = build(cfg, mesh, data.image_shape, data.num_classes)
  t0 = time.time()
  # config.json is written once the checkpoint is restored: a resume that fails (a
  # checkpoint of another network) leaves the work directory as it was.
  state, mgr, at = runner.start(
      workdir, lambda: built.init(jax.random.key_data(jax.random.key(cfg.seed))),
      keep=cfg.keep_checkpoints)
  metrics_path = os.path.join(workdir, "metrics.jsonl")
  if lead:
    runner.write_text(config_path, to_json(cfg))
    monitor.truncate_metrics(metrics_path, 0 if at is None else at)
  if at is not None:
    say(f"resumed from {workdir}/checkpoints/{at} (step {at}, "
        f"{int(state.position) / 1000:.1f} kimg)")
  else:
    say(f"new run in {workdir}: {count_params(state.params):,} parameters, "
        f"{len(data.source)} training images {data.image_shape}, "
        f"sigma_data {cfg.loss.sigma_data}, {mesh.devices.size} device(s)")

  batches = pipeline.BatchIterator(
      data.source, batch_size=cfg.batch_size, seed=cfg.data.seed,
      position=int(state.position), process_index=jax.process_index(),
      process_count=jax.process_count())
  end = cfg.total_steps if stop_at_step is None else min(cfg.total_steps, stop_at_step)
  writer = monitor.MetricsWriter(metrics_path) if lead else None
  metrics_log = _MetricsLog(cfg, writer, batches, t0, say,
                            lambda: (workdir, checkpoint.all_steps(mgr)))

  def next_batch():
    batch = next(batches)
    return parallel.global_batch((batch.images, batch.labels), mesh)

  hooks = [runner.Hook(metrics_log.sync, every=n) for n in
           sorted({cfg.log_every, cfg.checkpoint_every, cfg.sample_every} - {0})]
  hooks = hooks or [runner.Hook(metrics_log.sync)]
  hooks += [runner.Hook(metrics_log.write, every=cfg.log_every),
            runner.checkpoint_hook(mgr, every=cfg.checkpoint_every)]
  if cfg.sample.num_images > 0:
    hooks.append(runner.Hook(lambda b: _write_samples(built, cfg, b.state, workdir, b.step,
                                                      lead),
                             every=cfg.sample_every, at_end=end == cfg.total_steps))
  if cfg.snapshot_nimg:
    hooks.append(runner.Hook(lambda b: write_snapshots(cfg, b.state, workdir) if lead else None,
                             every=cfg.snapshot_nimg // cfg.batch_size, at_end=False))
  try:
    state, step = runner.run(
        state, lambda st, batch: built.step(st, *batch), next_batch, end=end, hooks=hooks,
        on_step=metrics_log.on_step,
        progress=runner.progress_bar(cfg.total_steps, int(state.step), progress and lead))
  finally:
    checkpoint.close(mgr)
    if writer is not None:
      writer.close()
  if lead:
    records = monitor.read_metrics(metrics_path)
    monitor.plot_losses(records, os.path.join(workdir, "loss.png"))
    monitor.write_loss_csv(records, os.path.join(workdir, "loss_per_sigma.csv"))
  report = None
  finished = step >= cfg.total_steps and cfg.sample.num_images > 0
  final_grid = os.path.join(workdir, "samples", f"step_{step:07d}.npz")
  missing = finished and not os.path.exists(final_grid)
  if finished and jax.process_count() > 1:  # process 0's disk decides, for every process
    missing = bool(multihost_utils.broadcast_one_to_all(np.int32(missing)))
  if missing:
    # The final grid of a run that failed or was killed after its last checkpoint
    # (or a grid deleted since): sampled again from the checkpointed state.
    say(f"sampling the final grid of step {step} again (it is missing)")
    _write_samples(built, cfg, state, workdir, step, lead)
  if finished and data.heldout is not None:
    samples = np.load(final_grid)["images"] if lead else None
    if lead:
      report = monitor.neighbour_report(samples, data.heldout,
                                        training_images(data.source))
      with open(os.path.join(workdir, "neighbours.json"), "w", encoding="utf-8") as f:
        json.dump(report, f, indent=2)
  return TrainResult(state=state, config=cfg, workdir=workdir, neighbours=report)


def write_snapshots(cfg: TrainConfig, state: TrainState, workdir: str) -> list[str]:
  """Saves each EMA track of `state` as `<workdir>/snapshots/ema-<nimg>-<std>.npz`."""
  directory = os.path.join(workdir, snapshots.SNAPSHOT_DIR)
  nimg = int(state.position)
  return [snapshots.save(directory, nimg, std, track)
          for std, track in zip(cfg.optim.ema_stds, state.ema_tracks)]


class _MetricsLog:
  """The main loop's metrics: fetched one step late (no device sync per step), summed
  between log lines, checked for divergence, written to metrics.jsonl."""

  def __init__(self, cfg: TrainConfig, writer, batches, t0: float, say, saved):
    self.cfg, self.writer, self.batches, self.t0, self.say = cfg, writer, batches, t0, say
    self.saved = saved  # () -> (workdir, checkpoint steps on disk), for the stop message
    self.acc = _Accumulator()
    self.bins = _bin_labels()
    self.pending = None
    self.synced_at = None
    self.compile_s = None
    self.t_log, self.n_log = time.time(), 0

  def on_step(self, step: int, metrics) -> None:
    """Every step: add the previous step's metrics (already computed) and check them."""
    self.n_log += self.cfg.batch_size
    if self.pending is not None:
      _check(self.acc.add(self.pending), self.cfg, self.saved)
    self.pending = metrics

  def sync(self, b: runner.Boundary) -> None:
    """At a boundary: this step's metrics too, the check, and the progress bar."""
    if self.synced_at == b.step:
      return
    self.synced_at = b.step
    host = self.acc.add(self.pending)
    self.pending = None
    if self.compile_s is None:
      self.compile_s = time.time() - self.t0
      self.say(f"first step (init + compile) done after {self.compile_s:.1f} s")
    _check(host, self.cfg, self.saved)
    if b.progress is not None:
      b.progress.set_postfix(loss=f"{host['loss']:.4f}", skipped=int(host["skipped_total"]))

  def write(self, b: runner.Boundary) -> None:
    self.sync(b)
    now = time.time()
    record = self.acc.flush(step=b.step, kimg=self.batches.position / 1000, bins=self.bins)
    record["images_per_sec"] = self.n_log / max(now - self.t_log, 1e-9)
    record["time"] = now
    if self.writer is not None:
      self.writer.write(record)
    self.t_log, self.n_log = now, 0


def grid_seeds_and_labels(sample_cfg: SampleConfig, label_dim: int):
  """(seeds, labels) of a run's sample grid: seeds `seed, seed + 1, ...` and, for a
  class-conditional run, labels 0, 1, ..., label_dim − 1, 0, ... (else None)."""
  n = sample_cfg.num_images
  seeds = np.arange(sample_cfg.seed, sample_cfg.seed + n, dtype=np.uint32)
  labels = (np.arange(n) % label_dim).astype(np.int32) if label_dim else None
  return seeds, labels


def _write_samples(built: Built, cfg: TrainConfig, state: TrainState, workdir: str,
                   step: int, lead: bool) -> None:
  """The grid: `generate.generate` of the EMA model in one batch over the mesh."""
  seeds, labels = grid_seeds_and_labels(cfg.sample, built.label_dim)
  n = len(seeds)
  batch = -(-n // built.grid_mesh.devices.size) * built.grid_mesh.devices.size
  variables = {"params": state.ema_params, **state.buffers}
  padded = next(generate.padded_batches(seeds, batch))[0]
  padded_labels = None if labels is None else next(generate.padded_batches(labels, batch))[0]
  images = np.asarray(jax.device_get(built.sample(variables, padded, padded_labels)))[:n]
  if lead:
    out = os.path.join(workdir, "samples", f"step_{step:07d}")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    np.savez(out + ".npz", images=images, seeds=seeds,
             labels=np.zeros(n, np.int32) if labels is None else labels)
    monitor.save_grid(out + ".png", np.clip(images, -1, 1))


def _check(host: dict, cfg: TrainConfig, saved) -> None:
  if host["skipped_consecutive"] >= cfg.max_consecutive_bad_steps:
    workdir, steps = saved()
    raise TrainingDivergedError(step_lib.divergence_message(
        host["skipped_consecutive"], host["skipped_total"], cfg.max_consecutive_bad_steps,
        steps, workdir))


class _Accumulator:
  """Sums the per-step metrics between two log lines (on the host)."""

  def __init__(self):
    self.reset()

  def reset(self):
    self.n = 0
    self.loss = 0.0
    self.finite_n = 0
    self.bin_sum = None
    self.bin_count = None
    self.last = {}

  def add(self, metrics) -> dict:
    host = {k: np.asarray(v) for k, v in jax.device_get(metrics).items()}
    self.n += 1
    if bool(host["finite"]):
      self.finite_n += 1
      self.loss += float(host["loss"])
      s, c = host["loss_bin_sum"].astype(np.float64), host["loss_bin_count"].astype(np.float64)
      self.bin_sum = s if self.bin_sum is None else self.bin_sum + s
      self.bin_count = c if self.bin_count is None else self.bin_count + c
    self.last = host
    return host

  def flush(self, *, step: int, kimg: float, bins) -> dict:
    h = self.last
    per_sigma = None
    if self.bin_sum is not None:
      per_sigma = [float(s / c) if c > 0 else None for s, c in zip(self.bin_sum, self.bin_count)]
    record = dict(step=step, kimg=kimg,
                  loss=self.loss / self.finite_n if self.finite_n else None,
                  loss_per_sigma=per_sigma, loss_bin_labels=bins,
                  lr=float(h["lr"]), grad_norm=float(h["grad_norm"]),
                  ema_beta=float(h["ema_beta"]),
                  skipped_total=int(h["skipped_total"]),
                  skipped_consecutive=int(h["skipped_consecutive"]),
                  steps=self.n)
    self.reset()
    return record
