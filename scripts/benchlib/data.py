"""Bulk rows for the runs: a source, cases, and attempts (due now, placed, or far in the future).

Cases and attempts are written straight into the tables: COPY on PostgreSQL, executemany on
SQLite. Every column the model gives a default gets it, so new columns with defaults need no
change here.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, Table, func, select

from robot.models import Attempt, Case, Source
from robot.sources import add_source

#: Numbers are +86 138 then 8 digits: valid Chinese mobiles, the last digit picks the callee.
PHONE_BASE = 8613800000000


def phone(i: int, last_digit: int | None = None) -> str:
    """The i-th distinct valid number; with ``last_digit``, every number ends with it."""
    if last_digit is None:
        return f"+{PHONE_BASE + i}"
    return f"+{PHONE_BASE + i * 10 + last_digit}"


def make_source(engine: Engine, name: str = "bench") -> tuple[int, str]:
    from sqlalchemy.orm import Session

    with Session(engine) as session, session.begin():
        created = add_source(session, name)
        return created.source.id, created.api_key


def _defaults(table: Table) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for column in table.columns:
        default = column.default
        if default is None or column.primary_key:
            continue
        arg = getattr(default, "arg", None)
        if getattr(default, "is_scalar", False):
            values[column.name] = arg
        elif getattr(default, "is_callable", False) and callable(arg):
            values[column.name] = arg(None)
    return values


def _storage(engine: Engine, value: Any) -> Any:
    """Values as the model's types store them (naive UTC; SQLite keeps text)."""
    if isinstance(value, datetime):
        naive = value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value
        if engine.dialect.name == "sqlite":
            return naive.strftime("%Y-%m-%d %H:%M:%S.%f")
        return naive
    if hasattr(value, "value") and isinstance(value.value, str):  # StrEnum
        return value.value
    return value


def bulk_insert(
    engine: Engine, table: Table, rows: Iterator[dict[str, Any]], columns: Sequence[str]
) -> int:
    """Insert rows fast (COPY / executemany) with the model's defaults for other columns."""
    defaults = {k: v for k, v in _defaults(table).items() if k not in columns}
    names = list(columns) + list(defaults)
    fixed = [_storage(engine, defaults[k]) for k in defaults]
    count = 0
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        quoted = ", ".join(f'"{n}"' for n in names)
        if engine.dialect.name == "postgresql":
            with cursor.copy(f'COPY "{table.name}" ({quoted}) FROM STDIN') as copy:
                for row in rows:
                    copy.write_row([_storage(engine, row[c]) for c in columns] + fixed)
                    count += 1
            raw.commit()
        else:
            marks = ", ".join("?" for _ in names)
            sql = f'INSERT INTO "{table.name}" ({quoted}) VALUES ({marks})'
            # The engine's connections are in autocommit (isolation_level None): one explicit
            # transaction for the lot.
            cursor.execute("BEGIN")
            batch: list[list[Any]] = []
            for row in rows:
                batch.append([_storage(engine, row[c]) for c in columns] + fixed)
                if len(batch) >= 20_000:
                    cursor.executemany(sql, batch)
                    count += len(batch)
                    batch = []
            if batch:
                cursor.executemany(sql, batch)
                count += len(batch)
            cursor.execute("COMMIT")
    finally:
        raw.close()
    return count


def _max_id(engine: Engine, column: Any) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.coalesce(func.max(column), 0))).scalar_one())


def insert_cases(
    engine: Engine,
    source_id: int,
    count: int,
    *,
    first_phone: int = 0,
    last_digit: int | None = None,
) -> list[tuple[int, str]]:
    """``count`` open cases nobody is due to review; returns (id, phone) in order."""
    now = datetime.now(UTC)
    start = _max_id(engine, Case.id) + 1

    def rows() -> Iterator[dict[str, Any]]:
        for i in range(count):
            number = phone(first_phone + i, last_digit)
            yield {
                "id": start + i,
                "source_id": source_id,
                "phone": number,
                "open_key": number,
                "region": "CN",
                "timezone": "Asia/Shanghai",
                "risk": "high",
                "fraud_type": "fake_police",
                "state": "open",
                "opened_at": now,
                "updated_at": now,
                "next_review_at": None,
            }

    columns = ["id", "source_id", "phone", "open_key", "region", "timezone", "risk",
               "fraud_type", "state", "opened_at", "updated_at", "next_review_at"]  # fmt: skip
    _insert(engine, Case.__table__, rows(), columns)  # type: ignore[arg-type]
    _bump_sequence(engine, "cases", start + count)
    return [(start + i, phone(first_phone + i, last_digit)) for i in range(count)]


def insert_attempts(
    engine: Engine,
    cases: Sequence[tuple[int, str]],
    *,
    due_at: datetime,
    state: str = "scheduled",
    channel: str = "call",
    per_case: int = 1,
    placed: bool = False,
) -> list[tuple[int, str, str]]:
    """Attempts for each case; returns (id, code, to) in order. ``placed`` gives each a SID."""
    start = _max_id(engine, Attempt.id) + 1
    now = datetime.now(UTC)
    made: list[tuple[int, str, str]] = []

    def rows() -> Iterator[dict[str, Any]]:
        n = 0
        for case_id, number in cases:
            for k in range(per_case):
                code = secrets.token_hex(16)
                made.append((start + n, code, number))
                yield {
                    "id": start + n,
                    "code": code,
                    "case_id": case_id,
                    "channel": channel,
                    "purpose": "warning" if k == 0 else "follow_up",
                    "to_phone": number,
                    "template": "warning_call" if channel == "call" else "warning_sms",
                    "due_at": due_at + timedelta(days=k),
                    "state": state,
                    "provider_sid": ("CA" if channel == "call" else "SM") + code
                    if placed
                    else None,
                    "placed_at": now if placed else None,
                    "created_at": now,
                }
                n += 1

    columns = ["id", "code", "case_id", "channel", "purpose", "to_phone", "template", "due_at",
               "state", "provider_sid", "placed_at", "created_at"]  # fmt: skip
    _insert(engine, Attempt.__table__, rows(), columns)  # type: ignore[arg-type]
    _bump_sequence(engine, "attempts", start + len(made))
    return made


