"""A Docker engine inside the VM, for `--backend docker` under a stock kernel.

The guest runs this machine's own dockerd, containerd and runc (the host's ``/`` is the guest's,
read-only over 9p), with everything that is state kept apart from the host:

* its socket at ``/run/twlab-vm/docker.sock`` on the guest's own tmpfs ``/run`` (``DOCKER_HOST``
  says so to every docker client in the guest; the host's /run is hidden by that tmpfs, and no
  connection crosses 9p anyway), its exec-root and pidfile there too, its config file the run's
  own ``{}`` (never the host's /etc/docker/daemon.json);
* no iptables and no default bridge (``--iptables=false --ip-masq=false --bridge=none``): the lab
  makes its own links (veth pairs between the containers, lab.backends.links) and none leads anywhere;
* cgroup v2, mounted by stage 2 at /sys/fs/cgroup;
* its data-root on a virtio disk: a raw ext4 image that holds the lab's host image already
  loaded, attached with ``snapshot=on``, so every write of a run goes to a qcow2 file qemu
  creates in /var/tmp and unlinks at once (gone with qemu, even after SIGKILL) and the image
  itself never changes.

The disk is made once per host image and engine version (``.cache/vm/docker/<image id>-<engine
version>.img``): `docker save` of the image this machine already built (no registry) into a
tarball beside it, an ext4 file system made on this side (mkfs.ext4), then one VM boot that starts
the engine on the disk writable, ``docker load``s the tarball and stops the engine cleanly. The
tarball is removed afterwards; so are the files of a disk that was being made when its run was
interrupted (at once, or by the next run that makes one). Loading costs one to two minutes under
TCG (Go's sha256 and the untar, emulated), once; each run after that only starts the engine.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import EnvError
from .kernel import CACHE, locked

__all__ = ["Disk", "SOCKET", "MEMORY", "data_disk", "guest_start", "guest_stop", "image_disk_key"]

SOCKET = "/run/twlab-vm/docker.sock"
DATA_ROOT = "/var/lib/docker"           # in the guest: the disk's mount point (hides the host's)
MEMORY = "1024M"                        # guest memory for a docker run (the netns path keeps 512M)
DISK_SIZE = 1 << 30                     # sparse; the host image takes ~230 MB of it
DOCKERD_FLAGS = ("--iptables=false", "--ip-masq=false", "--bridge=none", "--storage-driver=overlay2",
                 f"--data-root={DATA_ROOT}", "--exec-root=/run/twlab-vm/docker",
                 "--pidfile=/run/twlab-vm/dockerd.pid", f"--host=unix://{SOCKET}")
ENGINE_WAIT_S = 120                     # dockerd answers in ~5 s under TCG


@dataclass(frozen=True)
class Disk:
    """The engine's data-root disk for one VM boot: *writable* only while the image is loaded."""

    path: Path
    writable: bool = False

    def qemu_args(self) -> list[str]:
        opts = f"file={str(self.path).replace(',', ',,')},format=raw,if=virtio,cache=unsafe"
        # writable: the guest's fstrim punches holes for what docker load wrote and freed
        return ["-drive", opts + (",discard=unmap" if self.writable else ",snapshot=on")]


def guest_start() -> str:
    """Stage-2 shell that brings the engine up (sourced before the command; ``fail`` and ``$ctl``
    are stage 2's). Marks the console when it answers, with the kernel the engine reports."""
    flags = " ".join(shlex.quote(f) for f in DOCKERD_FLAGS)
    return f"""# the guest's own Docker engine: data-root on the virtio disk, socket on the guest's /run
export DOCKER_HOST=unix://{SOCKET}
mount -t cgroup2 cgroup2 /sys/fs/cgroup || fail "mounting cgroup2 for dockerd"
modprobe virtio_blk || fail "loading virtio_blk for the engine's disk"
n=0
until [ -b /dev/vda ]; do
    n=$((n + 1)); [ $n -gt 100 ] && fail "no /dev/vda: the engine's disk did not appear"; sleep 0.1
done
mkdir -p {DATA_ROOT} && mount -o noatime /dev/vda {DATA_ROOT} || fail "mounting the engine's disk at {DATA_ROOT}"
echo '{{}}' > "$ctl/daemon.json"
dockerd --config-file "$ctl/daemon.json" {flags} >"$ctl/dockerd.log" 2>&1 </dev/null &
dockerd_pid=$!
n=0
until [ -S {SOCKET} ] && docker version >/dev/null 2>&1; do
    kill -0 $dockerd_pid 2>/dev/null || fail "dockerd exited at start: $(tail -n 1 "$ctl/dockerd.log")"
    n=$((n + 1)); [ $n -gt {ENGINE_WAIT_S * 5} ] && fail "dockerd did not answer within {ENGINE_WAIT_S} s"
    sleep 0.2
done
echo "@@twlab-vm:mark engine $(docker info --format '{{{{.KernelVersion}}}}')@@"
"""


def guest_stop() -> str:
    """Stage-2 shell that stops the engine and unmounts its disk cleanly (after loading the image)."""
    return f"""kill $dockerd_pid
n=0
while kill -0 $dockerd_pid 2>/dev/null; do
    n=$((n + 1)); [ $n -gt 300 ] && fail "dockerd did not stop within 60 s"; sleep 0.2
done
sync    # blocks freed in a transaction not yet committed are not trimmed
fstrim {DATA_ROOT} || echo "fstrim failed: the cached disk keeps the blocks docker load freed"
umount {DATA_ROOT} || fail "unmounting the engine's disk"
sync
: > "$ctl/engine-stopped"
"""


