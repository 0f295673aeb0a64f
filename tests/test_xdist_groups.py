"""`make test` sends the tests of an ``xdist_group`` to one worker, which then builds their
costly module fixtures once. pytest 9.2 with pytest-xdist 3.8 dropped the group without a
word (the tests spread over every worker, each building the fixtures: pyproject.toml pins
pytest below 9.2); this is the check that it holds."""

from __future__ import annotations

import os

import pytest


@pytest.mark.xdist_group("grouping_check")
def test_a_grouped_test_is_scheduled_as_its_group(request: pytest.FixtureRequest) -> None:
    if "PYTEST_XDIST_WORKER" not in os.environ or not request.config.getoption("loadgroup"):
        pytest.skip("only under pytest-xdist's --dist loadgroup (make test)")
    assert request.node.nodeid.endswith(
        "::test_a_grouped_test_is_scheduled_as_its_group@grouping_check"
    )


def test_long_tests_are_collected_first(request: pytest.FixtureRequest) -> None:
    """The order pytest-xdist hands tests out in: every test marked ``long`` before the rest
    (tests/conftest.py), so that none starts last on an otherwise idle worker."""
    long = [item.get_closest_marker("long") is not None for item in request.session.items]
    assert long == sorted(long, reverse=True)
