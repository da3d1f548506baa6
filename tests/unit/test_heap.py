"""GrowingRecords: full collections skip the records kept so far, and a reset frees them."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator

import pytest

from robot.heap import GrowingRecords


class _Record:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the collector can free it


@pytest.fixture(autouse=True)
def _unfrozen() -> Iterator[None]:
    yield
    gc.unfreeze()  # this is the test process: leave nothing frozen behind


def test_every_nth_record_freezes_what_survived_so_far() -> None:
    records = GrowingRecords(every=3)
    kept = [_Record() for _ in range(3)]
    before = gc.get_freeze_count()
    records.added()
    records.added()
    assert gc.get_freeze_count() == before  # not yet
    records.added()
    assert gc.get_freeze_count() > before
    # A full pass no longer walks the kept records: they are in no generation.
    walked = {id(o) for generation in range(3) for o in gc.get_objects(generation=generation)}
    assert not any(id(r) in walked for r in kept)


def test_forgetting_the_records_frees_what_was_frozen() -> None:
    records = GrowingRecords(every=1)
    record = _Record()
    gone = weakref.ref(record)
    records.added()  # frozen with the record in it
    del record
    gc.collect()
    assert gone() is not None  # a frozen cycle is not collected
    records.forgotten()
    assert gone() is None
