"""Mutation testing of the pure cores: ``make mutation [CORES="cron beat"]``.

mutmut mutates one core at a time and runs only that core's unit tests against each
mutant, with the property tests on the cheap, derandomized ``mutation`` Hypothesis
profile (tests/conftest.py). Each core works in its own directory, ``mutants/<core>/``:
a pyproject.toml made from ours (``[tool.mutmut]`` plus the core's modules and tests) and
links to the packages, so one core's mutants and verdicts never mix with another's.
Afterwards ``cd mutants/<core> && ../../.venv/bin/mutmut show NAME`` prints a mutant.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tomllib
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Core:
    modules: tuple[str, ...]
    tests: tuple[str, ...]


# The one list to extend: a pure core's modules and the unit tests that pin them down.
CORES: dict[str, Core] = {
    "cron": Core(
        modules=("jobs_core/cron.py",),
        tests=(
            "tests/unit/test_cron.py",
            "tests/unit/test_cron_edges.py",
            "tests/unit/test_cron_properties.py",
        ),
    ),
    "policies": Core(
        modules=("jobs_core/profile.py", "jobs_core/policy.py", "jobs_core/durations.py"),
        tests=(
            "tests/unit/test_profile.py",
            "tests/unit/test_registry.py",
            "tests/unit/test_durations.py",
            "tests/unit/test_policy_errors.py",
        ),
    ),
    "beat": Core(
        modules=("beat/core.py", "beat/schedule.py"),
        tests=("tests/unit/test_beat_core.py", "tests/unit/test_beat_schedule.py"),
    ),
    "outcome": Core(
        modules=("worker/outcome.py",),
        tests=("tests/unit/test_outcome.py", "tests/unit/test_outcome_identity.py"),
    ),
}

# What the tests import (tests/conftest.py reaches cli/) and read: copied unmutated.
PACKAGES = ("jobs_core", "beat", "worker", "cli", "extensions", "ui")
OTHER_FILES = ("tests", "profile.example.yaml")
MIN_SCORE = 0.85
CAUGHT = frozenset({"killed", "timeout", "caught by type check"})


def _toml_value(value: Any) -> str:
    # JSON's strings, numbers, booleans and lists of them are valid TOML values.
    return json.dumps(value)


def _pyproject(core: Core) -> str:
    ours = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]
    mutmut = {
        **ours["mutmut"],
        "source_paths": list(PACKAGES),
        "also_copy": [*ours["mutmut"].get("also_copy", []), *OTHER_FILES],
        "only_mutate": list(core.modules),
        "pytest_add_cli_args_test_selection": list(core.tests),
    }
    lines = ["# Made by tests/mutation.py; edit [tool.mutmut] in the project's pyproject.toml."]
    pytest = ours["pytest"]["ini_options"]
    for table, values in (("tool.mutmut", mutmut), ("tool.pytest.ini_options", pytest)):
        lines.append(f"\n[{table}]")
        lines += [f"{key} = {_toml_value(value)}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


def _prepare(name: str, core: Core) -> Path:
    """A fresh mutants/<name>/: old verdicts would hide what new tests now kill."""
    workdir = ROOT / "mutants" / name
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    for name in (*PACKAGES, *OTHER_FILES):
        (workdir / name).symlink_to(ROOT / name)
    (workdir / "pyproject.toml").write_text(_pyproject(core))
    return workdir


def _mutmut(workdir: Path, *args: str, capture: bool = False) -> str:
    env = {**os.environ, "HYPOTHESIS_PROFILE": "mutation"}
    done = subprocess.run(
        [sys.executable, "-m", "mutmut", *args],
        cwd=workdir,
        env=env,
        check=True,
        text=True,
        stdout=subprocess.PIPE if capture else None,
    )
    return done.stdout or ""


def _verdicts(workdir: Path) -> dict[str, str]:
    """mutant name -> mutmut's status, from ``mutmut results --all true``."""
    verdicts = {}
    for line in _mutmut(workdir, "results", "--all", "true", capture=True).splitlines():
        name, sep, status = line.strip().rpartition(": ")
        if sep and "__mutmut_" in name:
            verdicts[name] = status
    return verdicts


def run_core(name: str, core: Core, max_children: int) -> tuple[int, int]:
    """Mutate one core; print and return (caught, total)."""
    workdir = _prepare(name, core)
    _mutmut(workdir, "run", "--max-children", str(max_children))
    verdicts = _verdicts(workdir)
    counts = Counter(verdicts.values())
    caught = sum(counts[status] for status in CAUGHT)
    print(f"\n{name}: {caught}/{len(verdicts)} caught ({dict(counts)})")
    for mutant, status in sorted(verdicts.items()):
        if status not in CAUGHT:
            print(f"    {status}: {mutant}")
    return caught, len(verdicts)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("cores", nargs="*", help=f"some of {', '.join(CORES)} (default: all)")
    parser.add_argument("--max-children", type=int, default=2)
    args = parser.parse_args(argv)
    unknown = [name for name in args.cores if name not in CORES]
    if unknown:
        parser.error(f"unknown core {', '.join(unknown)}; the cores are {', '.join(CORES)}")
    scores = {name: run_core(name, CORES[name], args.max_children) for name in args.cores or CORES}
    print("\ncore: caught/total (score)")
    below = []
    for name, (caught, total) in scores.items():
        score = caught / total if total else 0.0
        print(f"{name}: {caught}/{total} ({score:.1%})")
        if score < MIN_SCORE:
            below.append(name)
    if below:
        print(f"below {MIN_SCORE:.0%}: {', '.join(below)}")
    return 1 if below else 0


if __name__ == "__main__":
    sys.exit(main())
