"""The lab host image: `twlab/host:<hash of its recipe>`.

Two recipes for the same host, picked by `method`:
  "dockerfile"   docker build of images/host (needs a registry for debian:bookworm-slim)
  "debootstrap"  offline: mmdebstrap makes the root filesystem from Debian packages,
                 then Docker imports the tarball
  "auto"         the Dockerfile when the base image can be had quickly, else offline

The tag hashes both recipes, so changing either one makes a new tag (and a rebuild).
The image is also tagged `twlab/host:latest`, the default in compose.yaml, so that
`docker compose -f compose.yaml up` works on its own.
"""

from __future__ import annotations

import fcntl
import hashlib
import queue
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import docker
import docker.errors

from lab.errors import ImageError
from lab.paths import cache_dir, data_file

IMAGE_REPO = "twlab/host"
BASE_IMAGE = "debian:bookworm-slim"
CONTEXT = data_file("host", "Dockerfile").parent     # images/host in a checkout (lab.paths)
LOCK = cache_dir() / "image.lock"
METHODS = ("auto", "dockerfile", "debootstrap")
# The same packages as images/host/Dockerfile installs: keep the two in step.
PACKAGES = ("python3", "iproute2", "nftables", "tcpdump", "procps", "iputils-ping")
LABEL = "org.twlab.image=host"
# "auto" waits this long for the registry's first answer before building offline.
PULL_ANSWER_TIMEOUT = 10.0

Progress = Callable[[str], object]


def _mmdebstrap_argv(out: Path) -> list[str]:
    """mmdebstrap with its default Debian mirrors (deb.debian.org, security.debian.org).

    No dpkg path-excludes for docs and locales: they would save 50 MB but make mmdebstrap's
    extraction about 20 s slower.
    """
    return ["mmdebstrap", "--variant=apt", "--include=" + ",".join(PACKAGES), "bookworm", str(out)]


def image_tag() -> str:
    """`twlab/host:<12 hex digits>`, a hash of the Dockerfile and the mmdebstrap recipe."""
    digest = hashlib.sha256((CONTEXT / "Dockerfile").read_bytes())
    digest.update("\0".join(_mmdebstrap_argv(Path("base.tar"))).encode())
    return f"{IMAGE_REPO}:{digest.hexdigest()[:12]}"


def image_present(client: docker.DockerClient) -> bool:
    try:
        client.images.get(image_tag())
    except docker.errors.ImageNotFound:
        return False
    except docker.errors.DockerException as exc:
        raise ImageError(f"cannot ask Docker about the host image: {_one_line(exc)}") from exc
    return True


def ensure_image(
    client: docker.DockerClient, method: str = "auto", progress: Progress = print
) -> str:
    """The host image's tag; builds the image first when it is missing."""
    if image_present(client):
        return image_tag()
    with _build_lock(progress):
        if image_present(client):  # another process built it while we waited
            return image_tag()
        return _build(client, method, progress)


def build_image(
    client: docker.DockerClient, method: str = "auto", progress: Progress = print
) -> str:
    """Build the host image (even when present) and return its tag."""
    with _build_lock(progress):
        return _build(client, method, progress)


