"""The controller image `twlab/twlab:<hash>` (and `:latest`): twlab itself, its Python dependencies,
the tools the lab runs (iproute2, nftables, tcpdump, util-linux) and the docker client, so that
one `docker run ... twlab/twlab run lost-ack` runs a lab on a machine with nothing but Docker.

Two recipes, picked by `method` as for the host image (lab.image):
  "dockerfile"   docker build of images/controller/Dockerfile, the checkout as its context
                 (needs a registry for debian:bookworm-slim, and PyPI)
  "debootstrap"  offline from Docker's point of view: this machine's pip builds twlab's wheel and
                 fetches its dependencies' wheels (for the image's Python, not this one), then
                 mmdebstrap makes the root filesystem, images/controller/install finishes it
                 inside, and Docker imports the tarball
  "auto"         the Dockerfile when the base image can be had quickly, else offline

The tag hashes the recipes and every file the package is built from, so a change to the code
makes a new tag; `:latest` follows the last build. Built from a checkout only.
"""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import docker
import docker.errors

from .errors import ImageError
from .image import Progress, _build_lock, _image_id, _one_line, _pull_base, _run_mmdebstrap
from .paths import cache_dir, require_checkout

__all__ = ["IMAGE_REPO", "PACKAGES", "controller_tag", "build_controller", "ENTRYPOINT"]

IMAGE_REPO = "twlab/twlab"
SUITE, PYTHON = "bookworm", "3.11"          # the image's Debian and the Python it comes with
# The same packages as images/controller/Dockerfile installs: keep the two in step.
PACKAGES = ("python3", "python3-venv", "iproute2", "nftables", "tcpdump", "procps", "util-linux", "tini")
LABEL = "org.twlab.image=controller"
ENTRYPOINT = ["/usr/bin/tini", "-s", "--", "/usr/local/bin/twlab-entrypoint"]
CHANGES = [f"ENTRYPOINT {json.dumps(ENTRYPOINT)}", 'CMD ["--list"]', "WORKDIR /",
           "ENV PATH=/opt/twlab/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
           "ENV PYTHONUNBUFFERED=1",           # progress shows as it happens in `docker logs` too
           f"LABEL {LABEL}"]
_SOURCES = ("lab", "scenarios", "images")                   # hashed into the tag, with _TOP_FILES
_TOP_FILES = ("pyproject.toml", "compose.yaml", ".dockerignore", "docs/reference.md")   # not README.md


def _recipe(checkout: Path) -> Path:
    return checkout / "images" / "controller"


def _mmdebstrap_argv(checkout: Path, wheels: Path, out: Path) -> list[str]:
    recipe = _recipe(checkout)
    return ["mmdebstrap", "--variant=apt", "--include=" + ",".join(PACKAGES),
            f"--customize-hook=copy-in {wheels} /tmp",
            f"--customize-hook=upload {recipe / 'install'} /tmp/twlab-install",
            f"--customize-hook=upload {recipe / 'entrypoint'} /usr/local/bin/twlab-entrypoint",
            f'--customize-hook=chroot "$1" sh /tmp/twlab-install --no-index --find-links /tmp/{wheels.name} twlab',
            f'--customize-hook=chmod 0755 "$1"/usr/local/bin/twlab-entrypoint && rm -rf "$1"/tmp/{wheels.name} '
            '"$1"/tmp/twlab-install',
            SUITE, str(out)]


