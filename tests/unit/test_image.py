"""The host image: no image and no way to build one is one clear ImageError (exit 2)."""

from __future__ import annotations

import docker
import pytest

from lab import image
from lab.errors import ImageError


class FakeImages:
    def get(self, name):
        raise docker.errors.ImageNotFound(f"no such image: {name}")


class FakeAPI:
    def pull(self, *args, **kwargs):
        raise docker.errors.APIError("registry-1.docker.io: no such host")


class FakeClient:
    images = FakeImages()
    api = FakeAPI()


def test_no_image_no_registry_no_mmdebstrap(monkeypatch, tmp_path):
    monkeypatch.setattr(image, "LOCK", tmp_path / "image.lock")
    monkeypatch.setattr(image.shutil, "which", lambda name: None)
    lines = []
    with pytest.raises(ImageError, match="mmdebstrap is not installed") as err:
        image.ensure_image(FakeClient(), method="auto", progress=lines.append)
    assert err.value.exit_code == 2
    assert "\n" not in str(err.value)
    assert any("cannot pull" in line for line in lines), lines    # it said why it went offline


def test_unknown_build_method(monkeypatch, tmp_path):
    monkeypatch.setattr(image, "LOCK", tmp_path / "image.lock")
    with pytest.raises(ImageError, match="unknown image build method"):
        image.build_image(FakeClient(), method="kaniko", progress=lambda s: None)


def test_tag_follows_the_recipe():
    tag = image.image_tag()
    assert tag.startswith("twlab/host:") and len(tag.split(":")[1]) == 12
