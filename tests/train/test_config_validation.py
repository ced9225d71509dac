"""Every config value is checked when it is set, naming the field, the value and what is
allowed; combinations are checked by `validate` (and at the end of `apply_overrides`)."""

import dataclasses

import pytest

from edmjax.train import config as C

BASE = C.TrainConfig()


@pytest.mark.parametrize("override, match", [
    # Fields that built a wrong network or trained silently.
    ("net.channel_mult=()", r"net.channel_mult=\(\) is empty"),
    ("net.dropout=1.5", r"net.dropout=1.5 is not allowed; it must be in \[0, 1\)"),
    ("net.dropout=-0.1", r"net.dropout=-0.1 is not allowed"),
    ("net.label_dropout=2", r"net.label_dropout=2.0 is not allowed; it must be in \[0, 1\]"),
    ("net.model_channels=0", r"net.model_channels=0 is too small; it must be >= 1"),
    ("net.num_blocks=-1", r"net.num_blocks=-1 is too small"),
    ("net.channel_mult=1,0", r"net.channel_mult=\(1, 0\) holds 0"),
    ("net.attn_resolutions=-4", r"net.attn_resolutions=\(-4,\) holds -4"),
    # Values that do not parse name the field.
    ("batch_size=abc", r"batch_size='abc' is not an integer"),
    ("batch_size=2.5", r"batch_size='2.5' is not an integer"),
    ("optim.lr=abc", r"optim.lr='abc' is not a number"),
    ("net.channel_mult=1,x", r"net.channel_mult='x' is not an integer"),
    ("data.cond=maybe", r"data.cond: cannot read 'maybe' as a bool"),
    # Zero, negative and non-finite values.
    ("batch_size=0", r"batch_size=0 is too small; it must be >= 1"),
    ("total_steps=-1", r"total_steps=-1 is too small; it must be >= 0"),
    ("keep_checkpoints=0", r"keep_checkpoints=0 is too small; it must be >= 1"),
    ("keep_checkpoints=-1", r"keep_checkpoints=-1 is too small"),
    ("log_every=-1", r"log_every=-1 is too small"),
    ("checkpoint_every=-5", r"checkpoint_every=-5 is too small"),
    ("seed=-1", r"seed=-1 is too small"),
    ("optim.lr=0", r"optim.lr=0.0 is not allowed; it must be > 0"),
    ("optim.lr=nan", r"optim.lr=nan is not allowed; it must be finite"),
    ("optim.beta2=1", r"optim.beta2=1.0 is not allowed; it must be in \[0, 1\)"),
    ("optim.ema_halflife_kimg=-1", r"optim.ema_halflife_kimg=-1.0 is not allowed"),
    ("loss.P_std=0", r"loss.P_std=0.0 is not allowed; it must be > 0"),
    ("loss.sigma_data=inf", r"loss.sigma_data=inf is not allowed; it must be finite"),
    ("loss.sigma_data=-0.5", r"loss.sigma_data=-0.5 is not allowed"),
    ("loss.epsilon_t=1", r"loss.epsilon_t=1.0 is not allowed; it must be in \(0, 1\)"),
    ("loss.ddpm_T=0", r"loss.ddpm_T=0 is too small"),
    ("data.holdout=-3", r"data.holdout=-3 is too small"),
    ("data.augment_p=2", r"data.augment_p=2.0 is not allowed; it must be in \[0, 1\]"),
    ("data.channels=2", r"data.channels=2 is not supported"),
    ("data.resolution=0", r"data.resolution=0 is too small"),
    ("sample.num_images=-1", r"sample.num_images=-1 is too small"),
    ("sample.num_steps=0", r"sample.num_steps=0 is too small"),
    ("sample.sigma_max=inf", r"sample.sigma_max=inf is not allowed; it must be finite"),
    ("sample.sigma_min=0", r"sample.sigma_min=0.0 is not allowed; it must be > 0"),
    ("sample.S_churn=-1", r"sample.S_churn=-1.0 is not allowed"),
    ("sample.sampler=headstart", r"sample.sampler='headstart' starts from an image"),
    ("sample.seed=-1", r"sample.seed=-1 is too small"),
    # Combinations (validate).
    ("sample.sigma_min=90", r"sample.sigma_min=90.0 must be smaller than sigma_max=80.0"),
    ("sample.num_steps=1", r"sample.num_steps=1 is too small; it must be >= 2"),
    ("sample.sampler=xx", r"sample.sampler='xx' is not supported"),
    ("sample.options=eta=abc", r"sample"),
    ("data.resolution=25", r"the images are 25x25.*must be a multiple of 4.*24, 28"),
    ("data.resolution=8", r"net.attn_resolutions=\(16,\) asks for attention at 16"),
])
def test_bad_value_names_the_field(override, match):
  with pytest.raises(ValueError, match=match):
    C.apply_overrides(BASE, [override])


def test_overrides_are_validated_together_not_one_by_one():
  # Either order reaches a valid config: each override alone would break a combination.
  cfg = C.apply_overrides(BASE, ["data.resolution=8", "net.attn_resolutions=()",
                                 "sample.sigma_min=90", "sample.sigma_max=100"])
  assert cfg.data.resolution == 8 and cfg.sample.sigma_min == 90.0
  cfg = C.apply_overrides(BASE, ["sample.sampler=ddim", "loss.objective=ddpm"])
  assert cfg.sample.sampler == "ddim"


def test_validate_checks_the_data_geometry_and_loss_ranges():
  with pytest.raises(ValueError, match=r"the images are 25x25"):
    C.validate(BASE, image_shape=(25, 25, 1))
  with pytest.raises(ValueError, match=r"square images"):
    C.validate(BASE, image_shape=(32, 16, 3))
  assert C.validate(BASE, image_shape=(32, 32, 3)) is BASE
  ve = C.apply_overrides(BASE, ["loss.objective=ve"])
  with pytest.raises(ValueError, match=r"loss.sigma_min=200.0 must be smaller than "
                                       r"loss.sigma_max=100.0"):
    C.validate(dataclasses.replace(ve, loss=dataclasses.replace(ve.loss, sigma_min=200.0)))
  ddpm = C.apply_overrides(BASE, ["loss.objective=ddpm"])
  with pytest.raises(ValueError, match=r"loss.ddpm_beta_start=0.5 must be smaller than "
                                       r"loss.ddpm_beta_end=0.02"):
    C.apply_overrides(ddpm, ["loss.ddpm_beta_start=0.5"])


def test_configs_from_json_are_checked_too():
  text = C.to_json(BASE).replace('"dropout": 0.13', '"dropout": 1.5')
  with pytest.raises(ValueError, match=r"net.dropout=1.5 is not allowed"):
    C.from_json(text)
  with pytest.raises(ValueError, match=r"batch_size='abc' is not an integer"):
    C.from_dict(dict(C.to_dict(BASE), batch_size="abc"))


def test_direct_construction_is_checked():
  with pytest.raises(ValueError, match=r"net.channel_mult=\(\) is empty"):
    C.NetConfig(channel_mult=())
  with pytest.raises(ValueError, match=r"net.model_channels must be a Python int"):
    C.NetConfig(model_channels=16.0)