def controller_tag(checkout: Path | None = None) -> str:
    """`twlab/twlab:<12 hex digits>`: a hash of both recipes and of what the package is built from."""
    checkout = checkout or require_checkout("`invoke image --controller`")
    recipe = _mmdebstrap_argv(Path("checkout"), Path("wheels"), Path("out.tar"))   # wherever it is
    digest = hashlib.sha256("\0".join(recipe + CHANGES).encode())
    files = [checkout / f for f in _TOP_FILES]
    for top in _SOURCES:
        files += sorted(p for p in (checkout / top).rglob("*")
                        if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc")
    for path in files:
        digest.update(str(path.relative_to(checkout)).encode() + b"\0" + path.read_bytes())
    return f"{IMAGE_REPO}:{digest.hexdigest()[:12]}"


def build_controller(client: docker.DockerClient, method: str = "auto", progress: Progress = print) -> str:
    """Build the controller image from this checkout (even when present) and return its tag."""
    from .image import METHODS

    checkout = require_checkout("`invoke image --controller`")
    if method not in METHODS:
        raise ImageError(f"unknown image build method {method!r}; use one of {', '.join(METHODS)}")
    with _build_lock(progress, cache_dir() / "controller-image.lock", "the controller image"):
        tag, start = controller_tag(checkout), time.monotonic()
        previous = _image_id(client, f"{IMAGE_REPO}:latest")
        why_not = None if method == "dockerfile" else "--method debootstrap"
        if method == "auto":
            why_not = _pull_base(client)
        if why_not is None:
            progress(f"building the controller image from {_recipe(checkout)}/Dockerfile...")
            try:
                _build_dockerfile(client, checkout, tag)
            except ImageError as exc:
                if method == "dockerfile":
                    raise
                why_not = str(exc)
        if why_not is not None:
            if method == "auto":
                progress(f"no Dockerfile build ({why_not}); building offline instead")
            _build_offline(client, checkout, tag, progress)
        _tag_latest(client, tag, previous)
        progress(f"done in {time.monotonic() - start:.1f} s: {tag} (also {IMAGE_REPO}:latest)")
        return tag


def _build_dockerfile(client: docker.DockerClient, checkout: Path, tag: str) -> None:
    dockerfile = str((_recipe(checkout) / "Dockerfile").relative_to(checkout))
    try:
        client.images.build(path=str(checkout), dockerfile=dockerfile, tag=tag, rm=True, forcerm=True)
    except docker.errors.BuildError as exc:
        raise ImageError(f"docker build of {dockerfile} failed: {_one_line(exc.msg)}") from exc
    except docker.errors.DockerException as exc:
        raise ImageError(f"docker build of {dockerfile} failed: {_one_line(exc)}") from exc


def _build_offline(client: docker.DockerClient, checkout: Path, tag: str, progress: Progress) -> None:
    import shutil

    if shutil.which("mmdebstrap") is None:
        raise ImageError("mmdebstrap is not installed: run scripts/setup or apt-get install mmdebstrap")
    with tempfile.TemporaryDirectory(prefix="twlab-controller-") as tmp:
        wheels = Path(tmp) / "wheels"
        progress(f"fetching twlab's wheel and its dependencies' for Python {PYTHON} (pip)...")
        _fetch_wheels(checkout, wheels)
        progress(f"building the controller image offline with mmdebstrap ({len(list(wheels.iterdir()))} "
                 "wheels; about 1-2 min)...")
        tarball = Path(tmp) / "controller.tar"
        _run_mmdebstrap(_mmdebstrap_argv(checkout, wheels, tarball))
        repo, version = tag.split(":")
        try:
            client.api.import_image(src=str(tarball), repository=repo, tag=version, changes=CHANGES)
        except docker.errors.DockerException as exc:
            raise ImageError(f"docker import of the mmdebstrap tarball failed: {_one_line(exc)}") from exc


def _fetch_wheels(checkout: Path, wheels: Path) -> None:
    """twlab's own wheel, and every dependency's as a wheel for the image's Python and machine
    (this machine's pip and its configuration: its index, mirrors and caches)."""
    deps = tomllib.loads((checkout / "pyproject.toml").read_text())["project"]["dependencies"]
    arch = platform.machine()
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    _pip([*pip, "wheel", "--no-deps", "--wheel-dir", str(wheels), str(checkout)])
    _pip([*pip, "download", "--dest", str(wheels), "--only-binary=:all:", "--python-version", PYTHON,
          "--implementation", "cp", "--abi", f"cp{PYTHON.replace('.', '')}", "--abi", "abi3", "--abi", "none",
          "--platform", f"manylinux2014_{arch}", "--platform", f"manylinux_2_28_{arch}", *deps])


def _pip(argv: list[str]) -> None:
    done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True)
    if done.returncode != 0:
        lines = [ln for ln in (done.stderr + done.stdout).splitlines() if ln.strip()] or ["no output"]
        cause = next((ln for ln in lines if ln.startswith("ERROR:")), lines[-1])
        raise ImageError(f"pip {argv[4]} for the controller image failed: {_one_line(cause)}")


def _tag_latest(client: docker.DockerClient, tag: str, previous: str | None) -> None:
    """`:latest` is the image just built; the one it named before loses its tags (and goes, unless
    a container uses it)."""
    latest = f"{IMAGE_REPO}:latest"
    try:
        client.images.get(tag).tag(IMAGE_REPO, "latest")
    except docker.errors.DockerException as exc:
        raise ImageError(f"built {tag} but cannot tag it latest: {_one_line(exc)}") from exc
    if previous is None or previous == _image_id(client, tag):
        return
    try:
        for old in client.images.get(previous).tags:
            if old.startswith(f"{IMAGE_REPO}:") and old not in (tag, latest):
                client.images.remove(old)
    except docker.errors.DockerException:
        pass
