"""The bucketed time window: its expiry bounds, fixed memory and odd clocks."""

from __future__ import annotations

from typing import Any, SupportsIndex

from hypothesis import given
from hypothesis import strategies as st

from circuitry._window import BUCKETS, CountWindow, TimeWindow


def totals(window: TimeWindow | CountWindow) -> tuple[int, int, int]:
    return (window.total_calls, window.total_failures, window.total_slow)


def bucket_sums(window: TimeWindow) -> tuple[int, int, int]:
    return (sum(window.calls), sum(window.failures), sum(window.slow))


def test_window_has_ten_buckets_of_a_tenth_each() -> None:
    window = TimeWindow(60.0)
    assert BUCKETS == 10
    assert window.width == 6.0
    assert len(window.calls) == len(window.failures) == len(window.slow) == BUCKETS


def test_new_window_is_empty() -> None:
    window = TimeWindow(10.0)
    assert totals(window) == (0, 0, 0)
    window.expire(1e6)
    assert totals(window) == (0, 0, 0)


def test_add_counts_calls_failures_and_slow_calls() -> None:
    window = TimeWindow(10.0)
    window.add(1.0, failed=True, slow=False)
    window.add(1.5, failed=False, slow=True)
    window.add(2.0, failed=True, slow=True)
    window.add(2.5, failed=False, slow=False)
    assert totals(window) == (4, 2, 2)


def test_call_counts_until_0_9_window_and_is_gone_after_window() -> None:
    window = TimeWindow(10.0)
    window.add(3.7, failed=True, slow=True)
    window.expire(3.7 + 8.9)  # less than 0.9 * 10 later
    assert totals(window) == (1, 1, 1)
    window.expire(3.7 + 10.1)  # more than 10 later
    assert totals(window) == (0, 0, 0)


def test_integer_times_with_unit_buckets_are_exact() -> None:
    # failure_window=10: buckets 1.0 wide, so a call at t counts at now iff now - t <= 9.
    window = TimeWindow(10.0)
    window.add(0.0, failed=True, slow=False)
    window.add(5.0, failed=True, slow=False)
    window.expire(9.0)
    assert window.total_failures == 2
    window.expire(10.0)
    assert window.total_failures == 1
    window.expire(14.0)
    assert window.total_failures == 1
    window.expire(15.0)
    assert window.total_failures == 0


@given(
    length=st.floats(0.01, 1e4),
    start=st.floats(0.0, 1e6),
    fraction=st.floats(0.0, 0.89),
)
def test_call_completed_less_than_0_9_window_ago_always_counts(
    length: float, start: float, fraction: float
) -> None:
    window = TimeWindow(length)
    window.add(start, failed=True, slow=True)
    window.expire(start + fraction * length)
    assert totals(window) == (1, 1, 1)
    window.add(start + fraction * length, failed=False, slow=False)
    assert totals(window) == (2, 1, 1)


@given(
    length=st.floats(0.01, 1e4),
    start=st.floats(0.0, 1e6),
    multiple=st.floats(1.01, 1e6),
)
def test_call_completed_more_than_window_ago_never_counts(
    length: float, start: float, multiple: float
) -> None:
    window = TimeWindow(length)
    window.add(start, failed=True, slow=True)
    later = start + multiple * length
    window.add(later, failed=False, slow=False)
    assert totals(window) == (1, 0, 0)
    window.expire(later + length * 1.01)
    assert totals(window) == (0, 0, 0)


@given(
    steps=st.lists(
        st.tuples(
            st.integers(0, 12) | st.just(1000),
            st.booleans(),  # add (True) or just expire
            st.booleans(),
            st.booleans(),
        ),
        max_size=60,
    )
)
def test_window_matches_a_list_of_recent_calls(steps: list[tuple[int, bool, bool, bool]]) -> None:
    window = TimeWindow(10.0)
    reference: list[tuple[int, bool, bool]] = []
    now = 0
    for dt, add, failed, slow in steps:
        now += dt
        if add:
            window.add(float(now), failed, slow)
            reference.append((now, failed, slow))
        else:
            window.expire(float(now))
        counted = [c for c in reference if now - c[0] <= 9]
        expected = (
            len(counted),
            sum(1 for c in counted if c[1]),
            sum(1 for c in counted if c[2]),
        )
        assert totals(window) == expected
        assert bucket_sums(window) == expected


class CountingList(list[int]):
    """A list that counts how often its items are read or written.

    It fails at the 1000th touch, so that work proportional to the gap fails
    the test at once instead of running for ever.
    """

    touched = 0

    def _touch(self) -> None:
        CountingList.touched += 1
        assert CountingList.touched < 1000, "work grows with the gap"

    def __getitem__(self, index: Any) -> Any:
        self._touch()
        return super().__getitem__(index)

    def __setitem__(self, index: SupportsIndex | slice, value: Any) -> None:
        self._touch()
        super().__setitem__(index, value)


