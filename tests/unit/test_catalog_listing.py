"""`invoke list` reads the scenarios' intents from an index kept fresh by the files it came from,
not by importing every scenario and its judges."""

from __future__ import annotations

import json

import scenarios
from scenarios import LISTED, catalog, listing


def _from_the_catalog() -> dict:
    return {name: {k: (list(v) if isinstance(v, tuple) else v) for k in LISTED for v in [getattr(sc, k)]}
            for name, sc in catalog().items()}


def test_the_index_is_read_while_its_files_are_unchanged(tmp_path, monkeypatch):
    monkeypatch.setattr("lab.paths.cache_dir", lambda: tmp_path)
    assert json.loads(json.dumps(listing())) == _from_the_catalog()
    index = tmp_path / "catalog-index.json"
    kept = json.loads(index.read_text())
    kept["scenarios"]["lost-ack"]["intent"] = "read from the index"
    index.write_text(json.dumps(kept))
    assert listing()["lost-ack"]["intent"] == "read from the index"


def test_a_changed_file_makes_it_again(tmp_path, monkeypatch):
    monkeypatch.setattr("lab.paths.cache_dir", lambda: tmp_path)
    listing()
    index = tmp_path / "catalog-index.json"
    kept = json.loads(index.read_text())
    kept["scenarios"]["lost-ack"]["intent"] = "stale"
    index.write_text(json.dumps(kept))
    stamp = scenarios._stamp()
    stamp[0][2] += 1                                        # one file's mtime moved on
    monkeypatch.setattr(scenarios, "_stamp", lambda: stamp)
    assert listing()["lost-ack"]["intent"] == catalog()["lost-ack"].intent
    assert json.loads(index.read_text())["stamp"] == stamp


def test_an_unwritable_cache_still_lists(tmp_path, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setattr("lab.paths.cache_dir", lambda: blocker / "twlab")
    assert json.loads(json.dumps(listing())) == _from_the_catalog()


def test_the_stamp_covers_every_scenario_module_and_the_contract():
    names = {entry[0] for entry in scenarios._stamp()}
    assert any(n.endswith("scenarios/lost_ack.py") for n in names)
    assert any(n.endswith("scenarios/_keys/lost_ack.py") for n in names)
    assert any(n.endswith("lab/scenario.py") for n in names)
