"""Reading a compose file: its text parsed as YAML, the default file's parse kept as JSON.

    doc = read(Path("compose.yaml"), keep=True)     # a dict with a services: mapping

lab.topology makes a Topology of the document.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from .errors import TopologyError

__all__ = ["read"]


def read(path: Path, keep: bool = False) -> dict:
    """The compose file as YAML, with a ``services:`` mapping (not yet interpolated); with *keep*,
    its parse is kept (and read back while the text is the same)."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise TopologyError(f"cannot read {path}: {exc.strerror}") from exc
    doc = _parsed(text) if keep else None
    if doc is None:
        doc = _parse_yaml(path, text)
        if keep:
            _keep_parsed(text, doc)
    if not isinstance(doc, dict) or not isinstance(doc.get("services"), dict):
        raise TopologyError(f"{path}: no 'services:' mapping; a lab needs client, router and server")
    return doc


def _parse_yaml(path: Path, text: str) -> Any:
    """*text* parsed by PyYAML, with libyaml's loader where PyYAML was built with it (its wheels
    are): the same documents, parsed in C (compose.yaml: 0.92 s against a few ms in a TCG guest)."""
    import yaml

    try:
        return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise TopologyError(f"{path}{line}: not valid YAML ({problem}); fix the file") from exc


# The default compose file's parse, kept as JSON beside the text it came from. Every run reads
# compose.yaml; in a TCG guest (Debian 12's 6.1) importing PyYAML and parsing took 0.61-0.73 s,
# reading the kept parse 0.04-0.05 s (three of each in one boot). The host keeps it before a boot
# (lab.vm.boot.compile_lab) and the guest reads it over the root share. Only lab.topology's
# DEFAULT_COMPOSE is kept (a user's file is parsed each time), and only a parse that JSON gives
# back unchanged (no dates, no integer keys).
def _kept_file() -> Path:
    from .paths import cache_dir

    return cache_dir() / "compose-parsed.json"


def _parsed(text: str) -> dict | None:
    try:
        kept = json.loads(_kept_file().read_text())
    except (OSError, ValueError):
        return None
    return kept.get("doc") if isinstance(kept, dict) and kept.get("text") == text else None


def _keep_parsed(text: str, doc: Any) -> None:
    try:
        if json.loads(json.dumps(doc)) != doc:
            return
        kept = _kept_file()
        kept.parent.mkdir(parents=True, exist_ok=True)
        tmp = kept.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"text": text, "doc": doc}))
        tmp.replace(kept)
    except (OSError, TypeError, ValueError):
        pass                        # a read-only checkout: parse every time
