"""A small digits classifier as a feature network: FD_digits and class statistics.

FID needs a network trained on the data domain. For scikit-learn's 8×8 handwritten
digits (the library's offline demo data) this module trains a small Flax CNN with
optax, deterministically from a seed in a few seconds on a CPU, and caches it on disk.
Its penultimate layer (`hidden` units, ReLU) plays the role of Inception's pool
features:

* `fd_digits`: Fréchet distance (`edmjax.eval.frechet.frechet_distance`) between the
  features of the given images and those of the real training digits;
* `confidence`: mean of :math:`\\max_c p(c \\mid x)`, how recognisable samples are;
* `class_histogram`: share of images predicted as each class, shape (10,);
* `class_coverage`: fraction of the 10 classes whose predicted share is at least
  `min_share` (default 0.05, half the uniform share 1/10) -- 1.0 when every digit is
  generated reasonably often, 0.1 for a model that collapsed onto one digit;
* `digits_score`: the Inception-Score analogue
  :math:`\\exp(\\mathbb{E}_x \\mathrm{KL}(p(c \\mid x) \\,\\|\\, p(c)))` in [1, 10]
  (Salimans et al. 2016).

Images are NHWC floats in [-1, 1] (the data pipeline's range for digits: value/8 - 1),
one channel (three channels are averaged to grey). Images at another resolution than
8×8 are resized to 8×8 with `jax.image.resize(..., 'linear', antialias=True)` (a
triangle filter: area-like averaging when downsampling), so a model that works on
digits upsampled to 16×16 or 32×32 can be scored directly.

The cache lives in `$EDMJAX_CACHE` or `~/.cache/edmjax`, in a file named by the
SHA-256 of the training data, the source code of the network and of the training
function, and the `DigitsClassifierConfig`; any change retrains.
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import os
from typing import Any, NamedTuple

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from edmjax import _checks
from edmjax.eval import frechet

NUM_CLASSES = 10
DIGITS_SIZE = 8


@dataclasses.dataclass(frozen=True)
class DigitsClassifierConfig:
  """Architecture and training configuration (hashable; part of the cache key).

  Attributes:
    channels: conv widths of the two stages (two 3×3 convs each, 2×2 avg pool after).
    hidden: width of the penultimate (feature) layer.
    num_steps: Adam steps.
    batch_size: minibatch size.
    learning_rate: peak learning rate of a cosine decay.
    weight_decay: AdamW decoupled weight decay.
    shift_augment: shift training images by up to one pixel at random.
    test_fraction: held-out share of the 1,797 digits (stratified split).
    seed: seed of the split, the initialisation, the batches and the shifts.
  """
  channels: tuple[int, int] = (32, 32)
  hidden: int = 128
  num_steps: int = 1200
  batch_size: int = 64
  learning_rate: float = 3e-3
  weight_decay: float = 0.0
  shift_augment: bool = True
  test_fraction: float = 0.2
  seed: int = 0


class DigitsCNN(nn.Module):
  """Conv(c0)·2 -> pool -> Conv(c1)·2 -> pool -> Dense(hidden) -> Dense(10); NHWC 8×8×1."""
  channels: tuple[int, int] = (32, 32)
  hidden: int = 128

  @nn.compact
  def __call__(self, x):
    for c in self.channels:
      x = nn.relu(nn.Conv(c, (3, 3), padding="SAME")(x))
      x = nn.relu(nn.Conv(c, (3, 3), padding="SAME")(x))
      x = nn.avg_pool(x, (2, 2), strides=(2, 2))
    x = x.reshape((x.shape[0], -1))
    feats = nn.relu(nn.Dense(self.hidden, name="features")(x))
    return feats, nn.Dense(NUM_CLASSES, name="logits")(feats)


class DigitsClassifier(NamedTuple):
  """A trained classifier and the feature statistics of its training digits.

  Attributes:
    params: Flax parameters of `DigitsCNN`.
    config: the `DigitsClassifierConfig` it was trained with.
    reference: `frechet.ReferenceStats` of the features of the training split.
    test_accuracy: accuracy on the held-out split.
  """
  params: Any
  config: DigitsClassifierConfig
  reference: frechet.ReferenceStats
  test_accuracy: float


# ---------------------------------------------------------------------------- data

def _raw_digits():
  from sklearn.datasets import load_digits  # pylint: disable=g-import-not-at-top
  d = load_digits()
  images = (d.images.astype(np.float32) / 8.0 - 1.0)[..., None]  # 0..16 -> [-1, 1]
  return images, d.target.astype(np.int32)


def digits_split(config: DigitsClassifierConfig = DigitsClassifierConfig()):
  """Stratified train / held-out split of scikit-learn's digits in [-1, 1], NHWC.

  Returns:
    `(x_train, y_train, x_test, y_test)`; images (n, 8, 8, 1) float32, labels int32.
  """
  images, labels = _raw_digits()
  rng = np.random.RandomState(config.seed)
  test = np.zeros(len(labels), bool)
  for c in range(NUM_CLASSES):
    idx = np.flatnonzero(labels == c)
    rng.shuffle(idx)
    test[idx[:int(round(config.test_fraction * len(idx)))]] = True
  return images[~test], labels[~test], images[test], labels[test]


# ------------------------------------------------------------------------ training

def _shift(x, key):
  """Random integer shift of each image by up to one pixel (edge padding)."""
  b = x.shape[0]
  xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="edge")
  off = jax.random.randint(key, (b, 2), 0, 3)
  return jax.vmap(lambda im, o: jax.lax.dynamic_slice(
      im, (o[0], o[1], 0), (DIGITS_SIZE, DIGITS_SIZE, 1)))(xp, off)


def _train(config: DigitsClassifierConfig, x_train: np.ndarray, y_train: np.ndarray):
  """Trains `DigitsCNN` with AdamW + cosine decay and ±1-pixel shifts; returns params."""
  model = DigitsCNN(config.channels, config.hidden)
  key = jax.random.key(config.seed)
  k_init, k_aug = jax.random.split(key)
  params = model.init(k_init, jnp.zeros((1, DIGITS_SIZE, DIGITS_SIZE, 1)))["params"]
  tx = optax.adamw(optax.cosine_decay_schedule(config.learning_rate, config.num_steps),
                   weight_decay=config.weight_decay)
  rng = np.random.RandomState(config.seed)
  n = len(y_train)
  epochs = -(-config.num_steps * config.batch_size // n)
  order = np.concatenate([rng.permutation(n) for _ in range(epochs)])
  batches = order[:config.num_steps * config.batch_size].reshape(
      config.num_steps, config.batch_size)
  x_all, y_all = jnp.asarray(x_train), jnp.asarray(y_train)

  def loss_fn(p, x, y):
    _, logits = model.apply({"params": p}, x)
    return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

  @jax.jit
  def step(p, opt, idx, k):
    x = _shift(x_all[idx], k) if config.shift_augment else x_all[idx]
    grads = jax.grad(loss_fn)(p, x, y_all[idx])
    updates, opt = tx.update(grads, opt, p)
    return optax.apply_updates(p, updates), opt

  keys = jax.random.split(k_aug, config.num_steps)
  opt = tx.init(params)
  for i in range(config.num_steps):  # a Python loop: XLA:CPU runs convs inside a
    params, opt = step(params, opt, batches[i], keys[i])  # scan several times slower
  return params


# The code that determines the trained weights, hashed once at import.
_CODE_SOURCE = "".join(inspect.getsource(f) for f in (DigitsCNN, _shift, _train))


def _cache_key(config: DigitsClassifierConfig, x_train, y_train) -> str:
  """SHA-256 of the training data, the network/training source and the config."""
  h = hashlib.sha256()
  h.update(np.ascontiguousarray(x_train).tobytes())
  h.update(np.ascontiguousarray(y_train).tobytes())
  h.update(_CODE_SOURCE.encode())
  h.update(repr(config).encode())
  return h.hexdigest()[:20]


def cache_dir() -> str:
  """`$EDMJAX_CACHE`, else `~/.cache/edmjax`."""
  return os.environ.get("EDMJAX_CACHE") or os.path.join(
      os.path.expanduser("~"), ".cache", "edmjax")


def digits_features(params: Any, images: jax.Array,
                    config: DigitsClassifierConfig = DigitsClassifierConfig()):
  """Penultimate features and logits of NHWC images in [-1, 1]; jittable.

  Images that are not 8×8 are resized with antialiased linear interpolation;
  3-channel images are averaged to grey.

  Returns:
    `(features (batch, hidden), logits (batch, 10))`.
  """
  _checks.check_nhwc("images", images)
  if images.shape[-1] not in (1, 3):
    raise ValueError(f"images must have 1 or 3 channels, got shape {images.shape}.")
  x = jnp.asarray(images, jnp.float32)
  if x.shape[-1] == 3:
    x = jnp.mean(x, axis=-1, keepdims=True)
  h, w = x.shape[1:3]
  if (h, w) != (DIGITS_SIZE, DIGITS_SIZE) and h % DIGITS_SIZE == 0 and w % DIGITS_SIZE == 0:
    fh, fw = h // DIGITS_SIZE, w // DIGITS_SIZE  # box average: inverts nearest upsampling
    x = x.reshape(x.shape[0], DIGITS_SIZE, fh, DIGITS_SIZE, fw, 1).mean(axis=(2, 4))
  elif (h, w) != (DIGITS_SIZE, DIGITS_SIZE):
    x = jax.image.resize(x, (x.shape[0], DIGITS_SIZE, DIGITS_SIZE, 1), "linear",
                         antialias=True)
  return DigitsCNN(config.channels, config.hidden).apply({"params": params}, x)


def _batched_apply(params, config, images, batch_size=512):
  # One compiled program per (config, batch shape), shared by every call: the config is
  # a frozen dataclass and therefore a valid static argument.
  feats, logits = [], []
  for i in range(0, images.shape[0], batch_size):
    f, l = _jit_digits_features(params, images[i:i + batch_size], config)
    feats.append(np.asarray(f, np.float64))
    logits.append(np.asarray(l, np.float64))
  return np.concatenate(feats), np.concatenate(logits)


_jit_digits_features = jax.jit(lambda p, x, c: digits_features(p, x, c), static_argnums=2)


def load_digits_classifier(config: DigitsClassifierConfig = DigitsClassifierConfig(),
                           *, use_cache: bool = True) -> DigitsClassifier:
  """The trained digits classifier: from the disk cache, or trained and cached.

  Args:
    config: architecture and training configuration.
    use_cache: read/write `cache_dir()/digits_classifier-<hash>.npz`.

  Returns:
    A `DigitsClassifier` with the training-split feature statistics.
  """
  x_train, y_train, x_test, y_test = digits_split(config)
  path = os.path.join(cache_dir(),
                      f"digits_classifier-{_cache_key(config, x_train, y_train)}.npz")
  template = DigitsCNN(config.channels, config.hidden).init(
      jax.random.key(0), jnp.zeros((1, DIGITS_SIZE, DIGITS_SIZE, 1)))["params"]
  if use_cache and os.path.isfile(path):
    with np.load(path, allow_pickle=False) as f:
      flat = {k[len("params/"):]: f[k] for k in f.files if k.startswith("params/")}
      params = flax.traverse_util.unflatten_dict(flat, sep="/")
      params = flax.serialization.from_state_dict(template, params)
      ref = frechet.ReferenceStats(f["ref_mu"], f["ref_sigma"], int(f["ref_count"]),
                                   {"network": "digits_classifier"})
      return DigitsClassifier(params, config, ref, float(f["test_accuracy"]))
  params = _train(config, x_train, y_train)
  feats, _ = _batched_apply(params, config, x_train)
  stats = frechet.update_feature_stats(frechet.init_feature_stats(feats.shape[1]), feats)
  ref = frechet.reference_stats(stats, {"network": "digits_classifier"})
  _, logits = _batched_apply(params, config, x_test)
  acc = float(np.mean(np.argmax(logits, -1) == y_test))
  if use_cache:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    flat = flax.traverse_util.flatten_dict(
        flax.serialization.to_state_dict(params), sep="/")
    tmp = path + f".tmp{os.getpid()}.npz"
    np.savez(tmp, ref_mu=ref.mu, ref_sigma=ref.sigma, ref_count=np.int64(ref.count),
             test_accuracy=np.float64(acc),
             **{"params/" + k: np.asarray(v) for k, v in flat.items()})
    os.replace(tmp, path)
  return DigitsClassifier(params, config, ref, acc)


def digits_metrics(images: Any, classifier: DigitsClassifier | None = None, *,
                   min_share: float = 0.05, batch_size: int = 512) -> dict:
  """FD_digits and class statistics of a set of digit images (NHWC, [-1, 1]).

  Args:
    images: (n, h, w, 1 or 3) images in [-1, 1], n >= 2; resized to 8×8 if needed.
    classifier: from `load_digits_classifier()` (loaded/trained when None).
    min_share: a class counts as covered when at least this share of the images is
      predicted as it (default 0.05 = half the uniform share 1/10).
    batch_size: evaluation batch size.

  Returns:
    dict with `fd_digits` (float), `confidence` (mean max softmax probability),
    `class_histogram` ((10,) shares summing to 1), `class_coverage`
    (:math:`|\\{c : \\text{share}_c \\ge \\text{min\\_share}\\}| / 10`), `digits_score`
    (:math:`\\exp \\mathbb{E}_x \\mathrm{KL}(p(c|x) \\| p(c))`) and `num_images`.
  """
  images = np.asarray(images)
  _checks.check_nhwc("images", images)
  if images.shape[0] < 2:
    raise ValueError(f"digits_metrics needs at least 2 images, got {images.shape[0]}.")
  if not np.all(np.isfinite(images)):
    raise ValueError("images contain non-finite values (NaN or inf).")
  if not 0.0 < min_share <= 1.0:
    raise ValueError(f"min_share must be in (0, 1], got {min_share}.")
  clf = classifier if classifier is not None else load_digits_classifier()
  feats, logits = _batched_apply(clf.params, clf.config, images, batch_size)
  stats = frechet.update_feature_stats(frechet.init_feature_stats(feats.shape[1]), feats)
  mu, sigma = frechet.feature_mean_cov(stats)
  fd = frechet.frechet_distance(mu, sigma, clf.reference.mu, clf.reference.sigma)
  logp = logits - np.logaddexp.reduce(logits, axis=-1, keepdims=True)
  p = np.exp(logp)
  hist = np.bincount(np.argmax(logits, -1), minlength=NUM_CLASSES) / len(logits)
  p_y = p.mean(axis=0)
  kl = np.sum(p * (logp - np.log(np.clip(p_y, 1e-30, None))), axis=-1)
  return {
      "fd_digits": fd,
      "confidence": float(p.max(axis=-1).mean()),
      "class_histogram": hist,
      "class_coverage": float(np.mean(hist >= min_share)),
      "digits_score": float(np.exp(kl.mean())),
      "num_images": int(len(logits)),
  }


__all__ = [
    "DigitsCNN", "DigitsClassifier", "DigitsClassifierConfig", "cache_dir",
    "digits_features", "digits_metrics", "digits_split", "load_digits_classifier",
]
