"""lab/cli.py: the command line as Invoke parses it. Usage errors exit 2 with one `twlab:` line
naming the command as typed, -h/--help after a task is its help, scenario words after
`invoke matrix` / `invoke check` are their --scenario list and flags may follow them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from invoke import Collection

import tasks
from lab.cli import TwlabTask, rewrite, scenario_names
from scenarios import catalog

REPO = Path(__file__).resolve().parents[2]
INVOKE = str(Path(sys.executable).parent / "invoke")
CONTEXTS = {c.name: c for c in Collection.from_module(tasks).to_contexts()}
SCENARIOS = set(scenario_names())


def cli(*args: str, via: str = "invoke") -> subprocess.CompletedProcess:
    """`invoke ARGS` (Invoke's own program, adopted by tasks.py) or `./twlab ARGS` (lab.cli.main)."""
    argv = [INVOKE, *args] if via == "invoke" else [str(REPO / "twlab"), *args]
    return subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=120,
                          env={**os.environ, "TWLAB_AS": ""})


def usage_line(done: subprocess.CompletedProcess) -> str:
    lines = [ln for ln in done.stderr.splitlines() if not ln.startswith("setup:")]
    assert done.returncode == 2, (done.returncode, done.stdout[-800:], done.stderr[-800:])
    assert len(lines) == 1 and lines[0].startswith("twlab: "), done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    return lines[0]


def test_scenario_names_are_the_catalog():
    assert scenario_names() == sorted(catalog())


# -- rewrite: the words Invoke is given ---------------------------------------------------------

@pytest.mark.parametrize("argv, words", [
    # scenario words after matrix/check become --scenario, and flags may follow them
    (["matrix", "--kernel", "host", "lost-ack", "tw-reopen"],
     ["matrix", "--kernel", "host", "--scenario", "lost-ack", "--scenario", "tw-reopen"]),
    (["check", "lost-ack", "--backend", "netns"], ["check", "--scenario", "lost-ack", "--backend", "netns"]),
    (["check", "--scenario", "tw-reopen", "lost-ack", "--junit", "o.xml"],
     ["check", "--scenario", "tw-reopen", "--scenario", "lost-ack", "--junit", "o.xml"]),
    # a flag's value is left alone even when it is a scenario's name; so is a --flag=value
    (["check", "--json-out", "lost-ack", "tw-reopen"], ["check", "--json-out", "lost-ack", "--scenario", "tw-reopen"]),
    (["check", "--junit=lost-ack", "lost-ack"], ["check", "--junit=lost-ack", "--scenario", "lost-ack"]),
    (["check", "--from-host", "lost-ack"], ["check", "--from-host", "--scenario", "lost-ack"]),  # a boolean
    # a scenario in a task's place is `run SCENARIO`, with its flags
    (["lost-ack", "--backend", "netns"], ["run", "lost-ack", "--backend", "netns"]),
    (["list", "lost-ack"], ["list", "run", "lost-ack"]),
    # a positional argument is not a scenario word, nor a task: `run lost-ack`, `vm lost-ack`
    (["run", "lost-ack", "--json"], ["run", "lost-ack", "--json"]),
    (["vm", "tw-reopen", "--kernel", "debian-13"], ["vm", "tw-reopen", "--kernel", "debian-13"]),
    # after another task the words end: `matrix lost-ack list` runs list afterwards
    (["matrix", "lost-ack", "list"], ["matrix", "--scenario", "lost-ack", "list"]),
    # what it does not know is left for Invoke to refuse
    (["runn", "lost-ack"], ["runn", "run", "lost-ack"]),
    (["run", "--", "x"], ["run", "--", "x"]),
])
def test_rewrite(argv, words):
    assert rewrite(argv, CONTEXTS, SCENARIOS) == (words, None)


@pytest.mark.parametrize("argv, task", [
    (["run", "-h"], "run"), (["run", "--help"], "run"), (["run", "-h", "lost-ack"], "run"),
    (["check", "lost-ack", "-h"], "check"), (["vm", "--sysctl", "-h"], "vm"), (["lost-ack", "-h"], "run"),
    (["shell", "-h"], "shell"),
])
def test_rewrite_finds_help_after_a_task(argv, task):
    assert rewrite(argv, CONTEXTS, SCENARIOS)[1] == task


def test_no_task_gives_h_to_an_argument():
    """-h is help everywhere; --shape (which Invoke made -h) is -e wherever it is a flag."""
    for name, ctx in CONTEXTS.items():
        assert "-h" not in ctx.flags, name
    for name in ("run", "check", "vm"):
        assert CONTEXTS[name].flags["-e"].name == "shape", name
    assert CONTEXTS["shell"].flags["--host"].names == ("host", "o")
    assert isinstance(tasks.run, TwlabTask)


