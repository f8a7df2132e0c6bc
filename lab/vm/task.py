"""`invoke vm`'s checks of its input, all before anything boots (one `twlab:` line, exit 2)."""

from __future__ import annotations

from ..errors import UsageError

__all__ = ["checked_vm_args"]


def checked_vm_args(scenario: str, kernel: str, sysctl: list[str] | None, shape: list[str] | None,
                    timeout: str | float, backend: str, accel: str = "auto") -> tuple[float, str]:
    """Validate `invoke vm`'s flags; (the timeout in seconds, the backend inside the VM)."""
    from scenarios import get

    from ..core import parse_sysctl
    from ..shaping import UNUSED, parse_shapes
    from .accel import check
    from .boot import vm_backend
    from .kernel import kernel_spec

    sc = get(scenario)                                # usage errors here, before booting anything
    check(accel)
    kernel_spec(kernel)
    for text in sysctl or []:
        parse_sysctl(text)
    parse_shapes(shape or [])
    if shape and sc.shaping == UNUSED:
        raise UsageError(f"{scenario} runs without link shaping; drop --shape")
    try:
        timeout_s = float(timeout)
    except ValueError:
        raise UsageError("--timeout takes a number of seconds") from None
    return timeout_s, vm_backend(backend)
