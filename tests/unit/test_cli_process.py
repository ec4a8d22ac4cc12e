"""The CLI process itself: its collector policy and its exit (each in a fresh interpreter:
the console-script entry turns the cyclic collector off for the process)."""

from __future__ import annotations

import subprocess
import textwrap

from tests.procs import REPO, VENV_BIN


def python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(VENV_BIN / "python"), "-c", textwrap.dedent(code)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_collector_is_off_in_short_commands_and_on_in_long_running_ones() -> None:
    done = python(
        """
        import gc, sys
        import cli.main as m
        print(gc.isenabled())
        m.main = lambda: (print(gc.isenabled()), m._long_running(lambda: print(gc.isenabled()))())
        sys.argv = ["systemprompt", "--help"]
        m.entry()
        """
    )
    assert done.returncode == 0, done.stderr
    # Imported: untouched; in the console script: off, and on again in a long command.
    assert done.stdout.split() == ["True", "False", "True"], done.stderr


#: What the commands import when they run, after entry() turned the collector off.
HEAVY = ("pydantic", "yaml", "redis", "psycopg", "asyncio", "jobs_core.profile")


def test_importing_the_cli_neither_changes_the_collector_nor_imports_the_heavy_libraries() -> None:
    done = python(
        f"""
        import gc, sys
        import cli.main
        print(gc.isenabled())
        print(sorted(m for m in {HEAVY!r} if m in sys.modules))
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["True", "[]"]


def test_the_long_running_commands_turn_the_collector_on() -> None:
    done = python(
        """
        import cli.main as m
        for name in ("run", "rerun"):
            print(m.jobs.commands[name].callback.__wrapped__.__wrapped__.__name__)
        for name in ("beat", "ui", "up"):
            print(m.infra.commands[name].callback.__wrapped__.__wrapped__.__name__)
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["run_jobs", "rerun_cmd", "beat_cmd", "ui_cmd", "up"]


def test_entry_runs_atexit_flushes_and_keeps_the_exit_code() -> None:
    done = python(
        """
        import atexit, sys
        atexit.register(lambda: print("atexit ran"))
        sys.argv = ["systemprompt", "--profile", "/nonexistent/profile.yaml", "infra", "jobs",
                    "list"]
        print("buffered " * 2000)
        from cli.main import entry
        entry()
        """
    )
    assert done.returncode == 2
    assert done.stdout.count("buffered") == 2000
    assert done.stdout.rstrip().endswith("atexit ran")
    assert "profile file not found" in done.stderr


def test_entry_with_a_thread_still_running_exits_normally_joining_it() -> None:
    done = python(
        """
        import sys, threading, time
        # Still running when entry() looks (whatever the machine's load); a fast exit
        # would cut it off before it prints.
        threading.Thread(target=lambda: (time.sleep(3), print("joined"))).start()
        sys.argv = ["systemprompt", "--help"]
        from cli.main import entry
        entry()
        """
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.rstrip().endswith("joined")
