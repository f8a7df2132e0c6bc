"""twlab is a Python package: `pip install` of the repository into a fresh venv gives a `twlab`
command (Invoke's Program with the tasks of lab/tasks.py) that works outside any checkout, with
the topology and the host image's recipe carried as package data."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from scenarios import catalog

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> tuple[Path, dict[str, str], Path]:
    """(the venv, an environment with only its bin on top of the system's PATH, a directory
    outside any checkout to run in)."""
    base = tmp_path_factory.mktemp("pip")
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    done = subprocess.run([str(venv / "bin" / "pip"), "install", "--disable-pip-version-check", str(REPO)],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    env = {"PATH": f"{venv / 'bin'}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
           "HOME": str(base), "LANG": "C.UTF-8"}
    elsewhere = base / "elsewhere"
    elsewhere.mkdir()
    return venv, env, elsewhere


def _twlab(installed, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    venv, env, cwd = installed
    return subprocess.run(["twlab", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


def test_the_package_is_the_installed_one_with_its_data(installed):
    venv, env, cwd = installed
    code = ("import json, lab, lab.paths, lab.topology, lab.image; print(json.dumps([lab.__file__, "
            "str(lab.paths.CHECKOUT), str(lab.topology.DEFAULT_COMPOSE), str(lab.image.CONTEXT)]))")
    done = subprocess.run([str(venv / "bin" / "python"), "-c", code], cwd=cwd, env=env, capture_output=True,
                          text=True, check=True)
    lab_file, checkout, compose, context = json.loads(done.stdout)
    assert lab_file.startswith(str(venv)) and checkout == "None"
    assert Path(compose).read_text() == (REPO / "compose.yaml").read_text()
    assert (Path(context) / "Dockerfile").read_text() == (REPO / "images" / "host" / "Dockerfile").read_text()
    for sub in ("lab/backends", "lab/bench", "lab/vm", "scenarios/sheets"):
        assert (Path(lab_file).parent.parent / sub).is_dir(), sub


def test_twlab_lists_the_tasks_and_the_scenarios_outside_a_checkout(installed):
    tasks = _twlab(installed, "--list")
    assert tasks.returncode == 0, tasks.stderr
    for task in ("run", "list", "check", "matrix", "image", "clean", "lost-ack"):
        assert f"\n  {task} " in tasks.stdout, task
    scenarios = _twlab(installed, "list")
    assert scenarios.returncode == 0, scenarios.stderr
    assert [line.split()[0] for line in scenarios.stdout.splitlines()] == list(catalog())


def test_a_usage_error_names_twlab(installed):
    done = _twlab(installed, "run")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "twlab: `twlab run` needs SCENARIO, e.g. `twlab run lost-ack` (`twlab list` shows the scenarios); "
        "`twlab run --help` explains it"]


def test_twlab_runs_lost_ack_on_netns_outside_a_checkout(installed):
    done = _twlab(installed, "run", "lost-ack", "--backend", "netns", timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "verdict: PASS" in done.stdout
    (run,) = (installed[2] / "artifacts").iterdir()
    assert json.loads((run / "report.json").read_text())["verdict"] == "pass"


def test_the_vm_needs_a_checkout_and_says_so(installed):
    before = sorted((installed[2]).rglob("*"))
    for args in (["vm", "lost-ack"], ["check", "--kernel", "debian-12", "lost-ack"],
                 ["matrix", "--kernel", "debian-12", "lost-ack"]):
        done = _twlab(installed, *args)
        assert done.returncode == 2, (args, done.stderr)
        (line,) = done.stderr.strip().splitlines()
        assert line.startswith(f"twlab: `twlab {args[0]}") and "works from a checkout of the twlab repository" in line
    assert sorted((installed[2]).rglob("*")) == before           # nothing made