def test_advance_after_a_long_gap_does_constant_work() -> None:
    window = TimeWindow(10.0)
    for t in range(20):
        window.add(float(t), failed=True, slow=True)
    window.calls = CountingList(window.calls)
    window.failures = CountingList(window.failures)
    window.slow = CountingList(window.slow)
    CountingList.touched = 0
    window.expire(1e18)  # 1e18 buckets later
    assert totals(window) == (0, 0, 0)
    assert CountingList.touched <= 3 * 2 * BUCKETS
    CountingList.touched = 0
    window.add(2e18, failed=True, slow=False)
    assert totals(window) == (1, 1, 0)
    assert CountingList.touched <= 3 * 2 * BUCKETS


def test_advance_by_a_few_buckets_touches_only_those_buckets() -> None:
    window = TimeWindow(10.0)
    window.add(0.0, failed=True, slow=False)
    window.calls = CountingList(window.calls)
    window.failures = CountingList(window.failures)
    window.slow = CountingList(window.slow)
    CountingList.touched = 0
    window.expire(3.0)  # three buckets on: each of 3 lists read and written 3 times
    assert CountingList.touched <= 3 * 3 * 2
    assert totals(window) == (1, 1, 0)


def test_memory_is_fixed_whatever_the_call_count() -> None:
    window = TimeWindow(10.0)
    for i in range(100_000):
        window.add(i * 0.37, failed=i % 3 == 0, slow=i % 5 == 0)
    assert len(window.calls) == len(window.failures) == len(window.slow) == BUCKETS
    assert window.total_calls == sum(window.calls) <= 100_000
    # About 0.37 s apart: the last 9 to 10 seconds' worth of calls remain.
    assert 9 / 0.37 <= window.total_calls <= 10 / 0.37 + 1


def test_clock_going_backwards_counts_in_the_newest_bucket() -> None:
    window = TimeWindow(10.0)
    window.add(100.0, failed=True, slow=False)
    window.add(50.0, failed=True, slow=True)  # earlier than the newest call
    assert totals(window) == (2, 2, 1)
    window.expire(0.0)  # backwards: nothing to drop
    assert totals(window) == (2, 2, 1)
    window.expire(109.0)
    assert totals(window) == (2, 2, 1)
    window.expire(110.5)  # the newest bucket (100) has left the window
    assert totals(window) == (0, 0, 0)


@given(times=st.lists(st.tuples(st.floats(-1e3, 1e3), st.booleans(), st.booleans()), max_size=50))
def test_any_order_of_times_keeps_consistent_counts(
    times: list[tuple[float, bool, bool]],
) -> None:
    window = TimeWindow(10.0)
    for now, failed, slow in times:
        window.add(now, failed, slow)
        calls, failures, slows = totals(window)
        assert (calls, failures, slows) == bucket_sums(window)
        assert 0 <= failures <= calls
        assert 0 <= slows <= calls
    assert window.total_calls <= len(times)


def test_clear_empties_the_window() -> None:
    window = TimeWindow(10.0)
    for t in range(5):
        window.add(float(t), failed=True, slow=True)
    window.clear()
    assert totals(window) == (0, 0, 0)
    assert bucket_sums(window) == (0, 0, 0)
    window.add(3.0, failed=False, slow=False)  # an earlier time after clear() is fine
    assert totals(window) == (1, 0, 0)


# -- the count window (failure_window_calls) ------------------------------------


def test_count_window_holds_the_last_n_calls_whatever_the_time() -> None:
    window = CountWindow(3)
    window.add(0.0, True, True)
    window.expire(10.0**9)  # time takes nothing out
    assert totals(window) == (1, 1, 1)
    window.add(1.0, False, False)
    window.add(2.0, False, True)
    assert totals(window) == (3, 1, 2)
    window.add(3.0, False, False)  # the first call (failed, slow) leaves
    assert totals(window) == (3, 0, 1)
    window.clear()
    assert totals(window) == (0, 0, 0)


@given(st.integers(1, 6), st.lists(st.tuples(st.booleans(), st.booleans()), max_size=40))
def test_count_window_totals_are_those_of_the_last_n_calls(
    size: int, calls: list[tuple[bool, bool]]
) -> None:
    window = CountWindow(size)
    for failed, slow in calls:
        window.add(0.0, failed, slow)
    last = calls[-size:] if calls else []
    assert totals(window) == (len(last), sum(f for f, _ in last), sum(s for _, s in last))
