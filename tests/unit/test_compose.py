"""The deployment files: compose.yaml, Dockerfile, .dockerignore and .env.example.

No Docker engine runs here, so these tests check what can be checked without one: the
topology, that every command a service runs is a real command of this project (its
``--help`` is run), that the environment the services get is what the code reads, and
that every ``${VAR}`` compose interpolates is documented in .env.example.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
APP_SERVICES = ("migrate", "beat", "worker", "flower", "ui")
MONITORING = ("prometheus", "grafana")
#: What the project's code reads from the environment (see test_code_reads_app_env).
CODE_ENV = {"REDIS_URL", "DATABASE_URL", "SYSTEMPROMPT_PROFILE"}
#: ... and what the dashboard reads besides (see ui.settings).
UI_ENV = {
    "SYSTEMPROMPT_UI_USER",
    "SYSTEMPROMPT_UI_PASSWORD",
    "SYSTEMPROMPT_UI_READONLY_USER",
    "SYSTEMPROMPT_UI_READONLY_PASSWORD",
    "SYSTEMPROMPT_FLOWER_URL",
}


# ------------------------------------------------------------------ helpers


def _env_example() -> dict[str, str]:
    values = {}
    for line in (REPO / ".env.example").read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


_VAR = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^{}]*))?\}")


def interpolate(text: str, env: dict[str, str]) -> str:
    """Compose-style ``${VAR}``, ``${VAR:-default}``, ``${VAR:?error}``, nested; ``$$``."""
    marker = "\0"
    text = text.replace("$$", marker)
    while True:
        match = _VAR.search(text)
        if match is None:
            return text.replace(marker, "$")
        name, op, arg = match["name"], match["op"], match["arg"]
        value = env.get(name)
        if op in (":-", "-"):
            if value is None or (op == ":-" and value == ""):
                value = arg
        elif op in (":?", "?") and (value is None or (op == ":?" and value == "")):
            raise KeyError(f"{name}: {arg}")
        text = text[: match.start()] + (value or "") + text[match.end() :]


def compose_vars(text: str) -> set[str]:
    return set(re.findall(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)", text))


@pytest.fixture(scope="module")
def raw() -> dict[str, Any]:
    data = yaml.safe_load((REPO / "compose.yaml").read_text())
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    """compose.yaml as `docker compose config` would see it with .env.example as .env."""
    text = interpolate((REPO / "compose.yaml").read_text(), _env_example())
    return yaml.safe_load(text)  # type: ignore[no-any-return]


def dockerfile_entrypoint() -> list[str]:
    for line in (REPO / "Dockerfile").read_text().splitlines():
        if line.startswith("ENTRYPOINT"):
            return list(yaml.safe_load(line.split(None, 1)[1]))
    raise AssertionError("Dockerfile has no ENTRYPOINT")


def argv(service: dict[str, Any]) -> list[str]:
    entry = service.get("entrypoint", dockerfile_entrypoint())
    command = service.get("command", [])
    entry = shlex.split(entry) if isinstance(entry, str) else list(entry)
    command = shlex.split(command) if isinstance(command, str) else list(command)
    return [str(a) for a in entry + command]


def run_help(*args: str) -> str:
    result = subprocess.run(
        [str(BIN / args[0]), *args[1:], "--help"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, f"{args} --help failed:\n{result.stdout}{result.stderr}"
    return result.stdout


def options_of(args: list[str]) -> Iterator[str]:
    for a in args:
        if a.startswith("-"):
            yield a.split("=", 1)[0]


# ------------------------------------------------------------------ topology


def test_services_and_topology(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert set(services) == {"redis", "postgres", *APP_SERVICES, *MONITORING}
    for name in MONITORING:
        assert services[name]["profiles"] == ["monitoring"]
    assert services["beat"]["deploy"]["replicas"] == 2
    for name in ("beat", "worker"):
        # `--scale` and replicas need containers without fixed names or host ports.
        assert "container_name" not in services[name]
        assert "ports" not in services[name]
        assert "hostname" not in services[name]
    assert services["flower"]["ports"] == ["5555:5555"]
    assert services["ui"]["ports"] == ["8585:8585"]
    for name in ("beat", "worker", "flower", "ui"):
        deps = services[name]["depends_on"]
        assert deps["migrate"]["condition"] == "service_completed_successfully"
        assert deps["redis"]["condition"] == deps["postgres"]["condition"] == "service_healthy"
    assert services["migrate"]["restart"] == "no"
    for name in ("redis", "postgres", "beat", "worker", "flower", "ui"):
        assert services[name]["healthcheck"]["test"], f"{name} has no healthcheck"
    assert {"redis-data", "postgres-data"} <= set(compose["volumes"])
    assert any(v.endswith(":/data") for v in services["redis"]["volumes"])
    assert any(v.endswith(":/var/lib/postgresql/data") for v in services["postgres"]["volumes"])


def test_redis_has_password_and_append_only(compose: dict[str, Any]) -> None:
    redis = compose["services"]["redis"]
    command = " ".join(redis["command"])
    assert "--requirepass" in command and '"$REDIS_PASSWORD"' in command
    assert "--appendonly yes" in command
    assert redis["environment"]["REDIS_PASSWORD"] == _env_example()["REDIS_PASSWORD"]


def test_app_urls_point_at_the_bundled_services(compose: dict[str, Any]) -> None:
    env = _env_example()
    for name in APP_SERVICES:
        app_env = compose["services"][name]["environment"]
        redis = urlsplit(app_env["REDIS_URL"])
        assert (redis.scheme, redis.hostname, redis.port) == ("redis", "redis", 6379)
        assert redis.password == env["REDIS_PASSWORD"]
        pg = urlsplit(app_env["DATABASE_URL"])
        assert (pg.scheme, pg.hostname, pg.port) == ("postgresql", "postgres", 5432)
        assert pg.username == env["POSTGRES_USER"] and pg.password == env["POSTGRES_PASSWORD"]
        assert pg.path == f"/{env['POSTGRES_DB']}"


def test_external_urls_win(raw: dict[str, Any]) -> None:
    env = {
        **_env_example(),
        "REDIS_URL": "rediss://:x@cache:6380/1",
        "DATABASE_URL": "postgresql://h/d",
    }
    text = interpolate((REPO / "compose.yaml").read_text(), env)
    worker = yaml.safe_load(text)["services"]["worker"]["environment"]
    assert worker["REDIS_URL"] == env["REDIS_URL"]
    assert worker["DATABASE_URL"] == env["DATABASE_URL"]


def test_secrets_are_required_not_defaulted(raw: dict[str, Any]) -> None:
    env = _env_example()
    for secret in (
        "REDIS_PASSWORD",
        "POSTGRES_PASSWORD",
        "FLOWER_BASIC_AUTH",
        "SYSTEMPROMPT_UI_USER",
        "SYSTEMPROMPT_UI_PASSWORD",
    ):
        with pytest.raises(KeyError, match=secret):
            interpolate((REPO / "compose.yaml").read_text(), {**env, secret: ""})


def test_every_interpolated_variable_is_in_env_example() -> None:
    used = compose_vars((REPO / "compose.yaml").read_text())
    assert used - set(_env_example()) == set()


# ------------------------------------------------------------------ commands


def test_service_commands_are_real_commands(compose: dict[str, Any]) -> None:
    """Each service's argv: the subcommand exists and every option it passes is known."""
    services = compose["services"]
    checked = set()
    for name in APP_SERVICES:
        args = argv(services[name])
        if args[0] == "systemprompt":
            path = []
            for a in args[1:]:
                if a.startswith("-"):
                    break
                path.append(a)
            assert path[:1] == ["infra"], args
            help_text = run_help("systemprompt", *path)
            rest = args[1 + len(path) :]
            if path == ["infra", "worker"]:
                # Its own options, else passed through to `celery worker`.
                help_text += run_help("celery", "-A", "worker.app", "worker")
            for opt in options_of(rest):
                assert re.search(rf"(^|[\s,]){re.escape(opt)}\b", help_text, re.M), (name, opt)
            checked.add(" ".join(path))
        else:
            assert args[:4] == ["celery", "-A", "worker.app", "flower"], args
            assert "Web based tool for monitoring" in run_help(*args[:4])
            import flower.options  # noqa: F401 - defines Flower's options
            from tornado.options import options as tornado_options

            known = set(tornado_options._options)
            for opt in options_of(args[4:]):
                assert opt.lstrip("-").replace("_", "-") in known, (name, opt)
            checked.add("flower")
    assert checked == {"infra db migrate", "infra beat", "infra worker", "infra ui", "flower"}


