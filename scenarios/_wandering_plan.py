"""wandering-duplicates' plan: the ports and byte counts its steps (scenarios/wandering_duplicates.py)
and its checks (_wandering_judge.py, _wandering_bypassed.py) both go by. Not a scenario (the
leading underscore keeps it out of the catalog)."""

from __future__ import annotations

PORT = 5006
PORT_A = 40006                  # the client's port in (a)
PORT_B = 40106                  # the client's port of both incarnations in (b)/(c)
OLD_BYTES = 12_000_000          # each direction of the old incarnation, before the copied segment
MARK_A = 600                    # (a): the copied data segment
MARK = 1000                     # (b)/(c): the copied data segment, one segment (below the MSS)
ALIGN_MARGIN = 2_000_000        # bytes (128 ms of ISN clock) the old connection stays ahead by
TAIL = 4000                     # the client's last send in the new incarnation
TW_WAIT_S = 0.3                 # how long TIME-WAIT has run before the replay in (a)
M32 = 1 << 32                   # sequence numbers wrap here
