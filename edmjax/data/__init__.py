"""edmjax.data: image sources, deterministic batching, σ statistics, augmentation.

Modules: `sources` (digits, LFW, TFDS, image folders), `pipeline` (the batch stream
whose whole state is one position), `stats` (σ_data), `augmentation` (NVlabs'
AugmentPipe), `patches` (HR patches of scikit-image's photographs, for SR).

Images are NHWC float32 in [-1, 1] everywhere; labels are int32 class indices.

Example:
  >>> from edmjax import data
  >>> ds = data.load_digits(resolution=16)
  >>> ds.images.shape                               # NHWC
  (1797, 16, 16, 1)
  >>> it = data.BatchIterator(ds, batch_size=256, seed=0)
  >>> batch = next(it)                              # Batch(images, labels)
  >>> batch.images.shape, it.position
  ((256, 16, 16, 1), 256)
  >>> report = data.data_report(ds.images)          # report.summary(): σ_data, σ_max
"""

from edmjax.data.augmentation import AugmentConfig
from edmjax.data.augmentation import augment
from edmjax.data.augmentation import edm_augment_config
from edmjax.data.pipeline import Batch
from edmjax.data.pipeline import BatchIterator
from edmjax.data.pipeline import batch_at
from edmjax.data.pipeline import epoch_permutation
from edmjax.data.pipeline import stream_indices
from edmjax.data.sources import Dataset
from edmjax.data.sources import ImageFolderSource
from edmjax.data.sources import Source
from edmjax.data.sources import TfdsSource
from edmjax.data.sources import image_folder_source
from edmjax.data.sources import load_dataset
from edmjax.data.sources import load_digits
from edmjax.data.sources import load_image_folder
from edmjax.data.sources import load_lfw_subset
from edmjax.data.sources import read_image_file
from edmjax.data.sources import Subset
from edmjax.data.sources import holdout_split
from edmjax.data.sources import split_holdout
from edmjax.data.sources import tfds_source
from edmjax.data.sources import to_dataset
from edmjax.data.stats import DataReport
from edmjax.data.stats import data_report
from edmjax.data.stats import estimate_sigma_data
from edmjax.data.stats import max_pairwise_distance

__all__ = [
    "AugmentConfig",
    "Batch",
    "BatchIterator",
    "DataReport",
    "Dataset",
    "ImageFolderSource",
    "Source",
    "TfdsSource",
    "augment",
    "batch_at",
    "data_report",
    "edm_augment_config",
    "epoch_permutation",
    "estimate_sigma_data",
    "image_folder_source",
    "load_dataset",
    "load_digits",
    "load_image_folder",
    "load_lfw_subset",
    "max_pairwise_distance",
    "read_image_file",
    "Subset",
    "holdout_split",
    "split_holdout",
    "stream_indices",
    "tfds_source",
    "to_dataset",
]
