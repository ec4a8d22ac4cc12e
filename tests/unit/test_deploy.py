"""deploy/: Prometheus rules and config pass promtool; every metric the rules and the
Grafana dashboard query is one the beat or the worker really exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import yaml
from prometheus_client import CollectorRegistry, generate_latest

from beat.metrics import BeatMetrics
from beat.monitor import _JobCollector
from jobs_core.alerts import AlertKind, Incident, JobHealth
from jobs_core.status import Action, RunStatus, Trigger
from tests.procs import missing_tool
from worker.metrics import WorkerMetrics

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
RULES = DEPLOY / "prometheus" / "rules.yml"
METRIC = re.compile(r"\bsystemprompt_[a-z_]+\b")


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        missing_tool("promtool is not installed (Debian package prometheus)")
    return found


def test_alert_rules_pass_promtool() -> None:
    result = subprocess.run(
        [promtool(), "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 5 rules found" in result.stdout


def test_scrape_config_passes_promtool(tmp_path: Path) -> None:
    shutil.copy(RULES, tmp_path / "rules.yml")
    text = (DEPLOY / "prometheus" / "prometheus.yml").read_text()
    config = tmp_path / "prometheus.yml"
    config.write_text(text.replace("/etc/prometheus/rules.yml", str(tmp_path / "rules.yml")))
    result = subprocess.run(
        [promtool(), "check", "config", str(config)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_rules_cover_what_operators_ask() -> None:
    rules = yaml.safe_load(RULES.read_text())["groups"][0]["rules"]
    names = {r["alert"] for r in rules}
    assert names == {
        "SystemPromptJobLate",
        "SystemPromptJobFailing",
        "SystemPromptNoBeatLeader",
        "SystemPromptTickLagHigh",
        "SystemPromptWorkerDown",
    }


class _Tick:
    def __init__(self, job: str, due_ms: int) -> None:
        self.job_key, self.due_ms, self.trigger, self.kind = job, due_ms, Trigger.SCHEDULE, "fire"
        self.jitter_ms = 0


def exported() -> set[str]:
    """Every sample name a beat and a worker expose, with one value of each fed in."""
    beat = BeatMetrics("b1")
    beat.ticks([_Tick("a/b", 1000)], [1], 1001.0)
    beat.jobs.labels("enabled").set(1)
    jobs = _JobCollector()
    now = datetime.now(UTC)
    jobs.health = {"a/b": JobHealth("a/b", now, now, 1)}
    jobs.active = {"a/b|late": Incident("a/b", AlertKind.LATE, now)}
    jobs.jobs = ["a/b"]
    beat.registry.register(jobs)
    worker_registry = CollectorRegistry()
    worker = WorkerMetrics(worker_registry)
    worker.outcome("a/b", RunStatus.FAILED, Action.ACK, 10)
    worker.outcome("a/b", RunStatus.RETRYING, Action.RETRY, 10)
    worker.infra_error("a/b")
    with worker.attempt("a/b"):
        pass
    text = generate_latest(beat.registry) + generate_latest(worker_registry)
    return set(re.findall(r"^(systemprompt_[a-z_]+)", text.decode(), re.M))


def test_every_queried_metric_is_exported() -> None:
    names = exported()
    # The names the issue promises dashboards and rules may rely on.
    assert {
        "systemprompt_beat_leader",
        "systemprompt_ticks_total",
        "systemprompt_tick_lag_seconds_bucket",
        "systemprompt_runs_total",
        "systemprompt_run_duration_seconds_bucket",
        "systemprompt_job_last_success_timestamp_seconds",
        "systemprompt_job_consecutive_failures",
    } <= names
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "systemprompt.json").read_text())
    queries = [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    queries += [r["expr"] for r in yaml.safe_load(RULES.read_text())["groups"][0]["rules"]]
    used = {m for q in queries for m in METRIC.findall(q)}
    assert used, "no query found"
    assert used - names == set()
    panels_of = {m for q in queries[: len(queries) - 5] for m in METRIC.findall(q)}
    assert len(panels_of) >= 10  # the dashboard shows beat, worker and per-job series
