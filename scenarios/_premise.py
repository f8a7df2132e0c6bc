"""What a scenario needs of the sysctls in force to show its behaviour at all (its
precondition()): not a scenario, the leading underscore keeps it out of the catalog.

TIME-WAIT room. tcp_time_wait() (net/ipv4/tcp_minisocks.c) makes a TIME-WAIT socket only while
the namespace holds fewer than net.ipv4.tcp_max_tw_buckets of them (inet_twsk_alloc(): the
death row's tw_refcount - 1 >= the limit refuses; TCPTimeWaitOverflow counts it, reference
R-MAX-TW-BUCKETS); otherwise the closing socket is destroyed at once. An orphaned FIN-WAIT-2 (a
socket close()d before the peer's FIN, with tcp_fin_timeout at most 60 s) is kept in such a
socket too (tcp_rcv_state_process(): tcp_time_wait(sk, TCP_FIN_WAIT2, tmo)) and takes a bucket.
A scenario that waits for them - N alive at once in one host - cannot show anything below that
limit: its waits would time out on what the kernel was told not to make. Scenarios whose expectations
follow the limit (lost-ack, tw-buckets, lossy-link; who-closes-first at 0) declare nothing for it.
"""

from __future__ import annotations

__all__ = ["time_wait_room", "TW_LESSON"]

KEY = "net.ipv4.tcp_max_tw_buckets"
# where the lab shows what happens without TIME-WAIT
TW_LESSON = "lost-ack, tw-buckets and lossy-link show what happens without TIME-WAIT"

_WORDS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five"}


def time_wait_room(sysctls: dict[str, dict[str, str]], need: dict[str, int], what: str,
                   lesson: str = TW_LESSON) -> str | None:
    """Why *need* ({host: TIME-WAIT sockets alive at once there}) does not fit the hosts'
    tcp_max_tw_buckets, or None. *what* says what the scenario watches them for."""
    for host, n in need.items():
        raw = sysctls.get(host, {}).get(KEY)
        try:
            limit = int(raw)
        except (TypeError, ValueError):
            continue                            # not read back: nothing known to rule it out
        if limit >= n:
            continue
        room = "no TIME-WAIT can be made" if limit <= 0 else \
            f"room for {_WORDS.get(limit, limit)} TIME-WAIT socket{'s' if limit > 1 else ''}"
        held = "one" if n == 1 else f"{_WORDS.get(n, n)} at once"
        return (f"tcp_max_tw_buckets={limit} on the {host}: {room}, and this scenario observes "
                f"{held} there ({what}); {lesson}")
    return None