def _insert(
    engine: Engine, table: Table, rows: Iterator[dict[str, Any]], columns: list[str]
) -> None:
    bulk_insert(engine, table, rows, columns)


def _bump_sequence(engine: Engine, table: str, next_id: int) -> None:
    if engine.dialect.name != "postgresql":
        return
    from sqlalchemy import text

    with engine.begin() as conn:
        conn.execute(
            text("SELECT setval(pg_get_serial_sequence(:t, 'id'), :v, false)"),
            {"t": table, "v": next_id},
        )


def count_rows(engine: Engine, model: Any, *where: Any) -> int:
    with engine.connect() as conn:
        query = select(func.count()).select_from(model)
        for clause in where:
            query = query.where(clause)
        return int(conn.execute(query).scalar_one())


__all__ = ["Source", "count_rows", "insert_attempts", "insert_cases", "make_source", "phone"]


def insert_far_future(
    engine: Engine, source_id: int, cases: int, per_case: int, due_at: datetime
) -> int:
    """``cases`` cases with ``per_case`` scheduled call attempts each, due at ``due_at``.

    Generated by the database itself (generate_series / a recursive CTE): a million rows take
    seconds instead of minutes of Python.
    """
    from sqlalchemy import text

    postgres = engine.dialect.name == "postgresql"
    now = _storage(engine, datetime.now(UTC))
    due = _storage(engine, due_at)
    first_case = _max_id(engine, Case.id) + 1
    first_attempt = _max_id(engine, Attempt.id) + 1
    if postgres:
        series = "SELECT g FROM generate_series(0, :n - 1) AS g"
        number = "'+' || (:base + :offset + g)::text"
        code = "md5(:salt || g::text)"
        div = "(g / :per)"
    else:
        series = "WITH RECURSIVE seq(g) AS (SELECT 0 UNION ALL SELECT g + 1 FROM seq WHERE g + 1 < :n) SELECT g FROM seq"
        number = "'+' || (:base + :offset + g)"
        code = "lower(hex(randomblob(16)))"
        div = "(g / :per)"
    salt = secrets.token_hex(4)

    def statement(table: Table, given: dict[str, str]) -> tuple[str, dict[str, Any]]:
        params: dict[str, Any] = {}
        names, exprs = list(given), list(given.values())
        for name, value in _defaults(table).items():
            if name in given:
                continue
            names.append(name)
            exprs.append(f":d_{name}")
            params[f"d_{name}"] = _storage(engine, value)
        cols = ", ".join(f'"{n}"' for n in names)
        sql = f'INSERT INTO "{table.name}" ({cols}) SELECT {", ".join(exprs)} FROM ({series}) AS s'
        return sql, params

    case_sql, case_params = statement(
        Case.__table__,  # type: ignore[arg-type]
        {
            "id": ":first + g",
            "source_id": ":source",
            "phone": number,
            "open_key": number,
            "region": "'CN'",
            "timezone": "'Asia/Shanghai'",
            "risk": "'high'",
            "fraud_type": "'fake_police'",
            "state": "'open'",
            "opened_at": ":now",
            "updated_at": ":now",
            "next_review_at": "NULL",
        },
    )
    attempt_sql, attempt_params = statement(
        Attempt.__table__,  # type: ignore[arg-type]
        {
            "id": ":first + g",
            "code": code,
            "case_id": f":first_case + {div}",
            "channel": "'call'",
            "purpose": "'follow_up'",
            "to_phone": f"'+' || (:base + :offset + {div})" + ("::text" if postgres else ""),
            "template": "'follow_up_call'",
            "due_at": ":due",
            "state": "'scheduled'",
            "created_at": ":now",
        },
    )
    offset = 50_000_000  # far from the numbers the other runs use
    with engine.begin() as conn:
        # Bulk load: the rows are consistent by construction, so skip the per-row FK triggers
        # (PostgreSQL, superuser) or checks (SQLite) for the load only.
        if postgres:
            conn.execute(text("SET LOCAL session_replication_role = replica"))
        else:
            conn.exec_driver_sql("PRAGMA defer_foreign_keys = ON")
        conn.execute(
            text(case_sql),
            {**case_params, "n": cases, "first": first_case, "source": source_id,
             "base": PHONE_BASE, "offset": offset, "now": now},
        )  # fmt: skip
        conn.execute(
            text(attempt_sql),
            {**attempt_params, "n": cases * per_case, "first": first_attempt, "per": per_case,
             "first_case": first_case, "base": PHONE_BASE, "offset": offset, "now": now,
             "due": due, **({"salt": salt} if postgres else {})},
        )  # fmt: skip
    _bump_sequence(engine, "cases", first_case + cases)
    _bump_sequence(engine, "attempts", first_attempt + cases * per_case)
    if postgres:
        # As autovacuum would soon after such a load. SQLite is left without statistics, as the
        # service leaves it (it never runs ANALYZE there; with these skewed rows it would mislead
        # the planner into table scans).
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("ANALYZE cases"))
            conn.execute(text("ANALYZE attempts"))
    return cases * per_case
