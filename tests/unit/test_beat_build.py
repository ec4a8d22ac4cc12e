"""What the beat keeps of its built ticks across a reload (``TickBuilder.rebase``)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from beat.build import TickBuilder, tick_shape
from beat.schedule import from_ms
from jobs_core.profile import load_profile
from jobs_core.registry import JobDefinition, build_registry
from tests.beat_fixtures import JOB, JOB2, beat_profile

MS = 1_700_000_040_000
ISO = from_ms(MS).isoformat()


def _jobs(tmp_path: Path) -> dict[str, JobDefinition]:
    path = tmp_path / "profile.yaml"
    path.write_text(beat_profile())
    return dict(build_registry(load_profile(str(path))).jobs)


def test_a_reload_keeps_the_ticks_of_unchanged_jobs_only(tmp_path: Path) -> None:
    old = _jobs(tmp_path)
    builder = TickBuilder("b")
    before = {key: builder.tick(old[key], MS, ISO) for key in (JOB, JOB2)}
    new = _jobs(tmp_path)  # the same profile read again: new objects, same ticks
    assert new[JOB] is not old[JOB] and tick_shape(new[JOB]) == tick_shape(old[JOB])
    new[JOB2] = replace(new[JOB2], parameters={"n": 1})
    assert builder.rebase(new) == {JOB}
    # The kept job hits the cache with its new definition: the same template, the same
    # bytes; the changed one is built from its new parameters.
    again = builder.tick(new[JOB], MS, ISO)
    assert again.template is before[JOB].template and again.packed == before[JOB].packed
    assert builder.tick(new[JOB2], MS, ISO).template is not before[JOB2].template


def test_what_changes_a_tick_is_a_change_and_nothing_else(tmp_path: Path) -> None:
    job = _jobs(tmp_path)[JOB]
    policy = job.policy
    for changed in (
        replace(job, parameters={"a": 1}),
        replace(job, policy=replace(policy, queue="other")),
        replace(job, policy=replace(policy, max_runs=3)),
    ):
        builder = TickBuilder("b")
        builder.tick(job, MS, ISO)
        assert builder.rebase({JOB: changed}) == set()
    builder = TickBuilder("b")
    builder.tick(job, MS, ISO)
    assert builder.rebase({JOB: replace(job, description="reworded")}) == {JOB}
    assert builder.rebase({}) == set()  # removed
    builder.tick(job, MS, ISO)
    assert builder.rebase({JOB: replace(job, parameters={"a": 1})}, unchanged={JOB}) == {JOB}
