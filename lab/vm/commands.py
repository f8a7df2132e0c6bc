"""The lab's own commands run inside a stock kernel under qemu (lab.vm.run): one scenario
(`invoke vm`) and a whole check (`invoke check --kernel`). The guest writes report.json or
check.json into the shared artifacts directory; they are read back here."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from ..artifacts import check_dir, ensure_dir
from ..errors import EnvError, UsageError
from ..saved import index_quietly, pages_drawn_after
from .boot import run, vm_backend
from .kernel import kernel_spec, label

__all__ = ["check_in_vm", "scenario_in_vm", "vm_facts", "with_vm"]


def check_in_vm(kernel: str, names: list[str], sysctls: list[str], from_host: bool, profile: str | None,
                shapes: list[str], artifacts: str | Path | None, parallel: int, backend: str = "auto",
                progress: Callable[[str], None] = print, family: str = "4", accel: str = "auto",
                stacks: dict[str, str] | None = None) -> dict:
    """`invoke check` itself, run inside *kernel* (netns backend there, or containers on the
    guest's own Docker engine with --backend docker), over *family* (4, 6 or both, as given), with
    *stacks* (each end's TCP stack, lab.gvisor); its summary, with the VM's exit code."""
    from ..gvisor import for_vm, stack_args
    from ..runner import default_artifacts

    kernel_spec(kernel)
    backend = vm_backend(backend)
    if from_host:
        raise UsageError("--from-host copies this machine's sysctls; with --kernel give them with "
                         "--sysctl or a profile")
    env = for_vm(stacks or {}, backend, progress)
    out = check_dir(Path(artifacts) if artifacts else default_artifacts(f"check-{label(kernel)}")).resolve()
    args = ["check", "--backend", backend, "--artifacts", str(out / "runs"), "--parallel", str(parallel),
            "--json-out", str(out / "check.json"), "--family", str(family), *stack_args(stacks or {})]
    args += [a for n in names for a in ("--scenario", n)]
    args += [a for t in sysctls for a in ("--sysctl", t)]
    args += [a for t in shapes for a in ("--shape", t)]
    if profile:
        args += ["--profile", str(Path(profile).resolve())]      # the host's / is the guest's
    ensure_dir(out)
    progress(f"check inside the {kernel} VM ({backend} backend): artifacts in {out}/")
    with pages_drawn_after(out, progress):  # the guest leaves each run's report.html to this side
        code, _ = run(kernel, args, out, progress=progress, timeout_s=3600, docker=backend == "docker",
                      accel=accel, env=env)
    index_quietly(out, f"check --kernel {kernel}", progress=progress)
    try:
        summary = json.loads((out / "check.json").read_text())
    except (OSError, ValueError):
        raise EnvError(f"inside the {kernel} VM the check exited {code} and left no check.json "
                       f"(see {out}/vm-console.log)") from None
    summary["vm"] = {"kernel": kernel, "backend": backend, "exit_code": code, **vm_facts(out)}
    return summary


def scenario_in_vm(kernel: str, scenario: str, out: Path, sysctls: list[str], shapes: list[str],
                   strict_rfc: bool, timeout_s: float, backend: str,
                   progress: Callable[[str], None] = print, family: int = 4,
                   accel: str = "auto", stacks: dict[str, str] | None = None) -> tuple[dict, int]:
    """`invoke run SCENARIO --family FAMILY` (with *stacks*, each end's TCP stack) inside *kernel*:
    its report and the exit code the guest's run gave. No report (the run was refused or broke):
    the guest's own `twlab:` line, exit 2."""
    from ..gvisor import for_vm, stack_args

    env = for_vm(stacks or {}, backend, progress)
    args = ["run", scenario, "--backend", backend, "--json", "--artifacts", str(out), "--family", str(family),
            *stack_args(stacks or {})]
    args += [a for text in sysctls for a in ("--sysctl", text)]
    args += [a for text in shapes for a in ("--shape", text)]
    args += ["--strict-rfc"] if strict_rfc else []
    seen: list[str] = []

    def said(line: str) -> None:
        seen.append(line)
        progress(line)

    with pages_drawn_after(out, progress):  # the guest leaves report.html to this side
        code, _ = run(kernel, args, out, progress=said, timeout_s=timeout_s, docker=backend == "docker",
                      accel=accel, env=env)
        try:
            report = with_vm(out / "report.json", out)
        except (OSError, ValueError):
            line = next((ln for ln in reversed(seen) if ln.startswith("twlab:")), None)
            raise VmRunFailed(f"inside the {kernel} VM: " + (line[len("twlab:"):].strip() if line else
                              f"the run exited {code} and left no report.json (see {out}/vm-console.log)"),
                              code if code in (1, 2, 130) else 2) from None
    return report, code


class VmRunFailed(EnvError):
    """The guest's run left no report: its own message, and the exit code to pass on."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.exit_code = code


def vm_facts(out: Path) -> dict:
    """What the VM run left in OUT/vm.json: the kernel as given and its source, the accelerator
    and why, the timing split."""
    try:
        doc = json.loads((out / "vm.json").read_text())
    except (OSError, ValueError):
        return {}
    return {k: doc[k] for k in ("accel", "accel_why", "release", "source", "package", "version",
                                "kernel_s", "boot_s", "command_s", "total_s") if k in doc}


def with_vm(path: Path, out: Path) -> dict:
    """report.json with a "vm" key added (the kernel as given, KVM or TCG, the boot split),
    written back so the file says it too."""
    from ..artifacts import write_text

    report = json.loads(path.read_text())
    facts = vm_facts(out)
    if facts:
        report["vm"] = {"kernel_arg": json.loads((out / "vm.json").read_text()).get("kernel"), **facts}
        write_text(path, json.dumps(report, indent=2, default=str) + "\n")
    return report
