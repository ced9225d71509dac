"""The committed fixtures are what `make_fixtures.py` wrote, and name their references.

Regenerating them (`make_fixtures.py --check`, needs torch and the references; see
its docstring) compares every array exactly; this test checks that no fixture was
changed since (content digests in fixtures/MANIFEST.json) and that each records its
pinned reference.
"""

import json

import pytest

import refdata

GROUPS = ("nvlabs_samplers", "nvlabs_precond", "nvlabs_losses", "kdiffusion",
          "diffusers_ddpm", "diffusers_ddim", "nvlabs_networks", "nvlabs_augment")
MANIFEST = json.loads(refdata.MANIFEST.read_text())


def test_manifest_lists_every_group():
  assert sorted(MANIFEST) == sorted(GROUPS)


@pytest.mark.parametrize("group", GROUPS)
def test_fixture_content_matches_manifest_and_names_its_reference(group):
  meta, arrays = refdata.load(group)
  assert refdata.content_digest(arrays) == MANIFEST[group]
  assert meta["group"] == group
  assert meta["generated_by"] == "tests/reference/make_fixtures.py"
  assert meta["reference"] in ("NVlabs/edm", "crowsonkb/k-diffusion", "huggingface/diffusers")
  assert meta.get("commit") or meta.get("version")
  assert meta["file_sha256"]
  assert meta["versions"]["torch"].startswith("2.13.0")
