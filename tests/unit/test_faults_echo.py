"""lab.faults reads the handle of the rule nft added from its echo, whatever verb the kernel echoes."""

from __future__ import annotations

import pytest


def test_a_rule_echoed_as_inserted_gives_its_handle_too():
    """Debian 11's 5.10 echoes a rule nft added as "insert rule" (no NLM_F_APPEND in the echo):
    the fault's handle is read from it as from "add rule" (seen: every fault failed there)."""
    from lab.errors import BackendError
    from lab.faults import _handle_from_echo

    echo = ('add counter inet twlab c_lost-ack { # handle 2 packets 0 bytes 0 }\n'
            'insert rule inet twlab forward ip saddr 10.77.1.10 ip daddr 10.77.2.10 tcp flags ack / '
            'fin,syn,rst,psh,ack,urg counter name "c_lost-ack" log prefix "lost-ack " group 7 drop # handle 3\n')
    assert _handle_from_echo(echo) == 3
    assert _handle_from_echo(echo.replace("insert rule", "add rule")) == 3
    with pytest.raises(BackendError, match="did not echo a rule handle"):
        _handle_from_echo("add counter inet twlab c_x { # handle 2 }\n")
