"""The primary's breaker, on a clock of the test's: when lookups skip it, and which one tries it
again (the files edge's side: ``tests/files/test_fallback.py``)."""

from __future__ import annotations

from pythonhosted.storage.breaker import COOLDOWN, TRIP_AFTER, Breaker


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def tripped(clock: Clock) -> Breaker:
    breaker = Breaker("primary", clock=clock)
    for _ in range(TRIP_AFTER):
        assert breaker.allows()
        breaker.failed()
    return breaker


def test_failures_in_a_row_open_it_and_an_answer_between_them_starts_the_count_again() -> None:
    breaker = Breaker("primary", clock=Clock())
    for _ in range(TRIP_AFTER - 1):
        breaker.failed()
    breaker.answered()  # a 404 is an answer too
    for _ in range(TRIP_AFTER - 1):
        breaker.failed()
    assert (breaker.is_open, breaker.allows()) == (False, True)
    breaker.failed()
    assert (breaker.is_open, breaker.allows()) == (True, False)


def test_after_the_cooldown_one_lookup_tries_the_primary_and_the_others_still_skip_it() -> None:
    clock = Clock()
    breaker = tripped(clock)
    clock.now += COOLDOWN - 0.01
    assert not breaker.allows()
    clock.now += 0.01
    assert [breaker.allows() for _ in range(3)] == [True, False, False]
    breaker.answered()
    assert (breaker.is_open, [breaker.allows() for _ in range(3)]) == (False, [True] * 3)


def test_a_failed_trial_opens_it_for_another_cooldown() -> None:
    clock = Clock()
    breaker = tripped(clock)
    clock.now += COOLDOWN
    assert breaker.allows()
    breaker.failed()
    clock.now += COOLDOWN - 0.01
    assert (breaker.is_open, breaker.allows()) == (True, False)
    clock.now += 0.01
    assert breaker.allows()


def test_a_trial_whose_client_left_leaves_the_trial_to_the_next_lookup() -> None:
    clock = Clock()
    breaker = tripped(clock)
    clock.now += COOLDOWN
    assert breaker.allows()
    breaker.abandoned()
    assert [breaker.allows() for _ in range(2)] == [True, False]
