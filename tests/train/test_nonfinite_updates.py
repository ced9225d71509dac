"""An update that makes the parameters non-finite is skipped like a non-finite gradient,
and the divergence message says truthfully what is on disk."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from edmjax.train import config as C
from edmjax.train import optim
from edmjax.train import step as step_lib
from edmjax.train.state import TrainState


def _state(optimizer, params, position=0):
  return TrainState(step=jnp.int32(0), params=params, ema_params=params,
                    opt_state=optimizer.init(params),
                    key=jax.random.key_data(jax.random.key(0)), position=jnp.int32(position),
                    skipped_total=jnp.int32(0), skipped_consecutive=jnp.int32(0),
                    buffers={})


@pytest.fixture(scope="module")
def run_steps():
  """Runs Adam (NVlabs' ramp-up, EMA) on f(w) = Σ w² with the step's own update."""

  def run(lr, steps=3, optimizer=None, position=0):
    cfg = C.OptimConfig(lr=lr, lr_rampup_kimg=0.001, ema_halflife_kimg=0.01)
    optimizer = optimizer or optim.make_optimizer(cfg)
    params = {"w": jnp.ones((4,), jnp.float32)}
    state = _state(optimizer, params, position)

    @jax.jit
    def one(state):
      loss, grads = jax.value_and_grad(lambda p: jnp.sum(p["w"] ** 2))(state.params)
      new, ok, _, _ = step_lib.apply_gradients(state, grads, loss, optimizer, cfg, 8,
                                               jax.random.key(state.step))
      return new, ok, jnp.isfinite(loss) & step_lib.all_finite(grads)

    finite, inputs_finite = [], []
    for _ in range(steps):
      state, ok, fin = one(state)
      finite.append(bool(ok))
      inputs_finite.append(bool(fin))
    assert all(inputs_finite)  # the loss and the gradients are always finite here
    return state, finite

  return run


def test_an_update_that_overflows_the_parameters_is_skipped(run_steps):
  # Loss and gradient (2w) are finite, but w − lr·update overflows float32 to -inf
  # (past the lr ramp-up: 8 images already seen).
  state, finite = run_steps(1e9, optimizer=optax.scale(1e30), position=8)
  assert finite == [False, False, False]
  assert int(state.skipped_total) == 3 and int(state.skipped_consecutive) == 3
  assert int(state.step) == 3 and int(state.position) == 32  # step and data still advance
  for tree in (state.params, state.ema_params, state.opt_state):
    assert step_lib.all_finite(tree)
  np.testing.assert_array_equal(state.params["w"], np.ones(4))


@pytest.mark.filterwarnings("ignore:overflow encountered in cast")
def test_a_learning_rate_beyond_float32_is_refused_and_would_be_skipped():
  with pytest.raises(ValueError, match=r"optim.lr=1e\+39 is not allowed; it overflows "
                                       r"float32"):
    C.apply_overrides(C.TrainConfig(), ["optim.lr=1e39"])
  # Built anyway (bypassing the check), lr(nimg) is inf·ramp: NaN on the first step.
  cfg = C.OptimConfig()
  object.__setattr__(cfg, "lr", 1e39)
  assert not np.isfinite(float(optim.learning_rate(cfg, 0)))
  optimizer = optim.make_optimizer(cfg)
  state = _state(optimizer, {"w": jnp.ones((4,), jnp.float32)})
  loss, grads = jax.value_and_grad(lambda p: jnp.sum(p["w"] ** 2))(state.params)
  new, ok, _, _ = step_lib.apply_gradients(state, grads, loss, optimizer, cfg, 8,
                                           jax.random.key(1))
  assert not bool(ok) and int(new.skipped_total) == 1
  np.testing.assert_array_equal(new.params["w"], np.ones(4))


def test_an_ordinary_learning_rate_is_not_skipped(run_steps):
  state, finite = run_steps(1e-2)
  assert finite == [True, True, True] and int(state.skipped_total) == 0
  assert float(state.params["w"][0]) < 1.0


def test_divergence_message_says_what_is_on_disk():
  none = step_lib.divergence_message(10, 12, 10, [], "/runs/a")
  assert "No checkpoint has been written to /runs/a/checkpoints yet" in none
  assert "intact" not in none and "hold finite states" not in none
  some = step_lib.divergence_message(10, 12, 10, [2000, 1000], "/runs/a")
  assert "(steps 1000, 2000) hold finite states; rerunning resumes from step 2000" in some
  assert "non-finite loss, gradient or parameter update" in some
  assert "max_consecutive_bad_steps=10" in some
