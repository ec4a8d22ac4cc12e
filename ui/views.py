"""What the pages show, computed from the job table, history and live state: plain
values for the templates (which escape everything they print)."""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

from cron_descriptor import ExpressionDescriptor, FormatError, Options
from markupsafe import Markup

from jobs_core import dst
from jobs_core.cron import _MACROS
from jobs_core.durations import format_duration
from jobs_core.registry import JobDefinition
from jobs_core.status import TERMINAL, RunStatus

from .queries import Recent

#: Runs per job on the overview's sparkline and success rate.
RECENT_RUNS = 20


class State:
    ENABLED = "enabled"
    PAUSED = "paused"
    DISABLED = "disabled"
    ALL = (ENABLED, PAUSED, DISABLED)


def job_state(jd: JobDefinition, paused: Collection[str]) -> str:
    if not jd.enabled:
        return State.DISABLED  # the profile's `enabled: false` wins over a runtime pause
    return State.PAUSED if jd.key in paused else State.ENABLED


@lru_cache(maxsize=4096)
def schedule_words(expr: str | None) -> str:
    if not expr:
        return "manual runs only"
    text = _MACROS.get(expr.strip().lower(), expr)
    options = Options()
    options.use_24hour_time_format = True
    try:
        return str(ExpressionDescriptor(text, options).get_description())
    except (FormatError, ValueError, KeyError, IndexError):
        return expr


def when(value: datetime | None, tz: ZoneInfo | None = None) -> str:
    if value is None:
        return "-"
    local = value.astimezone(tz) if tz else value
    return local.strftime("%Y-%m-%d %H:%M:%S %Z").strip()


def relative(value: datetime | None, now: datetime) -> str:
    """``in 4 min`` / ``12 s ago``: what the live countdown shows, for pages without JS."""
    if value is None:
        return ""
    seconds = (value - now).total_seconds()
    span = abs(seconds)
    if span < 60:
        text = f"{span:.0f} s"
    elif span < 3600:
        text = f"{span // 60:.0f} min"
    elif span < 86400:
        text = f"{span // 3600:.0f} h {span % 3600 // 60:.0f} min"
    else:
        text = f"{span // 86400:.0f} d {span % 86400 // 3600:.0f} h"
    return f"in {text}" if seconds >= 0 else f"{text} ago"


_COUNTED = frozenset(s.value for s in TERMINAL - {RunStatus.SKIPPED})
_OK = RunStatus.SUCCEEDED.value


@dataclass(frozen=True)
class Stats:
    last_id: str | None
    last_status: str | None
    finished: int
    succeeded: int
    median_ms: int | None
    spark: Markup

    @property
    def success_rate(self) -> str:
        return f"{100 * self.succeeded / self.finished:.0f}%" if self.finished else "-"


def stats(recent: Recent | None) -> Stats:
    """Success rate over the finished (not skipped) recent runs, median duration, sparkline."""
    if recent is None:
        return Stats(None, None, 0, 0, None, sparkline([], []))
    finished = [i for i, s in enumerate(recent.statuses) if s in _COUNTED]
    ok = sum(recent.statuses[i] == _OK for i in finished)
    durations = sorted(d for i in finished if (d := recent.durations[i]) is not None)
    median = durations[len(durations) // 2] if durations else None
    return Stats(
        recent.last_id,
        recent.last_status.value,
        len(finished),
        ok,
        median,
        sparkline(recent.statuses, recent.durations),
    )


_BAR_W, _GAP, _H = 5, 1, 20
_CLASS = {s.value: f"s-{s.value}" for s in RunStatus}


def sparkline(statuses: Sequence[str], durations: Sequence[int | None]) -> Markup:
    """Bars oldest to newest, height by duration, colour by status (an inline SVG: no JS).

    Built from numbers and status names (an enum) only, so marking it safe is sound.
    """
    width = RECENT_RUNS * (_BAR_W + _GAP)
    longest = max((d or 0 for d in durations), default=0) or 1
    step = _BAR_W + _GAP
    bars = "".join(
        f'<rect class="{_CLASS.get(status, "s-unknown")}" x="{i * step}" y="{_H - h}" '
        f'width="{_BAR_W}" height="{h}"/>'
        for i, (status, d) in enumerate(zip(statuses, durations, strict=True))
        for h in (max(2, _H * (d or 0) // longest),)
    )
    label = f"last {len(statuses)} runs" if statuses else "no runs yet"
    return Markup(
        f'<svg class="spark" width="{width}" height="{_H}" viewBox="0 0 {width} {_H}"'
        f' role="img" aria-label="{label}">{bars}</svg>'
    )


@dataclass(frozen=True)
class NextRun:
    at: datetime
    local: str
    utc: str
    dst: str | None  # set when the zone's offset changes just before this run


def next_runs(jd: JobDefinition, now: datetime, n: int = 10) -> list[NextRun]:
    """The next ``n`` fire times, marking those that come after a DST change."""
    if jd.cron is None:
        return []
    tz = jd.cron.tz
    upcoming = jd.cron.next_n(now, n)
    return [
        NextRun(at, when(at, tz), when(at.astimezone(UTC)), mark)
        for at, mark in zip(upcoming, dst.marks(upcoming, tz, now), strict=True)
    ]


@dataclass(frozen=True)
class Policy:
    name: str
    value: str
    source: str


def policies(jd: JobDefinition) -> list[Policy]:
    src = jd.sources
    retry = jd.policy.retry
    out = [
        Policy("schedule", jd.schedule or "manual only", jd.schedule_source),
        Policy("retry: attempts", str(retry.max_attempts), src.get("retry", "built-in")),
        Policy(
            "retry: backoff",
            f"{format_duration(retry.backoff)} doubling, capped at "
            f"{format_duration(retry.max_backoff)}{', jitter' if retry.jitter else ''}",
            src.get("retry", "built-in"),
        ),
        Policy("timeout", format_duration(jd.policy.timeout), src.get("timeout", "built-in")),
        Policy("overlap", jd.policy.overlap.value, src.get("overlap", "built-in")),
        Policy(
            "misfire grace",
            format_duration(jd.policy.misfire_grace),
            src.get("misfire_grace", "built-in"),
        ),
        Policy("queue", jd.policy.queue, src.get("queue", "built-in")),
        Policy("time zone", jd.timezone, src.get("timezone", "built-in")),
    ]
    policy = jd.policy
    if policy.jitter:
        out.append(Policy("jitter", f"up to {format_duration(policy.jitter)}", src["jitter"]))
    for name, bound in (("start_at", policy.start_at), ("end_at", policy.end_at)):
        if bound is not None:
            out.append(Policy(name, bound.isoformat(), src[name]))
    if policy.max_runs:
        out.append(Policy("max runs", str(policy.max_runs), src["max_runs"]))
    return out


def parse_params(text: str) -> dict[str, str]:
    """``KEY=VALUE`` lines of the run-now form; a ValueError names the bad line."""
    params: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"line {number}: {line!r} is not KEY=VALUE")
        params[key.strip()] = value.strip()
    return params


def tags_of(jobs: Iterable[JobDefinition]) -> list[str]:
    return sorted({tag for jd in jobs for tag in jd.tags})
