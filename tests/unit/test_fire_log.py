"""The beat's per-second budget of INFO ``fire`` lines (beat/fire_log.py)."""

from __future__ import annotations

import logging

from hypothesis import given
from hypothesis import strategies as st

from beat.fire_log import FireLineBudget

INFO, DEBUG = logging.INFO, logging.DEBUG


def test_sends_within_a_second_share_the_budget() -> None:
    budget = FireLineBudget()
    assert budget.level(600, 100.0, 1000) == INFO
    assert budget.level(400, 100.5, 1000) == INFO  # exactly the budget: still INFO
    assert budget.level(1, 100.9, 1000) == DEBUG


def test_a_send_that_does_not_fit_goes_whole_to_debug_and_leaves_the_budget() -> None:
    budget = FireLineBudget()
    assert budget.level(900, 7.0, 1000) == INFO
    assert budget.level(200, 7.1, 1000) == DEBUG  # 1,100 would pass it: none at INFO
    assert budget.level(100, 7.2, 1000) == INFO  # the 200 used nothing


def test_a_new_second_starts_a_new_budget() -> None:
    budget = FireLineBudget()
    assert budget.level(1000, 41.99, 1000) == INFO
    assert budget.level(1, 41.999, 1000) == DEBUG
    assert budget.level(1000, 42.0, 1000) == INFO


def test_one_big_send_goes_to_debug_even_in_a_fresh_second() -> None:
    assert FireLineBudget().level(1001, 0.0, 1000) == DEBUG


@given(
    st.lists(
        st.tuples(st.integers(0, 300), st.floats(0, 0.999)),
        max_size=60,
    ),
    st.integers(0, 1000),
)
def test_never_more_info_lines_in_a_second_than_the_budget(
    sends: list[tuple[int, float]], per_second: int
) -> None:
    """Whatever the sends of one second, the INFO lines stay within the budget, and a
    send is refused only when it would have passed it."""
    budget = FireLineBudget()
    info = 0
    for runs, offset in sorted(sends, key=lambda s: s[1]):
        level = budget.level(runs, 5.0 + offset, per_second)
        if level == INFO:
            info += runs
        else:
            assert info + runs > per_second
    assert info <= per_second