@pytest.mark.parametrize("name", ["beat", "worker"])
def test_healthchecks_ask_readyz_on_the_metrics_port(compose: dict[str, Any], name: str) -> None:
    service = compose["services"][name]
    test = service["healthcheck"]["test"]
    assert test[:3] == ["CMD", "python", "-c"]
    match = re.search(r"http://127\.0\.0\.1:(\d+)/readyz", test[3])
    assert match, test
    command = " ".join(service["command"])
    assert re.search(rf"--metrics-port[ =]{match[1]}\b", command), command
    compile(test[3], "healthcheck", "exec")


# ------------------------------------------------------------------ environment


def test_app_env_is_what_the_code_reads(compose: dict[str, Any]) -> None:
    import flower.options  # noqa: F401
    from tornado.options import options as tornado_options

    for name in APP_SERVICES:
        env = compose["services"][name]["environment"]
        for key in env:
            if key.startswith("FLOWER_"):
                option = key.removeprefix("FLOWER_").lower()
                assert {option, option.replace("_", "-")} & set(tornado_options._options), key
            else:
                read = CODE_ENV | (UI_ENV if name == "ui" else set())
                assert key in read, f"{name}: {key} is read by nothing"


def test_ui_env_names_are_the_dashboards() -> None:
    from ui import settings

    names = {
        settings.USER_ENV,
        settings.PASSWORD_ENV,
        settings.READONLY_USER_ENV,
        settings.READONLY_PASSWORD_ENV,
        settings.FLOWER_URL_ENV,
    }
    assert names == UI_ENV