def _engine_version() -> str:
    try:
        out = subprocess.run(["dockerd", "--version"], capture_output=True, text=True, timeout=30,
                             stdin=subprocess.DEVNULL).stdout
    except (FileNotFoundError, subprocess.TimeoutExpired):
        raise EnvError("dockerd not found: --backend docker in the VM runs this machine's Docker engine "
                       "there (install docker.io; scripts/setup does)") from None
    m = re.search(r"version ([^\s,]+)", out)
    return re.sub(r"[^A-Za-z0-9.+_-]", "_", m.group(1)) if m else "unknown"


def image_disk_key(image_id: str, engine_version: str) -> str:
    """The cached disk's name: the image's id (12 hex digits) and the engine version that loaded it."""
    return f"{image_id.split(':')[-1][:12]}-{engine_version}"


def data_disk(kernel: str, artifacts: Path, progress: Callable[[str], None] = print,
              timeout_s: float = 900.0) -> tuple[Disk, dict]:
    """The engine's disk with the lab's host image loaded, made the first time (one VM boot of
    *kernel*); and what it took ({"key", "seeded_s"} - seeded_s None when it was cached)."""
    from ..backends.docker import client
    from ..image import ensure_image

    try:
        dc = client()
    except EnvError:
        raise EnvError("--backend docker in the VM loads the lab's host image from this machine's Docker "
                       "engine, and none answers: start dockerd (scripts/dockerd-up) or use --backend "
                       "netns") from None
    try:
        tag = ensure_image(dc, progress=progress)
        key = image_disk_key(dc.images.get(tag).id, _engine_version())
        store = CACHE / "docker"
        disk = store / f"{key}.img"
        if disk.is_file():
            return Disk(disk), {"key": key, "image": tag, "seeded_s": None}
        with locked(CACHE / "docker.lock"):
            if disk.is_file():                   # another run made it while we waited
                return Disk(disk), {"key": key, "image": tag, "seeded_s": None}
            t0 = time.monotonic()
            _seed(dc, tag, store, key, kernel, artifacts / "engine-seed", progress, timeout_s)
            return Disk(disk), {"key": key, "image": tag, "seeded_s": round(time.monotonic() - t0, 1),
                                "seeded_at": time.time()}     # the run proper only reads it after this
    finally:
        dc.close()


def _seed(dc, tag: str, store: Path, key: str, kernel: str, artifacts: Path,
          progress: Callable[[str], None], timeout_s: float) -> None:
    """Make STORE/KEY.img: save *tag* from this machine's engine, load it in the VM. Holds the lock."""
    from .boot import run_command

    if shutil.which("mkfs.ext4") is None:
        raise EnvError("mkfs.ext4 not found: the VM's Docker engine keeps its data on an ext4 disk image "
                       "(install e2fsprogs; scripts/setup does)")
    store.mkdir(parents=True, exist_ok=True)
    for old in store.glob("*.tmp"):              # of a run killed while it made a disk: we hold the lock
        old.unlink(missing_ok=True)
    tar, tmp = store / f"{key}.{os.getpid()}.tar.tmp", store / f"{key}.{os.getpid()}.img.tmp"
    try:
        t0 = time.monotonic()
        progress(f"vm: first docker run with this image: saving {tag} for the VM's engine "
                 f"(a disk cached as {store / key}.img; later runs reuse it)")
        with open(tar, "wb") as f:
            for chunk in dc.images.get(tag).save(named=True):
                f.write(chunk)
        with open(tmp, "wb") as f:
            f.truncate(DISK_SIZE)
        subprocess.run(["mkfs.ext4", "-q", "-F", "-L", "twlab-docker", "-m", "0", "-E",
                        "lazy_itable_init=0,lazy_journal_init=0", str(tmp)],
                       check=True, capture_output=True, timeout=120, stdin=subprocess.DEVNULL)
        progress(f"vm: saved {tar.stat().st_size / 1e6:.0f} MB in {time.monotonic() - t0:.1f} s; "
                 f"loading it into the engine inside {kernel}")
        code, out = run_command(kernel, ["docker", "load", "-i", str(tar)], artifacts, progress, timeout_s,
                                disk=Disk(tmp, writable=True))
        if code != 0 or f"Loaded image: {tag}" not in out:
            raise EnvError(f"docker load inside the {kernel} VM exited {code} ({out.strip()[-200:] or 'no output'}); "
                           f"see {artifacts}/vm-console.log and vm-dockerd.log")
        tmp.rename(store / f"{key}.img")
        for old in store.glob("*.img"):          # disks of other images or engines: open ones live on
            if old.name != f"{key}.img":
                old.unlink(missing_ok=True)
    except subprocess.CalledProcessError as exc:
        raise EnvError(f"mkfs.ext4 failed on {tmp}: {exc.stderr.decode(errors='replace').strip()[-200:]}") from None
    finally:
        tar.unlink(missing_ok=True)
        tmp.unlink(missing_ok=True)
