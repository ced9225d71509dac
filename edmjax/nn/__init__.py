"""edmjax.nn: the networks of EDM (Karras et al. 2022) in flax.linen, NHWC.

`SongUNet` (DDPM++ / NCSN++) and `DhariwalUNet` (ADM) follow NVlabs/edm
`training/networks.py` argument for argument, parameter for parameter; `EDM2UNet`
(`edmjax.nn.edm2_unet`) is NVlabs/edm2's magnitude-preserving `UNet` with its
uncertainty head, and `edm2_unet.renormalize(params)` its forced weight
normalisation. They see the noise label `c_noise`, never `sigma`. Frozen, non-trained
state (NCSN++'s Fourier frequencies, EDM2's Fourier frequencies and phases) lives in
the `'buffers'` collection (`BUFFERS`), not in `'params'`.
Every convolution goes through `conv2d` (`edmjax.nn.conv`), whose weight gradient is
computed in batch chunks on XLA:CPU, where XLA's own is 3.5-9x slower than the forward.
NVlabs' PyTorch state dicts map onto these variables one to one (`edmjax.nn.state_dict`).
"""

from edmjax.nn.conv import conv2d
from edmjax.nn.dhariwal_unet import DhariwalUNet
from edmjax.nn.edm2_unet import (
    EDM2Block, EDM2UNet, MPConv, MPFourier, mp_cat, mp_silu, mp_sum, normalize)
from edmjax.nn.layers import (
    BUFFERS, Conv2d, FourierEmbedding, GroupNorm, Init, Linear, PositionalEmbedding,
    UNetBlock, fir_downsample, fir_upsample, resample_kernel, weight_init)
from edmjax.nn.song_unet import SongUNet
from edmjax.nn.state_dict import (
    VariableShapes, state_dict_from_variables, variable_shapes, variables_from_state_dict)
from edmjax.nn.sr3_unet import SR3UNet, aug_labels

__all__ = [
    "BUFFERS", "Conv2d", "DhariwalUNet", "FourierEmbedding", "GroupNorm", "Init", "Linear",
    "PositionalEmbedding", "SongUNet", "UNetBlock", "fir_downsample", "fir_upsample",
    "resample_kernel", "weight_init", "SR3UNet", "aug_labels", "conv2d",
    "VariableShapes", "state_dict_from_variables", "variable_shapes", "variables_from_state_dict",
    "EDM2UNet", "EDM2Block", "MPConv", "MPFourier", "normalize", "mp_silu", "mp_sum",
    "mp_cat",
]
