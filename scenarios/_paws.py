"""PAWS with timestamps off, judged the same way wherever a scenario checks PAWS (not a scenario:
the leading underscore keeps it out of the catalog)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lab.verdict import Check

if TYPE_CHECKING:
    from lab.evidence import Evidence

__all__ = ["without_timestamps", "tw_counter", "TW_COUNTER", "OLD_TW_COUNTER", "PAWS_COUNTER_WHY", "counted"]

# reference R-TW-PAWS: tcp_timewait_state_process() counts a PAWS reject in TIME-WAIT as
# LINUX_MIB_PAWS_TW_REJECTED (PAWSTimewait) since the April 2025 commit that added it (after
# v6.12); v6.1 and v6.12 count it as LINUX_MIB_PAWSESTABREJECTED (PAWSEstab), and have no
# PAWSTimewait at all
TW_COUNTER, OLD_TW_COUNTER = "TcpExtPAWSTimewait", "TcpExtPAWSEstab"
PAWS_COUNTER_WHY = ("the kernel's count of PAWS rejects in TIME-WAIT: PAWSTimewait, or PAWSEstab where "
                    "the kernel has no PAWSTimewait, as v6.1 and v6.12 (reference R-TW-PAWS)")

EXPECTED = "timestamps off: no TSval, so PAWS has nothing to act on (its counter stays +0)"


def without_timestamps(name: str, citation: str, ev: Evidence, tsvals: tuple[int | None, ...], paws: int,
                       observed: str, values: dict, shown_by: str) -> Check:
    """With tcp_timestamps=0 PAWS has nothing to act on: not applicable, and PAWSTimewait +0 proves
    nothing - unless a TSval on the wire or a PAWS count says timestamps were used after all (a
    failure). *shown_by* names the check that judges what TIME-WAIT did instead."""
    if all(t is None for t in tsvals) and paws == 0:
        return Check.not_applicable(
            name, citation, EXPECTED,
            f"tcp_timestamps=0 (client {ev.sysctl('client', 'net.ipv4.tcp_timestamps')}, server "
            f"{ev.sysctl('server', 'net.ipv4.tcp_timestamps')}): no segment carries a TSval and PAWS "
            f"cannot act; {values.get('paws_counter', 'PAWSTimewait')} +{paws} shows nothing ({shown_by})", values)
    return Check(name, citation, EXPECTED, observed, False, values)


def tw_counter(snapshot: dict[str, int]) -> str:
    """The counter this kernel counts a PAWS reject in TIME-WAIT in, from a full snapshot of its
    counters (lab.nsops.read_counters lists every one it has, zeros too)."""
    return TW_COUNTER if TW_COUNTER in snapshot else OLD_TW_COUNTER


def counted(facts: dict, deltas: dict[str, int]) -> tuple[str, int]:
    """(the counter's short name, its change) for a run whose *facts* name the kernel's counter
    (``paws_tw_counter``; runs recorded before it was kept ran on a kernel with PAWSTimewait)."""
    name = facts.get("paws_tw_counter") or TW_COUNTER
    return name.removeprefix("TcpExt"), deltas.get(name, 0)
