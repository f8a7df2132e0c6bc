"""The controller image's two recipes (images/controller/Dockerfile and lab.controller_image's
mmdebstrap build) make the same image, and its tag follows what it is built from."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from lab import controller_image
from lab.controller_image import CHANGES, PACKAGES, controller_tag

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = (REPO / "images" / "controller" / "Dockerfile").read_text()


def _instructions(keyword: str) -> list[str]:
    return [m.group(1).strip() for m in re.finditer(rf"^{keyword} (.*)$", DOCKERFILE, re.M)]


def test_both_recipes_install_the_same_packages():
    block = re.search(r"apt-get install -y --no-install-recommends \\\n(.*?)\\\n", DOCKERFILE, re.S)
    assert block, "no apt-get install in the Dockerfile"
    assert tuple(block.group(1).split()) == PACKAGES


def test_both_recipes_configure_the_image_alike():
    """ENTRYPOINT, CMD, WORKDIR, ENV and LABEL: what `docker import --change` gives the offline one."""
    changes = {c.split(" ", 1)[0]: [] for c in CHANGES}
    for c in CHANGES:
        keyword, value = c.split(" ", 1)
        changes[keyword].append(value)
    for keyword in ("ENTRYPOINT", "CMD"):
        assert [json.loads(v) for v in _instructions(keyword)] == [json.loads(v) for v in changes[keyword]]
    for keyword in ("WORKDIR", "ENV", "LABEL"):
        assert _instructions(keyword) == changes[keyword], keyword


def test_both_recipes_finish_with_the_same_script():
    assert "images/controller/install" in DOCKERFILE
    argv = controller_image._mmdebstrap_argv(REPO, Path("/tmp/w/wheels"), Path("/tmp/w/out.tar"))
    assert any(a.startswith("--customize-hook=upload ") and a.endswith("/images/controller/install "
                                                                     "/tmp/twlab-install") for a in argv)
    assert any("sh /tmp/twlab-install" in a for a in argv)


@pytest.fixture
def checkout_copy(tmp_path):
    for name in ("lab", "scenarios", "images"):
        shutil.copytree(REPO / name, tmp_path / name, symlinks=True,
                        ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "compose.yaml", ".dockerignore", "tasks.py", "docs/reference.md"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        shutil.copy(REPO / name, tmp_path / name)
    return tmp_path


@pytest.mark.parametrize("edit", ["lab/verdict.py", "scenarios/lost_ack.py", "compose.yaml",
                                  "images/controller/entrypoint", "pyproject.toml"])
def test_the_tag_follows_the_code_and_the_recipes(checkout_copy, edit):
    before = controller_tag(checkout_copy)
    assert controller_tag(checkout_copy) == before                 # the same files, the same tag
    with (checkout_copy / edit).open("a") as f:
        f.write("\n# changed\n")
    assert controller_tag(checkout_copy) != before
    assert before.startswith("twlab/twlab:")


def test_the_tag_does_not_depend_on_where_the_checkout_is(checkout_copy):
    assert controller_tag(checkout_copy) == controller_tag(REPO)


def test_a_cache_file_does_not_change_the_tag(checkout_copy):
    before = controller_tag(checkout_copy)
    (checkout_copy / "lab" / "__pycache__").mkdir(exist_ok=True)
    (checkout_copy / "lab" / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"\0")
    assert controller_tag(checkout_copy) == before
