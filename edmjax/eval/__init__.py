"""edmjax.eval: Fréchet distance, KID, PSNR/SSIM, FID Inception, digits classifier, diagnostics.

Host-side statistics (float64 NumPy) live in `frechet`; JAX image metrics in
`image_metrics`; feature networks in `inception` (FID Inception-v3, user-supplied
weights) and `digits_classifier` (trained and cached locally). Images are NHWC.
"""

from edmjax.eval.digits_classifier import DigitsClassifier
from edmjax.eval.digits_classifier import DigitsClassifierConfig
from edmjax.eval.digits_classifier import digits_features
from edmjax.eval.digits_classifier import digits_metrics
from edmjax.eval.digits_classifier import digits_split
from edmjax.eval.digits_classifier import load_digits_classifier
from edmjax.eval.frechet import feature_mean_cov
from edmjax.eval.frechet import feature_statistics
from edmjax.eval.frechet import FeatureStats
from edmjax.eval.frechet import frechet_distance
from edmjax.eval.frechet import frechet_distance_features
from edmjax.eval.frechet import frechet_distance_from_stats
from edmjax.eval.frechet import init_feature_stats
from edmjax.eval.frechet import kernel_inception_distance
from edmjax.eval.frechet import load_reference_stats
from edmjax.eval.frechet import merge_feature_stats
from edmjax.eval.frechet import polynomial_mmd2_unbiased
from edmjax.eval.frechet import reference_stats
from edmjax.eval.frechet import ReferenceStats
from edmjax.eval.frechet import save_reference_stats
from edmjax.eval.frechet import update_feature_stats
from edmjax.eval.image_metrics import psnr
from edmjax.eval.image_metrics import ssim
from edmjax.eval.inception import FIDInceptionV3
from edmjax.eval.inception import inception_features
from edmjax.eval.inception import load_inception_params
from edmjax.eval.inception import preprocess_inception
from edmjax.eval.inception import resize_bilinear_tf1
from edmjax.eval.inception import to_uint8
from edmjax.torchio import load_torch_state_dict
from edmjax.eval.diagnostics import ddpm_timestep_grid
from edmjax.eval.diagnostics import eps_stats_per_timestep
from edmjax.eval.diagnostics import EpsStats
from edmjax.eval.diagnostics import log_sigma_grid
from edmjax.eval.diagnostics import memorisation_report
from edmjax.eval.diagnostics import memorisation_summary
from edmjax.eval.diagnostics import MemorisationReport
from edmjax.eval.diagnostics import pixel_histograms
from edmjax.eval.diagnostics import PixelHistograms
from edmjax.eval.diagnostics import sigma_loss_profile
from edmjax.eval.diagnostics import SigmaLossProfile
from edmjax.eval.features import feature_network
from edmjax.eval.features import frechet_distance_to
