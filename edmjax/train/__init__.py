"""edmjax.train: training at scale (NVlabs/edm's training loop as pure JAX functions).

* `config`: frozen dataclasses (`TrainConfig` and its parts), JSON, `--set` overrides.
* `state`: the `TrainState` pytree.
* `optim`: Adam, lr ramp-up and EMA with NVlabs' formulas; EDM2's
  `learning_rate_schedule`.
* `phema`: EDM2's power-function EMA tracks and post-hoc reconstruction.
* `step`: `make_train_step` (EDM / VP / VE / DDPM objectives, accumulation, skip of
  non-finite steps).
* `parallel`: the device mesh, sharded global batches, multi-host initialisation.
* `checkpoint`: orbax (the only module that calls it).
* `monitor`: metrics, plots, sample grids, nearest-neighbour distances.
* `models`: the network of a config; `run_model(cfg, variables)`, the model value of
  a trained run (the one place that branches on the objective for sampling).
* `generate`: `generate.generate(model, seeds, spec, ...)`, per-seed images sharded
  over the devices (the scripts' and the sample grids' one program).
* `loop`: `train(config, workdir)`; `load_run(workdir)` for sampling without the data.
"""

from edmjax.train.config import (DataConfig, LossConfig, NetConfig, OptimConfig,
                                 SampleConfig, TrainConfig, apply_overrides, field_names)
from edmjax.train.loop import RunInfo, TrainingDivergedError, TrainResult, load_run, train
from edmjax.train.models import run_model
from edmjax.train.optim import ema_beta, ema_update, learning_rate, make_optimizer
from edmjax.train.state import TrainState, count_params, init_state
from edmjax.train.step import make_train_step
from edmjax.train import phema

__all__ = [
    "DataConfig", "LossConfig", "NetConfig", "OptimConfig", "SampleConfig", "TrainConfig",
    "apply_overrides", "field_names", "TrainingDivergedError", "TrainResult", "RunInfo",
    "load_run", "run_model", "train", "ema_beta", "ema_update", "learning_rate",
    "make_optimizer", "TrainState", "count_params", "init_state", "make_train_step",
    "phema",
]