# -- the command line: exit 2 and one line, for Invoke's own parser errors too -----------------

@pytest.mark.parametrize("args, says", [
    (["run"], ["`{cmd} run` needs SCENARIO", "`{cmd} list` shows the scenarios"]),
    (["runn", "lost-ack"], ["unknown task or scenario 'runn'", "did you mean run?", "`{cmd} --list`"]),
    (["lost-ak"], ["unknown task or scenario 'lost-ak'", "did you mean lost-ack?"]),
    (["run", "lost-ack", "--bakend", "netns"], ["`{cmd} run` has no flag '--bakend'", "did you mean --backend?"]),
    (["run", "lost-ack", "--artifacts"], ["--artifacts needs a value", "`{cmd} run --help`"]),
    (["shell"], ["`{cmd} shell` needs HOST"]),
    (["--no-such-option"], ["{cmd} has no option '--no-such-option'"]),
    (["--help", "nothere"], ["unknown task or scenario 'nothere'"]),
])
def test_parser_errors_exit_2_with_one_line(args, says):
    line = usage_line(cli(*args))
    for text in says:
        assert text.format(cmd="invoke") in line, (text.format(cmd="invoke"), line)


def test_twlab_exits_2_naming_itself():
    cmd = str(REPO / "twlab")
    assert usage_line(cli("run", via="twlab")).startswith(f"twlab: `{cmd} run` needs SCENARIO")
    assert f"`{cmd} --list`" in usage_line(cli("runn", via="twlab"))
    assert usage_line(cli("--no-such-option", via="twlab")) == \
        f"twlab: {cmd} has no option '--no-such-option'; `{cmd} --help` lists them"


@pytest.mark.parametrize("args, task, via", [
    (["run", "-h"], "run", "invoke"), (["run", "--help"], "run", "invoke"), (["vm", "-h"], "vm", "invoke"),
    (["check", "lost-ack", "-h"], "check", "invoke"), (["run", "-h"], "run", "twlab"),
])
def test_h_and_help_show_the_tasks_help(args, task, via):
    done = cli(*args, via=via)
    assert done.returncode == 0, done.stderr
    assert f" {task} [--options]" in done.stdout.splitlines()[0] and "--sysctl" in done.stdout
    assert "-e, --shape" in done.stdout


@pytest.mark.parametrize("via", ["invoke", "twlab"])
def test_flags_after_scenario_words_reach_the_task(via):
    # a usage error about the kernel from the task itself, not "No idea what '--kernel' is!"
    line = usage_line(cli("matrix", "lost-ack", "--kernel", "nonsense", via=via))
    assert line.startswith("twlab: --kernel 'nonsense'"), line
    line = usage_line(cli("lost-ack", "--backend", "nonsense", via=via))   # = run lost-ack --backend
    assert line == "twlab: unknown backend 'nonsense': choose auto, docker or netns", line


def test_twlab_names_itself_in_the_tasks_lines():
    """A task's own line that says `invoke list` says `./twlab list` when ./twlab was typed."""
    line = usage_line(cli("run", "lost-akc", via="twlab"))
    assert f"`{REPO / 'twlab'} list`" in line and "`invoke " not in line, line


@pytest.mark.parametrize("args", [
    ["run", "x" * 100_000],                                # a scenario name
    ["run", "lost-ack", "--backend", "y" * 100_000],
    ["run", "lost-ack", "--compose", "/tmp/" + "z" * 100_000],
    ["check", "--junit", "/nonexistent/" + "j" * 1000],    # once a traceback, after the whole run
])
def test_no_line_repeats_a_huge_argument(args):
    line = usage_line(cli(*args))
    assert len(line) < 300, line[:400]


def test_an_interrupt_that_escapes_a_tasks_guard_still_exits_130_saying_so(capsys):
    """A second Ctrl-C can land as a task's guard begins handling the first; Invoke would then exit
    1 without a word. The program itself turns it into exit 130 and the interrupt's line."""
    from invoke import Collection
    from invoke import task as plain_task

    from lab.cli import TwlabProgram

    @plain_task
    def stopped(c):
        raise KeyboardInterrupt()

    program = TwlabProgram(namespace=Collection(stopped), name="twlab", binary="twlab")
    with pytest.raises(SystemExit) as done:
        program.run(["twlab", "stopped"])
    assert done.value.code == 130
    assert capsys.readouterr().err.strip().startswith("twlab: interrupted by Ctrl-C (SIGINT)")
    # and a further Ctrl-C as it exits cannot change that exit
    assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