@contextmanager
def _build_lock(progress: Progress, lock_path: Path | None = None, what: str = "the host image") -> Iterator[None]:
    """One build at a time on this machine (two would both import, leaving one dangling)."""
    lock_path = lock_path or LOCK
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with lock_path.open("w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            progress(f"waiting for another twlab process to finish building {what}...")
            fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _build(client: docker.DockerClient, method: str, progress: Progress) -> str:
    if method not in METHODS:
        raise ImageError(f"unknown image build method {method!r}; use one of {', '.join(METHODS)}")
    tag = image_tag()
    start = time.monotonic()
    previous = _image_id(client, tag)
    if method == "dockerfile":
        progress(f"building host image from {CONTEXT}/Dockerfile...")
        _build_dockerfile(client, tag)
    elif method == "debootstrap":
        _build_offline(client, tag, progress)
    else:
        why_not = _pull_base(client)
        if why_not is None:
            progress(f"{BASE_IMAGE} is available: building host image from the Dockerfile...")
            try:
                _build_dockerfile(client, tag)
            except ImageError as exc:
                why_not = str(exc)
        if why_not is not None:
            progress(f"no Dockerfile build ({why_not}); building offline instead")
            _build_offline(client, tag, progress)
    try:
        client.images.get(tag).tag(IMAGE_REPO, "latest")
    except docker.errors.DockerException as exc:
        raise ImageError(f"built {tag} but cannot tag it latest: {_one_line(exc)}") from exc
    if previous is not None and previous != _image_id(client, tag):
        # The rebuild took the tag away from our previous image: drop it unless in use.
        try:
            client.images.remove(previous)
        except docker.errors.DockerException:
            pass
    progress(f"done in {time.monotonic() - start:.1f} s: {tag}")
    return tag


def _image_id(client: docker.DockerClient, name: str) -> str | None:
    try:
        return str(client.images.get(name).id)
    except docker.errors.ImageNotFound:
        return None
    except docker.errors.DockerException as exc:
        raise ImageError(f"cannot ask Docker about {name}: {_one_line(exc)}") from exc


def _build_dockerfile(client: docker.DockerClient, tag: str) -> None:
    try:
        client.images.build(path=str(CONTEXT), tag=tag, rm=True, forcerm=True)
    except docker.errors.BuildError as exc:
        raise ImageError(f"docker build of {CONTEXT} failed: {_one_line(exc.msg)}") from exc
    except docker.errors.DockerException as exc:
        raise ImageError(f"docker build of {CONTEXT} failed: {_one_line(exc)}") from exc


def _pull_base(client: docker.DockerClient) -> str | None:
    """Make BASE_IMAGE present; None when it is, else why not (one line).

    The SDK's pull has no timeout, and a firewalled registry can hang; so the pull runs in
    a thread and we give up when the registry has not answered within PULL_ANSWER_TIMEOUT.
    Once it answers, the download itself may take as long as it takes.
    """
    try:
        client.images.get(BASE_IMAGE)
        return None
    except docker.errors.ImageNotFound:
        pass
    except docker.errors.DockerException as exc:
        return _one_line(exc)

    events: queue.Queue[dict[str, object] | BaseException | None] = queue.Queue()

    def pull() -> None:
        try:
            for event in client.api.pull(BASE_IMAGE, stream=True, decode=True):
                events.put(event)
            events.put(None)
        except BaseException as exc:  # handed to the waiting thread
            events.put(exc)

    threading.Thread(target=pull, name="twlab-pull-base", daemon=True).start()
    try:
        item = events.get(timeout=PULL_ANSWER_TIMEOUT)
    except queue.Empty:
        return f"cannot pull {BASE_IMAGE}: no answer within {PULL_ANSWER_TIMEOUT:.0f} s"
    while item is not None:
        if isinstance(item, BaseException):
            return f"cannot pull {BASE_IMAGE}: {_one_line(item)}"
        if "error" in item:
            return f"cannot pull {BASE_IMAGE}: {_one_line(item['error'])}"
        item = events.get()
    return None


def _build_offline(client: docker.DockerClient, tag: str, progress: Progress) -> None:
    if shutil.which("mmdebstrap") is None:
        raise ImageError("mmdebstrap is not installed: run scripts/setup or apt-get install mmdebstrap")
    progress("building host image offline with mmdebstrap (about 20-60 s)...")
    with tempfile.TemporaryDirectory(prefix="twlab-image-") as tmp:
        tarball = Path(tmp) / "base.tar"
        _run_mmdebstrap(_mmdebstrap_argv(tarball))
        repo, version = tag.split(":")
        try:
            client.api.import_image(
                src=str(tarball),
                repository=repo,
                tag=version,
                changes=['CMD ["sleep", "infinity"]', f"LABEL {LABEL}"],
            )
        except docker.errors.DockerException as exc:
            raise ImageError(f"docker import of the mmdebstrap tarball failed: {_one_line(exc)}") from exc


def _run_mmdebstrap(argv: list[str]) -> None:
    # stdin is /dev/null: mmdebstrap reads a sources.list from a stdin that is not a tty.
    proc = subprocess.Popen(
        argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        output, _ = proc.communicate()
    except BaseException:
        # Not SIGKILL (what subprocess.run does): on SIGTERM mmdebstrap unmounts and
        # removes its own chroot directory.
        proc.terminate()
        proc.wait()
        raise
    if proc.returncode != 0:
        lines = [line for line in output.splitlines() if line.strip()] or ["no output"]
        cause = next((line for line in lines if line.startswith("E:")), lines[-1])
        raise ImageError(f"mmdebstrap failed (exit {proc.returncode}): {_one_line(cause)}")


def _one_line(what: object, limit: int = 300) -> str:
    if isinstance(what, docker.errors.APIError) and what.explanation:
        what = what.explanation
    text = " ".join(str(what).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."
