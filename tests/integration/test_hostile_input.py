"""Hostile and malformed input through the real `systemprompt` command: every refusal is
exit code 2, one short line, passwords masked; and the dead-letter commands."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from jobs_core.wire import DEAD_LETTER_LIMIT, DeadLetter, Keys
from tests.procs import REPO, service_env
from worker.dead_letter import record

from . import test_cli as cli_tests

pytestmark = pytest.mark.integration
cli = cli_tests.cli


@pytest.fixture
def env(tmp_path: Path, redis_url: str, database_url: str) -> dict[str, str]:
    profile = tmp_path / "profile.yaml"
    profile.write_text(cli_tests.CLI_PROFILE)
    return service_env(
        REDIS_URL=redis_url, DATABASE_URL=database_url, SYSTEMPROMPT_PROFILE=str(profile)
    )


def _one_line_refusal(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_dead_letters_list_json_and_purge(env: dict[str, str], redis_url: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    assert cli(env, "infra", "jobs", "dead-letters").stdout.strip() == "no dead letters"
    long_message = '{"body": "' + "A" * 5000 + '"}'
    assert record(client, DeadLetter.of(b"not json {", reason="not JSON: boom", queue="jobs"))
    assert record(
        client, DeadLetter.of(long_message, reason="unknown task 'x'", queue="maintenance")
    )
    assert record(client, DeadLetter.of(b"\xff\xfe", reason="not JSON: binary", queue="jobs"))

    text = cli(env, "infra", "jobs", "dead-letters")
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0].split() == ["TIME", "QUEUE", "REASON", "MESSAGE"]
    # newest first
    assert "not JSON: binary" in lines[1] and "unknown task 'x'" in lines[2]
    assert "maintenance" in lines[2] and "not json {" in lines[3]
    assert all(len(line) < 300 for line in lines)  # the 5 KB message is only previewed
    assert "3 dead letters" in text.stdout

    raw = cli(env, "infra", "jobs", "dead-letters", "--json")
    assert raw.returncode == 0, raw.stderr
    items = json.loads(raw.stdout)
    assert [i["reason"] for i in items] == [
        "not JSON: binary",
        "unknown task 'x'",
        "not JSON: boom",
    ]
    assert items[1]["message"] == long_message and items[1]["queue"] == "maintenance"
    assert items[0]["encoding"] == "base64" and items[0]["message"] == "//4="
    assert {"at", "queue", "reason", "worker", "encoding", "message"} <= set(items[0])

    purged = cli(env, "infra", "jobs", "dead-letters", "--purge")
    assert purged.returncode == 0 and purged.stdout.strip() == "purged 3 dead letters"
    assert client.llen(Keys.DEAD_LETTERS) == 0
    assert cli(env, "infra", "jobs", "dead-letters", "--json").stdout.strip() == "[]"
    client.close()


def test_dead_letter_list_is_bounded(redis_url: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    for i in range(DEAD_LETTER_LIMIT + 3):
        record(client, DeadLetter.of(str(i), reason="r", queue="jobs"))
    assert client.llen(Keys.DEAD_LETTERS) == DEAD_LETTER_LIMIT
    newest = DeadLetter.loads(client.lindex(Keys.DEAD_LETTERS, 0))
    oldest = DeadLetter.loads(client.lindex(Keys.DEAD_LETTERS, -1))
    assert (newest.message, oldest.message) == (str(DEAD_LETTER_LIMIT + 2), "3")
    client.close()


def _bomb(path: Path) -> None:
    lines = ["scheduler:", "  jobs:", "    - {extension: maintenance, job: cleanup}"]
    lines += ["config:", "  maintenance:", '    a: &a ["lol", "lol", "lol", "lol", "lol"]']
    previous = "a"
    for name in "bcdefghijk":
        lines.append(f"    {name}: &{name} [{', '.join([f'*{previous}'] * 9)}]")
        previous = name
    path.write_text("\n".join(lines) + "\n")


def test_yaml_alias_bomb_is_refused_fast(env: dict[str, str], tmp_path: Path) -> None:
    from jobs_core.errors import ProfileError
    from jobs_core.profile import parse_profile

    bomb = tmp_path / "bomb.yaml"
    _bomb(bomb)
    started = time.monotonic()
    with pytest.raises(ProfileError):
        parse_profile(bomb.read_text(), path=str(bomb))
    assert time.monotonic() - started < 1.0

    started = time.monotonic()
    result = cli(env, "--profile", str(bomb), "infra", "jobs", "list", timeout=60)
    assert time.monotonic() - started < 30  # the CLI's start-up included, on a busy machine
    line = _one_line_refusal(result)
    assert str(bomb) in line and "aliases" in line

    huge = tmp_path / "huge.yaml"
    huge.write_text("config:\n  x:\n    y: '" + "z" * 2_000_000 + "'\n")
    line = _one_line_refusal(cli(env, "--profile", str(huge), "infra", "jobs", "list"))
    assert str(huge) in line and "at most 1,000,000" in line


MALFORMED = [
    ("REDIS_URL", "redis://:hunter2@127.0.0.1:notaport/0", "the port must be a number"),
    ("REDIS_URL", "redis://:hunter2@[::1/0", "Invalid IPv6 URL"),
    ("REDIS_URL", "redis://:hunter2@127.0.0.1:6379/zero", "database number"),
    ("REDIS_URL", "rediss://:hunter2@h:6379/0?ssl_cert_reqs=maybe", "ssl_cert_reqs"),
    ("DATABASE_URL", "postgresql://app:hunter2@127.0.0.1:99999/app", "the port must be"),
    ("DATABASE_URL", "postgresql://app:hunter2@h/app?bogus=1", "invalid URI query parameter"),
]


@pytest.mark.parametrize(("var", "url", "why"), MALFORMED, ids=[m[1] for m in MALFORMED])
def test_malformed_urls_exit_2_masked(env: dict[str, str], var: str, url: str, why: str) -> None:
    for args in (["infra", "jobs", "list"], ["infra", "worker"], ["infra", "beat"]):
        line = _one_line_refusal(cli({**env, var: url}, *args, timeout=30))
        assert line.startswith(f"error: {var} ") and why in line, line
        assert "hunter2" not in line and ":***@" in line


ABSURD = ["nan", "inf", "-inf", "1e-9", "0", "-5", "1e9", "9999999"]


@pytest.mark.parametrize("value", ABSURD)
def test_absurd_numbers_are_usage_errors(env: dict[str, str], value: str) -> None:
    for args in (
        ["infra", "beat", "--lease-ttl", value],
        ["infra", "jobs", "run", "flaky", "--wait", "--timeout", value],
    ):
        result = cli(env, *args, timeout=30)
        assert result.returncode == 2, result.stdout + result.stderr
        assert "Invalid value for '--" in result.stderr and "Traceback" not in result.stderr
    beat = subprocess.run(
        [sys.executable, "-m", "beat", "--lease-ttl", value],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert beat.returncode == 2 and "argument --lease-ttl" in beat.stderr, beat.stderr
    if value in ("nan", "1e-9", "0"):
        assert cli(env, "infra", "up", "--concurrency", value).returncode == 2


def test_huge_job_name_is_cut_in_the_error(env: dict[str, str]) -> None:
    name = "x" * 100_000
    for args in (
        ["infra", "jobs", "status", name],
        ["infra", "jobs", "run", name],
        ["infra", "jobs", "run", "--tag", name],
        ["infra", "jobs", "run", "flaky", "-p", name],
    ):
        result = cli(env, *args)
        assert result.returncode == 2, result.stderr[:300]
        assert len(result.stderr) < 400, len(result.stderr)
        assert "…" in result.stderr
    # click's own usage error keeps its shape, with the echoed argument cut
    result = cli(env, "infra", "jobs", name)
    assert result.returncode == 2 and "No such command" in result.stderr
    assert len(result.stderr) < 400


def test_worker_with_a_wrong_redis_password_says_so_in_one_line(env: dict[str, str]) -> None:
    from cli.embedded import RedisServer

    base = Path(tempfile.mkdtemp(prefix="sp-test-pw-redis-"))
    server = RedisServer(base, password="right-Pw-0c1d").start()
    try:
        wrong = server.url.replace("right-Pw-0c1d", "wrong-Pw-9f8e")
        started = time.monotonic()
        result = cli({**env, "REDIS_URL": wrong}, "infra", "worker", "-P", "solo", timeout=60)
        assert time.monotonic() - started < 30
        line = _one_line_refusal(result)
        assert line.startswith("error: cannot connect to Redis at redis://:***@127.0.0.1:")
        assert "password" in line and len(line) < 300
        assert "wrong-Pw" not in result.stderr + result.stdout
    finally:
        server.stop(kill=True)
        shutil.rmtree(base, ignore_errors=True)
