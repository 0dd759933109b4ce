"""Reading ahead keeps order, bounds how far it runs ahead, and hands errors to the consumer."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from billbridge.flows.prefetch import prefetch


def test_items_arrive_in_order_and_the_producer_stays_at_most_depth_ahead() -> None:
    produced: list[int] = []
    consumed: list[int] = []

    def pages() -> Iterator[int]:
        for i in range(10):
            produced.append(i)
            yield i

    for item in prefetch(pages(), depth=2):
        # The producer may hold `depth` in the buffer and one in hand, never more.
        assert len(produced) - len(consumed) <= 2 + 2
        consumed.append(item)
    assert consumed == list(range(10))


def test_a_producer_error_is_raised_in_the_consumer_after_the_items_before_it() -> None:
    def pages() -> Iterator[int]:
        yield 1
        yield 2
        raise ConnectionError("vendor went away")

    got: list[int] = []
    with pytest.raises(ConnectionError, match="vendor went away"):
        for item in prefetch(pages()):
            got.append(item)
    assert got == [1, 2]


def test_a_consumer_that_stops_early_stops_the_producer() -> None:
    produced: list[int] = []

    def pages() -> Iterator[int]:
        for i in range(1000):
            produced.append(i)
            yield i

    for item in prefetch(pages(), depth=1):
        if item == 3:
            break
    assert len(produced) < 10
