"""The API process's id caches (renewed a window at a time, never serving a value older than the
TTL) and the event refs the usage API makes."""

from __future__ import annotations

import uuid

from billbridge.api.lookups import KEEP_WINDOWS, _Window
from billbridge.api.usage_ingest import event_refs


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Source:
    """A table of refs to ids that records each load, as the store would answer it."""

    def __init__(self, rows: dict[str, int]) -> None:
        self.rows = rows
        self.loads: list[list[str]] = []

    def load(self, keys: list[str]) -> dict[str, int]:
        self.loads.append(sorted(keys))
        return {key: self.rows[key] for key in keys if key in self.rows}


def test_a_window_loads_each_key_once_and_renews_the_keys_asked_for_in_one_load() -> None:
    clock, source = Clock(), Source({"a": 1, "b": 2, "c": 3})
    cache: _Window[str, int] = _Window(5.0, clock)
    assert cache.get_many(["a"], source.load) == {"a": 1}
    assert cache.get_many(["a", "b", "zz"], source.load) == {"a": 1, "b": 2}  # zz is unknown: not cached
    assert cache.get_many(["a", "b"], source.load) == {"a": 1, "b": 2}
    assert source.loads == [["a"], ["b", "zz"]]
    source.rows["a"] = 10  # the customer moved
    clock.now += 4.9
    assert cache.get_many(["a"], source.load) == {"a": 1}  # within the TTL: the value of 4.9 s ago
    clock.now += 0.1
    assert cache.get_many(["c"], source.load) == {"c": 3}
    assert source.loads[-1] == ["a", "b", "c"]  # one load for the new window, with this call's key
    assert cache.get_many(["a", "b"], source.load) == {"a": 10, "b": 2}
    assert len(source.loads) == 3


def test_a_key_not_asked_for_during_keep_windows_is_dropped() -> None:
    clock, source = Clock(), Source({"a": 1, "b": 2})
    cache: _Window[str, int] = _Window(1.0, clock)
    cache.get_many(["a", "b"], source.load)
    for _ in range(KEEP_WINDOWS):
        clock.now += 1.0
        cache.get_many(["a"], source.load)
    assert source.loads[-1] == ["a", "b"]  # b was asked for KEEP_WINDOWS windows ago: still renewed
    clock.now += 1.0
    cache.get_many(["a"], source.load)
    assert source.loads[-1] == ["a"]


def test_no_ttl_loads_every_time() -> None:
    source = Source({"a": 1})
    cache: _Window[str, int] = _Window(0, Clock())
    assert cache.get_many(["a"], source.load) == {"a": 1}
    assert cache.get_many(["a"], source.load) == {"a": 1}
    assert cache.get_many([], source.load) == {}
    assert source.loads == [["a"], ["a"]]


def test_event_refs_are_distinct_version_4_uuids_written_as_uuid_writes_them() -> None:
    refs = event_refs(2_000)
    assert len(set(refs)) == 2_000
    for ref in refs:
        parsed = uuid.UUID(ref)
        assert (parsed.version, parsed.variant, str(parsed)) == (4, uuid.RFC_4122, ref)
    assert event_refs(0) == []
