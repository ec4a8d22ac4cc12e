"""The dashboard's pure parts: accounts, authentication, CSRF, what the pages compute."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest
from starlette.datastructures import Headers

from jobs_core.errors import ConfigError
from jobs_core.history import Cursor
from jobs_core.profile import parse_profile
from jobs_core.registry import build_registry
from tests.worker_fixtures import WorkerTestExtension
from ui import auth, views
from ui.queries import Recent
from ui.settings import load_settings


def test_settings_need_an_account_and_the_environment_wins() -> None:
    with pytest.raises(ConfigError, match="SYSTEMPROMPT_UI_USER and SYSTEMPROMPT_UI_PASSWORD"):
        load_settings(parse_profile(""), env={})
    with pytest.raises(ConfigError, match="no password: set SYSTEMPROMPT_UI_PASSWORD"):
        load_settings(parse_profile(""), env={"SYSTEMPROMPT_UI_USER": "a"})
    with pytest.raises(ConfigError, match=r"ui\.readonly_user"):
        load_settings(parse_profile("ui: {user: a, password: b, readonly_password: c}"), env={})
    profile = parse_profile(
        "ui: {user: a, password: b, readonly_user: v, readonly_password: w, "
        "flower_url: 'http://f:5555/'}"
    )
    settings = load_settings(profile, env={"SYSTEMPROMPT_UI_PASSWORD": "from-env"})
    assert [(a.name, a.password, a.can_act) for a in settings.accounts] == [
        ("a", "from-env", True),
        ("v", "w", False),
    ]
    assert settings.flower_url == "http://f:5555"
    assert "from-env" not in repr(profile) and "'w'" not in repr(profile)


def _basic(user: str, password: str) -> Headers:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return Headers({"authorization": f"Basic {token}"})


def test_basic_auth_checks_user_and_password() -> None:
    settings = load_settings(
        parse_profile("ui: {user: a, password: 'p:q', readonly_user: v, readonly_password: w}"),
        env={},
    )
    account = auth.check(settings, _basic("a", "p:q"))  # a colon in the password is fine
    assert account is not None and account.can_act
    viewer = auth.check(settings, _basic("v", "w"))
    assert viewer is not None and not viewer.can_act
    assert auth.check(settings, _basic("a", "w")) is None
    assert auth.check(settings, _basic("v", "p:q")) is None
    assert auth.check(settings, Headers({"authorization": "Basic !!!"})) is None
    assert auth.check(settings, Headers({"authorization": "Bearer x"})) is None
    assert auth.check(settings, Headers({})) is None


def test_csrf_tokens_are_per_user_and_per_process() -> None:
    csrf = auth.Csrf()
    token = csrf.token("a")
    assert csrf.valid("a", token)
    assert not csrf.valid("b", token)
    assert not csrf.valid("a", None) and not csrf.valid("a", "")
    assert not auth.Csrf().valid("a", token)


def test_schedule_words() -> None:
    assert views.schedule_words("0 */30 * * * *") == "Every 30 minutes"
    assert views.schedule_words("0 30 3 * * *") == "At 03:30"
    assert views.schedule_words("@daily") == "At 00:00"
    assert views.schedule_words(None) == "manual runs only"


def _registry(profile: str) -> dict[str, views.JobDefinition]:
    return build_registry(parse_profile(profile), [WorkerTestExtension()]).jobs


def test_next_runs_mark_dst_changes() -> None:
    jobs = _registry(
        "scheduler:\n  timezone: Europe/London\n  jobs:\n"
        "    - {extension: testjobs, job: ok, schedule: '0 30 1 * * *'}\n"
        "    - {extension: testjobs, job: noop, schedule: '0 30 * * * *'}\n"
    )
    # 2024-10-27: London falls back at 02:00 BST to 01:00 GMT.
    now = datetime(2024, 10, 25, 12, 0, tzinfo=UTC)
    daily = views.next_runs(jobs["testjobs/ok"], now, 4)
    assert [n.dst for n in daily] == [None, None, "DST: UTC+01:00 -> UTC+00:00", None]
    assert daily[2].local == "2024-10-28 01:30:00 GMT"
    hourly = views.next_runs(jobs["testjobs/noop"], datetime(2024, 10, 27, 0, 0, tzinfo=UTC), 2)
    # 01:30 BST then 01:30 GMT: the repeated hour fires twice for an interval-like hour.
    assert [n.local for n in hourly] == ["2024-10-27 01:30:00 BST", "2024-10-27 01:30:00 GMT"]
    assert hourly[1].dst == "DST: UTC+01:00 -> UTC+00:00"
    assert views.next_runs(_registry("")["testjobs/ok"], now) == []


def test_stats_count_finished_runs_but_not_skipped_ones() -> None:
    recent = Recent(
        "id-last",
        views.RunStatus.SKIPPED,
        ["succeeded", "failed", "running", "succeeded", "skipped"],
        [100, 300, None, 200, None],
    )
    stats = views.stats(recent)
    assert (stats.finished, stats.succeeded, stats.success_rate) == (3, 2, "67%")
    assert stats.median_ms == 200 and stats.last_status == "skipped"
    assert stats.spark.count("<rect") == 5 and 'class="s-failed"' in stats.spark
    empty = views.stats(None)
    assert empty.success_rate == "-" and empty.last_id is None and "<rect" not in empty.spark


def test_parse_params() -> None:
    assert views.parse_params("a=1\n\n b = x=y \n") == {"a": "1", "b": "x=y"}
    with pytest.raises(ValueError, match="line 2: 'oops' is not KEY=VALUE"):
        views.parse_params("a=1\noops")
    with pytest.raises(ValueError, match="is not KEY=VALUE"):
        views.parse_params("=1")


def test_cursor_round_trip() -> None:
    cursor = Cursor(
        datetime(2024, 5, 1, 12, 0, 0, 123456, tzinfo=UTC), "0b0e7f5c-9f2a-4b8e-9d4c-2f6a1b3c4d5e"
    )
    assert Cursor.decode(cursor.encode()) == cursor
    assert Cursor.decode("garbage") is None
    assert Cursor.decode("not-a-date_x") is None
