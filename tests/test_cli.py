"""The command line as a user meets it: help and flags of every task, unwritable build folders, Ctrl-C."""
import json
import re
import subprocess
import sys

import pytest

from conftest import REPO, assert_clean_error, run_invoke

OPTION = re.compile(r"^  (?:-(\w) \S+, )?--([\w-]*)(?:=\S+)?(?:\s+(.*))?$")


def _task_names() -> list[str]:
    proc = run_invoke("--list", "--list-format=json")
    assert proc.returncode == 0, proc.stderr
    return [t["name"] for t in json.loads(proc.stdout)["tasks"]]


def test_every_tasks_help_has_text_for_every_option_and_consistent_short_flags():
    shorts: dict[str, set[str]] = {}
    for name in _task_names():
        proc = run_invoke("--help", name)
        assert proc.returncode == 0, f"{name}: {proc.stderr}"
        assert "--=" not in proc.stdout, f"{name}: {proc.stdout}"
        options = proc.stdout.split("Options:", 1)[1].splitlines() if "Options:" in proc.stdout else []
        for line in options:
            match = OPTION.match(line)
            if not match:
                continue
            short, long_name, text = match.groups()
            assert long_name, f"{name}: an option without a name: {line!r}"
            assert text, f"{name}: --{long_name} has no help text"
            if short:
                assert short != "h", f"{name}: -h is --{long_name}, not --help"
                shorts.setdefault(short, set()).add(long_name)
    for short, names in shorts.items():
        assert len(names) == 1, f"-{short} means {sorted(names)} in different tasks"
    assert shorts == {"b": {"board"}, "m": {"model"}}


def test_hil_dash_h_is_help():
    proc = run_invoke("hil", "-h")
    assert proc.returncode == 0, proc.stderr
    assert "--no-flash" in proc.stdout or "--port" in proc.stdout


def test_measure_seed_help_speaks_of_measuring():
    proc = run_invoke("--help", "measure")
    text = " ".join(proc.stdout.split())
    seed = text.split("--seed=STRING", 1)[1][:200]
    assert "test inputs" in seed and "trains nothing" in seed and "initialisation" not in seed
