"""SQLite's group commit of status callbacks: shared transactions, and one fault kept apart."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.exc import OperationalError

from robot.webhooks.group import StatusGroup


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[Engine]:
    engine = create_engine(f"sqlite:///{tmp_path / 'group.db'}")
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE written (name TEXT PRIMARY KEY)"))
    yield engine
    engine.dispose()


def insert(name: str) -> Callable[[Connection], bool]:
    def write(conn: Connection) -> bool:
        conn.execute(text("INSERT INTO written (name) VALUES (:name)"), {"name": name})
        return name.startswith("wake")

    return write


def written(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.scalars(text("SELECT name FROM written")))


def run_behind_a_leader(
    engine: Engine,
    group: StatusGroup,
    writes: list[Callable[[Connection], bool]],
    before_release: Callable[[], None] = lambda: None,
) -> tuple[dict[int, BaseException | bool], int]:
    """Queue ``writes`` while a leader is writing; their results (or errors) and transactions."""
    writing, release = threading.Event(), threading.Event()

    def leader(conn: Connection) -> bool:
        writing.set()
        assert release.wait(10)
        return False

    first = threading.Thread(target=group.apply, args=(leader,))
    first.start()
    assert writing.wait(10)
    outcomes: dict[int, BaseException | bool] = {}
    begins: list[object] = []

    def run(index: int, write: Callable[[Connection], bool]) -> None:
        try:
            outcomes[index] = group.apply(write)
        except BaseException as exc:  # the leader re-raises an interrupt in its own thread
            outcomes[index] = exc

    threads = [threading.Thread(target=run, args=item) for item in enumerate(writes)]
    for thread in threads:
        thread.start()
    deadline = time.monotonic() + 10
    while group.queued < len(writes) and time.monotonic() < deadline:
        time.sleep(0.002)
    assert group.queued == len(writes)
    assert outcomes == {}  # nobody is answered before a commit

    def count(conn: object) -> None:
        begins.append(conn)

    event.listen(engine, "begin", count)
    try:
        before_release()
        release.set()
        first.join(10)
        for thread in threads:
            thread.join(10)
    finally:
        event.remove(engine, "begin", count)
    return outcomes, len(begins)


def test_writes_queued_behind_a_write_share_one_transaction(engine: Engine) -> None:
    group = StatusGroup(engine)
    outcomes, transactions = run_behind_a_leader(
        engine, group, [insert("wake-a"), insert("b"), insert("wake-c")]
    )
    assert outcomes == {0: True, 1: False, 2: True}  # each its own answer
    assert transactions == 1
    assert written(engine) == {"wake-a", "b", "wake-c"}
    assert group.queued == 0


def test_a_failing_write_fails_alone_and_the_others_are_committed(engine: Engine) -> None:
    group = StatusGroup(engine)
    # "b" twice: the second breaks the group's transaction (a unique violation), and alone
    # after the first it breaks again; everyone else's write must still land.
    outcomes, transactions = run_behind_a_leader(
        engine, group, [insert("a"), insert("b"), insert("b"), insert("wake-d")]
    )
    errors = [index for index, outcome in outcomes.items() if isinstance(outcome, Exception)]
    assert len(errors) == 1
    assert {outcomes[i] for i in range(4) if i not in errors} == {False, True}
    assert written(engine) == {"a", "b", "wake-d"}
    assert transactions == 1 + 4  # the failed group, then each on its own


def test_a_write_alone_is_committed_at_once(engine: Engine) -> None:
    group = StatusGroup(engine)
    assert group.apply(insert("wake-alone")) is True
    assert written(engine) == {"wake-alone"}
    with pytest.raises(Exception, match="UNIQUE"):
        group.apply(insert("wake-alone"))
    assert group.apply(insert("after")) is False  # the group is not stuck after an error


def test_an_interrupted_leader_leaves_no_one_believing_their_write_landed(engine: Engine) -> None:
    def interrupt(conn: Connection) -> bool:
        raise KeyboardInterrupt

    group = StatusGroup(engine)
    outcomes, _ = run_behind_a_leader(engine, group, [insert("a"), interrupt, insert("c")])
    # The leader's thread carries the interrupt; everyone else is told their write failed.
    assert sum(isinstance(o, KeyboardInterrupt) for o in outcomes.values()) == 1
    others = [o for o in outcomes.values() if not isinstance(o, KeyboardInterrupt)]
    assert len(others) == 2
    assert all(isinstance(o, RuntimeError) and "interrupted" in str(o) for o in others)
    assert written(engine) == set()  # rolled back, and nobody was answered "written"
    assert group.apply(insert("after")) is False


def test_when_the_transaction_cannot_begin_every_member_gets_that_error_at_once(
    engine: Engine,
) -> None:
    refuse = threading.Event()
    tries: list[Connection] = []

    def busy(conn: Connection) -> None:
        if refuse.is_set():
            tries.append(conn)
            raise OperationalError("BEGIN IMMEDIATE", {}, Exception("database is locked"))

    event.listen(engine, "begin", busy)
    group = StatusGroup(engine)
    writes = [insert("a"), insert("b"), insert("c")]
    try:
        outcomes, _ = run_behind_a_leader(engine, group, writes, before_release=refuse.set)
    finally:
        event.remove(engine, "begin", busy)
    assert all(isinstance(o, OperationalError) for o in outcomes.values()), outcomes
    # One try for the group, not one more for each of its members (each would wait as long).
    assert len(tries) == 1
    assert written(engine) == set()
