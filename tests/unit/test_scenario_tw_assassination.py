"""Unit tests (no root) for tw-assassination's checks: on empty evidence, under either tcp_rfc1337,
nothing observed must never pass, and the expectation follows the sysctl in force."""

from __future__ import annotations

import pytest

from lab.evidence import Evidence
from scenarios import tw_assassination


def empty_evidence(sysctls: dict) -> Evidence:
    return Evidence(packets={"client": [], "server": [], "router": []}, timeline=[],
                    counters={}, sysctls=sysctls,
                    addresses={"client": "10.77.1.10", "router": "10.77.1.2", "server": "10.77.2.10"},
                    faults={}, facts={}, hz=250)


@pytest.mark.parametrize("rfc1337", ["0", "1"])
def test_tw_assassination_nothing_observed_fails(rfc1337):
    checks = tw_assassination.check(empty_evidence({"client": {"net.ipv4.tcp_rfc1337": rfc1337}}))
    assert len(checks) == 5
    assert not [c.name for c in checks if c.passed]
    names = {c.name for c in checks}
    assert ("time-wait-survives-rst" if rfc1337 == "1" else "time-wait-assassinated") in names
