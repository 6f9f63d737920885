"""The one retry policy (hotline_runtime/retry.py) as tables: growth, the cap, jitter, the count."""

from __future__ import annotations

import pytest

from hotline_runtime.retry import Backoff

DELAYS = [
    # (policy, attempt, spread, delay)
    (Backoff(1.0, cap=30.0), 0, 0.0, 1.0),
    (Backoff(1.0, cap=30.0), 1, 0.0, 2.0),
    (Backoff(1.0, cap=30.0), 4, 0.0, 16.0),
    (Backoff(1.0, cap=30.0), 5, 0.0, 30.0),  # 32 capped
    (Backoff(1.0, cap=30.0), 5000, 0.0, 30.0),  # no overflow however long it has failed
    (Backoff(0.3, cap=3.0, factor=2.2), 3, 0.0, 3.0),  # 3.19 capped
    (Backoff(2.0, cap=2.0, factor=1.0), 7, 0.0, 2.0),  # a steady poll
    (Backoff(4.0, cap=30.0, jitter=0.1), 0, 1.0, 4.4),  # the most jitter adds
    (Backoff(4.0, cap=30.0, jitter=0.1), 0, -1.0, 3.6),  # the most it takes away
    (Backoff(1.0, cap=30.0, jitter=0.1), 5, 1.0, 30.0),  # jitter never passes the cap
]


@pytest.mark.parametrize(("policy", "attempt", "spread", "delay"), DELAYS)
def test_delay(policy, attempt, spread, delay):
    assert policy.delay(attempt, spread) == pytest.approx(delay)


def test_delays_stop_after_the_tries_and_stay_within_the_jitter():
    policy = Backoff(1.0, cap=8.0, jitter=0.5, tries=5)
    delays = list(policy.delays())
    assert len(delays) == 5
    for attempt, delay in enumerate(delays):
        base = min(2.0 ** attempt, 8.0)
        assert base * 0.5 <= delay <= min(base * 1.5, 8.0)
    assert list(Backoff(1.0, cap=1.0, tries=0).delays()) == []


def test_without_a_count_the_delays_go_on():
    delays = Backoff(1.0, cap=4.0).delays()
    assert [next(delays) for _ in range(6)] == [1.0, 2.0, 4.0, 4.0, 4.0, 4.0]


@pytest.mark.parametrize("arguments", [
    {"first": 0.0, "cap": 1.0},  # no wait at all
    {"first": 2.0, "cap": 1.0},  # a cap below the first delay
    {"first": 1.0, "cap": 2.0, "factor": 0.5},  # shrinking
    {"first": 1.0, "cap": 2.0, "jitter": 1.0},  # could reach zero
    {"first": 1.0, "cap": 2.0, "tries": -1},
])
def test_a_policy_that_makes_no_sense_is_refused(arguments):
    with pytest.raises(ValueError):
        Backoff(**arguments)
