"""The public API: JobResult, JobContext, policies, URL masking."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobs_core import JobContext, JobResult, RunInfo, Trigger
from jobs_core.errors import NoDatabaseConfigured, ParameterError, UnknownService
from jobs_core.policy import RetryPolicy
from jobs_core.urls import mask_secrets_in, mask_url


def make_ctx(**kwargs: object) -> JobContext:
    run = RunInfo(
        run_id="r1",
        job_key="ext/job",
        attempt=2,
        max_attempts=3,
        scheduled_for=datetime(2026, 1, 1, tzinfo=UTC),
        trigger=Trigger.SCHEDULE,
    )
    return JobContext(run=run, **kwargs)  # type: ignore[arg-type]


def test_job_result_builders_are_immutable_and_carry_everything() -> None:
    base = JobResult.success()
    full = base.with_message("done").with_stats(10, 2).with_duration(15.7).with_data(a=1)
    assert base.success is True and base.message is None and base.data == {}
    assert full.success is True
    assert (full.message, full.items_processed, full.items_failed) == ("done", 10, 2)
    assert full.duration_ms == 15 and full.data == {"a": 1}
    assert full.with_data(b=[1, 2]).data == {"a": 1, "b": [1, 2]}
    failed = JobResult.failure("nope")
    assert failed.success is False and failed.message == "nope"
    assert JobResult.from_json(full.to_json()) == full


def test_job_result_rejects_non_json_data_and_negative_stats() -> None:
    with pytest.raises(TypeError, match="JSON"):
        JobResult.success().with_data(when=datetime.now(UTC))
    with pytest.raises(ValueError, match=">= 0"):
        JobResult.success().with_stats(-1, 0)


def test_parameters_parse_and_name_job_and_key() -> None:
    ctx = make_ctx(parameters={"days": "30", "flag": "yes", "ratio": 0.5, "ids": "[1, 2]"})
    assert ctx.parameter("days", int) == 30
    assert ctx.parameter("flag", bool) is True
    assert ctx.parameter("ratio", float) == 0.5
    assert ctx.parameter("ids", list) == [1, 2]
    assert ctx.parameter("missing", int, default=7) == 7
    with pytest.raises(ParameterError, match=r"job ext/job: parameter 'missing' is required"):
        ctx.parameter("missing", int)
    bad = make_ctx(parameters={"days": "thirty"})
    with pytest.raises(ParameterError, match=r"job ext/job: parameter 'days'='thirty'"):
        bad.parameter("days", int)


def test_db_pool_without_database_is_a_clear_error() -> None:
    with pytest.raises(NoDatabaseConfigured, match=r"ext/job asked for ctx\.db_pool"):
        _ = make_ctx().db_pool


def test_services_by_type() -> None:
    class Base: ...

    class Impl(Base): ...

    impl = Impl()
    ctx = make_ctx(services={Impl: impl})
    assert ctx.service(Impl) is impl
    assert ctx.service(Base) is impl
    with pytest.raises(UnknownService, match="no service of type int"):
        ctx.service(int)


def test_run_info_and_log_carry_the_run() -> None:
    ctx = make_ctx()
    assert ctx.run.attempt == 2 and not ctx.run.is_last_attempt
    assert ctx.log.extra == {"job": "ext/job", "run_id": "r1", "attempt": 2}


def _documented_delay(attempt: int, backoff: float, cap: float) -> float:
    """``min(max_backoff, backoff * 2**(attempt-1))`` computed exactly, without floats."""
    if backoff == 0:
        return 0.0
    # The smallest positive float times 2**2200 exceeds the largest float: the cap wins.
    return float(min(Fraction(cap), Fraction(backoff) * 2 ** min(attempt - 1, 2200)))


@given(
    attempt=st.integers(1, 3000),
    backoff=st.floats(0, 100) | st.floats(0, 1e-12),
    cap=st.floats(0, 1000) | st.just(1e300),
    seed=st.integers(0, 2**32),
)
def test_retry_delay_is_exponential_capped_and_jitter_stays_below(
    attempt: int, backoff: float, cap: float, seed: int
) -> None:
    plain = RetryPolicy(max_attempts=100, backoff=backoff, max_backoff=cap, jitter=False)
    expected = _documented_delay(attempt, backoff, cap)
    assert plain.delay(attempt) == pytest.approx(expected)
    jittered = RetryPolicy(max_attempts=100, backoff=backoff, max_backoff=cap, jitter=True)
    assert 0 <= jittered.delay(attempt, random.Random(seed)) <= expected + 1e-9


@pytest.mark.parametrize(
    ("attempt", "backoff", "cap", "expected"),
    [
        (1, 10.0, 600.0, 10.0),
        (4, 10.0, 600.0, 80.0),
        (7, 10.0, 600.0, 600.0),
        # A tiny backoff reaches the cap only past attempt 63: no exponent limit may stop it.
        (64, 2.0**-70, 1000.0, 2.0**-7),
        (80, 2.0**-70, 1000.0, 512.0),
        (81, 2.0**-70, 1000.0, 1000.0),
        # Far past the float range: the cap, no OverflowError.
        (2000, 10.0, 600.0, 600.0),
        (10**9, 1e-300, 1e300, 1e300),
        (10**9, 0.0, 600.0, 0.0),
    ],
)
def test_retry_delay_follows_its_formula_for_any_attempt(
    attempt: int, backoff: float, cap: float, expected: float
) -> None:
    policy = RetryPolicy(max_attempts=3, backoff=backoff, max_backoff=cap, jitter=False)
    assert policy.delay(attempt) == expected
    assert policy.delay(attempt) == _documented_delay(attempt, backoff, cap)


def test_retry_policy_validates() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        RetryPolicy(max_attempts=0)


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("redis://:s3cret@host:6379/0", "redis://:***@host:6379/0"),
        (
            "rediss://user:s3cret@host:6380/1?ssl_cert_reqs=required",
            "rediss://user:***@host:6380/1?ssl_cert_reqs=required",
        ),
        ("redis://s3cret@host/0", "redis://***@host/0"),
        ("postgresql://app:s3cret@db:5432/app", "postgresql://app:***@db:5432/app"),
        (
            "postgresql://db/app?password=s3cret&sslmode=require",
            "postgresql://db/app?password=***&sslmode=require",
        ),
        ("redis://host:6379/0", "redis://host:6379/0"),
    ],
)
def test_mask_url(url: str, masked: str) -> None:
    assert mask_url(url) == masked
    assert "s3cret" not in mask_secrets_in(f"failed to reach {url}", url)
