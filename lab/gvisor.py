"""gVisor's netstack as a lab host (``--stack HOST=gvisor``): the host's sockets live in runsc's
user-space TCP/IP stack instead of Linux's.

One sandbox per gVisor host, started once the netns backend has made the host's namespace: the
OCI bundle's network namespace *is* the lab host's (``--network=sandbox``: gVisor takes over the
namespace's interface and its address, which disappears from Linux's side), its root filesystem is
the lab's host image exported once and cached under .cache/gvisor/. Its first process only sleeps;
every peer (lab/peer_agent.py, unchanged) is a ``runsc exec`` into it, so a restarted server is a
new process over the same netstack, as on Linux.

Debian 12's runsc (0.0~20221219) refuses ``--network=sandbox`` "in root network namespace" when
/proc/sys/net/core/rmem_default exists, and Linux 6.18 shows that file in every namespace; so runsc
is started from inside the lab namespace in a private mount namespace with a tmpfs over
/proc/sys/net/core (the mount namespace lives exactly as long as the sandbox's processes). runsc's
control socket is an abstract unix socket, which belongs to a network namespace: every later runsc
command (exec, delete) runs inside the host's namespace too.

Everything of a lab's sandboxes lives in GVISOR_DIR/<lab id>/ (runsc's state, the bundles); the
processes carry ``--root=GVISOR_DIR/<lab id>`` on their command line. ``cleanup`` finds both.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import BackendError, EnvError, ScenarioSkipped, UsageError

if TYPE_CHECKING:
    from .backends.base import Host

__all__ = ["STACKS", "GVISOR_DIR", "GvisorUnavailable", "parse_stacks", "check_stacks", "Sandbox",
           "lab_dirs", "processes_of", "remove_lab", "for_vm", "stack_args", "ROOTFS_ENV"]

STACKS = ("linux", "gvisor")
GVISOR_DIR = Path(os.environ.get("TWLAB_GVISOR_DIR", "/run/twlab-gvisor"))
RUNSC = os.environ.get("TWLAB_RUNSC", "runsc")
RUNSC_FLAGS = ("--platform=ptrace", "--ignore-cgroups", "--network=sandbox")
START_TIMEOUT_S = 60.0
ROOTFS_ENV = "TWLAB_GVISOR_ROOTFS"   # a root filesystem already exported (set for a VM guest: lab.vm)


class GvisorUnavailable(ScenarioSkipped, EnvError):
    """A host asked for gVisor, and runsc is missing or refuses to start here."""

    def __init__(self, scenario: str, why: str) -> None:
        hint = "install runsc (scripts/setup does) or run without --stack HOST=gvisor"
        super().__init__(scenario, why, hint, f"{scenario} cannot run a gVisor host: {why}; {hint}")


class StackCannotShow(ScenarioSkipped):
    """What the run asks of a host cannot apply to the stack it runs (a Linux sysctl on gVisor)."""

    def __init__(self, scenario: str, why: str, hint: str) -> None:
        super().__init__(scenario, why, hint, f"{scenario} cannot run as asked: {why}; {hint}")


def parse_stacks(texts: list[str] | tuple[str, ...]) -> dict[str, str]:
    """``["client=gvisor", ...]`` -> {host: stack}; a host given twice keeps the last."""
    out: dict[str, str] = {}
    for text in texts:
        host, sep, stack = str(text).partition("=")
        host, stack = host.strip(), stack.strip().lower()
        if not sep or not host or stack not in STACKS:
            raise UsageError(f"--stack {text!r}: give HOST=STACK with STACK one of {', '.join(STACKS)}, "
                             "e.g. --stack client=gvisor")
        out[host] = stack
    return out


def check_stacks(stacks: dict[str, str], ends: tuple[str, ...], backend: str) -> list[str]:
    """The gVisor hosts of a run, after refusing what cannot be (UsageError, one line)."""
    for host in stacks:
        if host not in ends:
            raise UsageError(f"--stack {host}=...: only the ends ({' and '.join(ends)}) can run another "
                             "TCP stack; the router forwards with Linux's")
    hosts = [h for h, s in stacks.items() if s == "gvisor"]
    if not hosts:
        return []
    if backend != "netns":
        raise UsageError(f"--stack {hosts[0]}=gvisor runs on the netns backend only (under Docker's runtime this "
                         "runsc refuses a network namespace it cannot tell from the root one); add --backend netns")
    return hosts


def no_sysctls_there(hosts: list[str], sysctls, scenario: str) -> None:
    """A Linux sysctl set on a gVisor host (by --sysctl, or the scenario's own settings) would not
    reach its sockets: the run cannot show what it asks for there - skipped, one line."""
    there = [s for s in sysctls if s.host in hosts]
    if there:
        raise StackCannotShow(scenario, f"{there[0].host} runs gVisor's netstack, and the run sets "
                              f"{there[0].key} there, a Linux sysctl that does not reach gVisor's sockets",
                              f"drop the --sysctl, or run it with {there[0].host} on Linux")
    return hosts


def allowed(lab, ends: tuple[str, ...], backend: str) -> list[str]:
    """The gVisor hosts of *lab* (lab.core.Lab) on *backend*: refused in one line (UsageError)
    where they cannot be, skipped (GvisorUnavailable) where runsc is missing."""
    hosts = check_stacks(lab.stacks, ends, backend)
    no_sysctls_there(hosts, lab.requested_sysctls, lab.scenario)
    why = runsc_missing() if hosts else None
    if why:
        raise GvisorUnavailable(lab.scenario, why)
    return hosts


def start_sandboxes(lab, names: list[str]) -> dict:
    """A started Sandbox for each host in *names* of *lab* (lab.core.Lab; its tear-down removes
    them, lab.teardown); none when *names* is empty."""
    lab_id, hosts, scenario, progress = lab.lab_id, lab.hosts, lab.scenario, lab.progress
    out: dict[str, Sandbox] = {}
    if not names:
        return out
    try:
        root = rootfs(progress)
        for name in names:
            out[name] = Sandbox(lab_id, hosts[name])
            out[name].start(root)
            progress(f"{name} runs gVisor's netstack (runsc sandbox {out[name].ident})")
    except ScenarioSkipped as exc:
        for sandbox in out.values():
            sandbox.stop()
        raise GvisorUnavailable(scenario, exc.why) from exc
    return out


def for_vm(stacks: dict[str, str], backend: str, progress=lambda s: None) -> dict[str, str]:
    """Before a VM boots for a run with *stacks* (``lab.vm``): what check_stacks refuses, refused
    here (one line, nothing booted), and the environment the guest needs - the root filesystem
    exported on this side (the guest has no Docker daemon; it sees this machine's files over 9p,
    runsc among them). Empty when no host runs gVisor."""
    hosts = check_stacks(stacks, ("client", "server"), backend)
    if not hosts:
        return {}
    why = runsc_missing()
    if why:
        raise GvisorUnavailable("the run", why)
    return {ROOTFS_ENV: str(rootfs(progress))}


def stack_args(stacks: dict[str, str]) -> list[str]:
    """*stacks* as the command line's ``--stack HOST=STACK`` flags."""
    return [a for host, stack in stacks.items() for a in ("--stack", f"{host}={stack}")]


def runsc_missing() -> str | None:
    """Why runsc cannot be used here, or None."""
    if shutil.which(RUNSC) is None:
        return f"{RUNSC} is not installed (Debian: apt-get install runsc)"
    return None


def lab_dir(lab_id: str) -> Path:
    return GVISOR_DIR / lab_id


def runsc(lab_id: str, *args: str) -> list[str]:
    return [RUNSC, f"--root={lab_dir(lab_id)}", *RUNSC_FLAGS, *args]


def rootfs(progress=lambda s: None) -> Path:
    """The host image's root filesystem, exported once per image and cached (.cache/gvisor/);
    inside a VM guest, which has no Docker daemon, the one the host resolved (ROOTFS_ENV)."""
    from . import image
    from .backends.docker import client
    from .paths import cache_dir

    given = os.environ.get(ROOTFS_ENV)
    if given:
        return Path(given)
    try:
        dc = client()
    except EnvError as exc:
        raise GvisorUnavailable("the lab", f"the host image's files come from Docker, and {exc}") from exc
    try:
        tag = image.ensure_image(dc, progress=progress)
        ident = dc.images.get(tag).id.split(":")[-1][:12]
        out = cache_dir() / "gvisor" / f"rootfs-{ident}"
        if (out / "usr" / "bin" / "python3").exists():
            return out
        with image._build_lock(progress, cache_dir() / "gvisor.lock", "the gVisor root filesystem"):
            if (out / "usr" / "bin" / "python3").exists():
                return out
            progress(f"exporting {tag} for gVisor hosts into {out} (once)")
            tmp = out.with_name(out.name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir(parents=True)
            ctr = dc.containers.create(tag, command=["true"])
            try:
                tar = subprocess.Popen(["tar", "-x", "-C", str(tmp)], stdin=subprocess.PIPE)
                for chunk in ctr.export():
                    tar.stdin.write(chunk)
                tar.stdin.close()
                if tar.wait() != 0:
                    raise EnvError(f"could not unpack {tag} into {tmp}")
            finally:
                ctr.remove(force=True)
            tmp.rename(out)
            return out
    finally:
        dc.close()


def _bundle(path: Path, root: Path, nspath: str, hostname: str) -> None:
    """An OCI bundle: runsc's own default spec, with this host's namespace and root filesystem."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run([RUNSC, "spec", "--bundle", str(path), "--", "sleep", "infinity"], check=True,
                   capture_output=True, timeout=30)
    cfg = json.loads((path / "config.json").read_text())
    cfg["root"] = {"path": str(root), "readonly": True}
    cfg["hostname"] = hostname
    cfg["process"].update(terminal=False, args=["sleep", "infinity"], cwd="/")
    spaces = [n for n in cfg["linux"]["namespaces"] if n["type"] != "network"]
    cfg["linux"]["namespaces"] = [*spaces, {"type": "network", "path": nspath}]
    (path / "config.json").write_text(json.dumps(cfg, indent=1))


class Sandbox:
    """The gVisor sandbox of one lab host."""

    def __init__(self, lab_id: str, host: Host) -> None:
        self.lab_id, self.host = lab_id, host
        self.ident = f"twlab-{lab_id}-{host.name}"

    def inside(self, *args: str) -> list[str]:
        """A runsc command run in the host's network namespace (runsc's control socket is there)."""
        return ["nsenter", f"--net={self.host.nspath}", "--", *runsc(self.lab_id, *args)]

    def start(self, root: Path) -> Sandbox:
        """Start it; the host's interfaces' names are noted first (their addresses move into
        gVisor); then the host runs its programs inside the sandbox."""
        for net in self.host.addresses:
            self.host.ifnames[net] = self.host.ifname(net)
        bundle = lab_dir(self.lab_id) / "bundles" / self.host.name
        _bundle(bundle, root, self.host.nspath, self.host.name)
        start = " ".join(runsc(self.lab_id, "run", "--detach", "--bundle", str(bundle), self.ident))
        argv = ["nsenter", f"--net={self.host.nspath}", "--", "unshare", "--mount", "--propagation", "private",
                "sh", "-c", f"mount -t tmpfs twlab-gvisor /proc/sys/net/core && exec {start}"]
        errfile = bundle / "start.err"      # a file: the detached sandbox keeps what it inherits open
        try:
            with errfile.open("w") as err:
                done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err,
                                      timeout=START_TIMEOUT_S, start_new_session=True)
        except subprocess.TimeoutExpired as exc:
            raise GvisorUnavailable("the lab", f"runsc did not start {self.ident} within "
                                    f"{START_TIMEOUT_S:g} s") from exc
        if done.returncode != 0:
            lines = errfile.read_text(errors="replace").strip().splitlines()
            raise GvisorUnavailable("the lab", f"runsc refused to start {self.host.name}'s sandbox: "
                                    f"{lines[-1] if lines else 'exit ' + str(done.returncode)}")
        self.host.exec_prefix = self.inside("exec", self.ident)
        self.host.python = ["python3", "-u"]
        self.host.stack = "gvisor"
        return self

    def stop(self) -> None:
        """Remove the sandbox (its processes and state), whatever state it is in."""
        try:
            subprocess.run(self.inside("delete", "--force", self.ident), stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=15)
        except (OSError, subprocess.TimeoutExpired):
            pass
        kill(processes_of(self.lab_id, self.ident))


def lab_dirs() -> list[str]:
    """The lab ids that have a gVisor directory."""
    try:
        return sorted(p.name for p in GVISOR_DIR.iterdir() if p.is_dir())
    except FileNotFoundError:
        return []


def processes_of(lab_id: str, ident: str | None = None) -> list[int]:
    """runsc processes (sandbox, gofer, exec clients) of lab *lab_id* (of its sandbox *ident*):
    they carry --root=GVISOR_DIR/<lab id> on their command line."""
    mark = f"--root={lab_dir(lab_id)}".encode()
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                args = f.read().split(b"\0")
        except OSError:
            continue
        if mark in args and (ident is None or ident.encode() in args or _sandbox_of(args, ident)):
            pids.append(int(entry))
    return pids


def _sandbox_of(args: list[bytes], ident: str) -> bool:
    """runsc-sandbox/gofer name their bundle, not the container id."""
    host = ident.rsplit("-", 1)[-1]
    return any(a.endswith(f"/bundles/{host}".encode()) for a in args)


def kill(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline and any(os.path.exists(f"/proc/{p}") for p in pids):
        time.sleep(0.02)


def remove_lab(lab_id: str) -> None:
    """Kill every runsc process of lab *lab_id* and remove its directory."""
    kill(processes_of(lab_id))
    left = processes_of(lab_id)
    if left:
        raise BackendError(f"gVisor processes of lab {lab_id} survived SIGKILL: {left}")
    shutil.rmtree(lab_dir(lab_id), ignore_errors=True)
