"""PAWS with timestamps off, judged the same way wherever a scenario checks PAWS (not a scenario:
the leading underscore keeps it out of the catalog)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from lab.verdict import Check

if TYPE_CHECKING:
    from lab.evidence import Evidence

__all__ = ["without_timestamps"]

EXPECTED = "timestamps off: no TSval, so PAWS has nothing to act on (PAWSTimewait stays +0)"


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
            f"cannot act; PAWSTimewait +{paws} shows nothing ({shown_by})", values)
    return Check(name, citation, EXPECTED, observed, False, values)
