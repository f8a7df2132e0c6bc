"""lab.dockerapi: the two read-only questions every run asks the Docker engine, against a fake
engine on a unix socket (what it is asked, what it answers, and when nobody answers)."""

from __future__ import annotations

import json
import socketserver
import threading
from http.server import BaseHTTPRequestHandler
from urllib.parse import parse_qs, urlparse

import pytest

from lab import dockerapi


class _Engine(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


def _engine(path, answers: dict, asked: list, status: int = 200):
    class Handler(BaseHTTPRequestHandler):
        def address_string(self):
            return "fake"

        def log_message(self, *a):
            pass

        def do_GET(self):
            u = urlparse(self.path)
            asked.append((u.path, parse_qs(u.query)))
            body = json.dumps(answers.get(u.path, [])).encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    srv = _Engine(str(path), Handler)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


@pytest.fixture
def sock(tmp_path, monkeypatch):
    path = tmp_path / "docker.sock"
    monkeypatch.setenv("DOCKER_HOST", f"unix://{path}")
    return path


def test_containers_and_networks_by_label(sock):
    asked: list = []
    srv = _engine(sock, {"/containers/json": [{"Id": "abc", "Names": ["/twlab-1-client"],
                                               "Labels": {"org.twlab.lab": "1", "org.twlab.owner": "7.9"}},
                                              {"Id": "0123456789abcdef", "Names": [], "Labels": None}],
                         "/networks": [{"Name": "twlab-1_left", "Labels": {"org.twlab.lab": "1"}}]}, asked)
    try:
        ctrs, nets = dockerapi.labelled("org.twlab.lab=1")
    finally:
        srv.shutdown()
    assert ctrs == [dockerapi.Named("twlab-1-client", {"org.twlab.lab": "1", "org.twlab.owner": "7.9"}),
                    dockerapi.Named("0123456789ab", {})]
    assert nets == [dockerapi.Named("twlab-1_left", {"org.twlab.lab": "1"})]
    assert [a[0] for a in asked] == ["/containers/json", "/networks"]
    assert asked[0][1]["all"] == ["1"]                             # stopped containers too
    assert all(json.loads(q["filters"][0]) == {"label": ["org.twlab.lab=1"]} for _, q in asked)


def test_an_engine_error_is_raised_not_taken_for_no_engine(sock):
    srv = _engine(sock, {}, [], status=500)
    try:
        with pytest.raises(OSError, match="answered 500"):
            dockerapi.labelled("org.twlab.lab")
    finally:
        srv.shutdown()


def test_no_engine_is_none(sock):
    assert dockerapi.labelled("org.twlab.lab") is None              # no socket at all
    sock.touch()                                                    # a file where the socket was
    assert dockerapi.labelled("org.twlab.lab") is None


def test_an_engine_elsewhere_is_asked_through_the_sdk(monkeypatch):
    monkeypatch.setenv("DOCKER_HOST", "tcp://10.0.0.1:2375")
    monkeypatch.setattr(dockerapi, "_through_sdk", lambda label: ([], [dockerapi.Named(label, {})]))
    assert dockerapi.labelled("x") == ([], [dockerapi.Named("x", {})])
