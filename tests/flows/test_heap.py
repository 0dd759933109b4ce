"""The collector tuned for bulk runs: restored afterwards (also when nested or failing), and cyclic
garbage made during the run is still collected without being asked."""

from __future__ import annotations

import gc
import threading
import weakref

import pytest

from billbridge.flows.heap import BULK_THRESHOLDS, bulk_gc


class _Node:
    def __init__(self) -> None:
        self.me = self  # a reference cycle: only the cyclic collector frees it


def test_thresholds_are_set_for_the_run_and_restored_after_it_even_when_nested_or_failing() -> None:
    before = gc.get_threshold()
    assert before != BULK_THRESHOLDS
    with bulk_gc():
        assert gc.get_threshold() == BULK_THRESHOLDS
        with bulk_gc():
            assert gc.get_threshold() == BULK_THRESHOLDS
        assert gc.get_threshold() == BULK_THRESHOLDS  # the outer run is still going
        assert gc.get_freeze_count() > 0
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0
    with pytest.raises(RuntimeError), bulk_gc():
        raise RuntimeError("a failed page")
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0


def test_cyclic_garbage_made_during_the_run_is_collected() -> None:
    with bulk_gc():
        node = _Node()
        alive = weakref.ref(node)
        del node
        for _ in range(BULK_THRESHOLDS[0] * 3):  # enough allocations for the collector to run by itself
            _Node()
        assert alive() is None


def test_two_threads_restore_the_collector_when_the_last_one_ends() -> None:
    before = gc.get_threshold()
    inside, release = threading.Event(), threading.Event()

    def other() -> None:
        with bulk_gc():
            inside.set()
            release.wait(5)

    thread = threading.Thread(target=other)
    with bulk_gc():
        thread.start()
        assert inside.wait(5)
    assert gc.get_threshold() == BULK_THRESHOLDS  # the other thread's run still holds it
    release.set()
    thread.join(5)
    assert gc.get_threshold() == before