def test_code_reads_app_env(tmp_path: Path, compose: dict[str, Any]) -> None:
    """REDIS_URL, DATABASE_URL and SYSTEMPROMPT_PROFILE really drive the configuration."""
    from jobs_core.profile import load_profile
    from jobs_core.registry import build_registry

    worker_env = compose["services"]["worker"]["environment"]
    # The mounted profile, at the path the containers are told.
    profile_src = REPO / "profile.example.yaml"
    volume = compose["services"]["worker"]["volumes"][0]
    src, dst = volume.split(":")[:2]
    assert (REPO / src).resolve() == profile_src.resolve()
    assert dst == worker_env["SYSTEMPROMPT_PROFILE"]
    local = tmp_path / "profile.yaml"
    local.write_text(profile_src.read_text())
    env = {**worker_env, "SYSTEMPROMPT_PROFILE": str(local)}
    profile = load_profile(None, env=env)
    assert profile.redis_url == worker_env["REDIS_URL"]
    assert profile.database_url == worker_env["DATABASE_URL"]
    registry = build_registry(profile)
    assert registry.jobs, "the mounted example profile must yield jobs"


# ------------------------------------------------------------------ image


def test_dockerfile() -> None:
    text = (REPO / "Dockerfile").read_text()
    froms = re.findall(r"^FROM\s+(\S+)", text, re.M)
    assert "ARG PYTHON_IMAGE=python:3.11-slim" in text
    assert all(f.startswith("${PYTHON_IMAGE}") for f in froms)
    assert dockerfile_entrypoint() == ["systemprompt"]
    users = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    # The project with Flower, never the dev extras.
    assert '".[flower]"' in text and "[dev]" not in text
    # No compilers in the final image: the final stage installs prebuilt wheels only.
    final = text.rsplit("\nFROM ", 1)[1]
    assert "--no-index" in final
    assert not re.search(r"\b(gcc|build-essential|g\+\+)\b", final)
    # Every COPY source exists (README.md* may match nothing).
    for line in re.findall(r"^COPY\s+(?!--from)(.+)$", text, re.M):
        parts = [p for p in line.split() if not p.startswith("--")]
        for src in parts[:-1]:
            assert src.endswith("*") or (REPO / src).exists(), src


def test_dockerignore_keeps_secrets_out_and_sources_in() -> None:
    patterns = [
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for must in (".env", ".venv", ".git", "tests"):
        assert must in patterns, must
    for needed in ("pyproject.toml", "jobs_core", "worker", "beat", "cli", "extensions"):
        assert needed not in patterns, needed
    assert "profile.example.yaml" not in patterns


def test_env_example_is_committed_and_env_ignored() -> None:
    assert ".env" in (REPO / ".gitignore").read_text().split()
    assert "FLOWER_BASIC_AUTH" in _env_example()
    assert ":" in _env_example()["FLOWER_BASIC_AUTH"]
