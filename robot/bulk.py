"""Many rows into one table through the driver's executemany, with SQLAlchemy's own SQL and types.

A batch of 1,000 warnings writes 4,000 rows (cases, warnings, two events each). Through
``conn.execute(insert(table), rows)`` SQLAlchemy builds every row's parameters anew
(``construct_params``) and runs each value through its type's bind processor: two fifths of the
batch's time inside SQLite's write lock, which every other writer waits for. Here the INSERT is
compiled by SQLAlchemy once per dialect, each column's bind processor is looked up once, and the
rows go to ``exec_driver_sql`` (the driver's executemany, SQLAlchemy's events and error
wrapping included) as plain tuples or dicts. The SQL and the conversions are SQLAlchemy's; only
the per-row bookkeeping is skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Table, bindparam, insert
from sqlalchemy.engine import Dialect

Processor = Callable[[Any], Any]


class _Prepared:
    __slots__ = ("converted", "names", "positional", "sql")

    def __init__(self, table: Table, columns: Sequence[str], dialect: Dialect) -> None:
        statement = insert(table).values({name: bindparam(name) for name in columns})
        compiled = statement.compile(dialect=dialect)
        self.sql = compiled.string
        self.positional = compiled.positional
        # The parameters' order in the SQL (positional drivers) or the columns' (named ones).
        order = list(compiled.positiontup or ()) if self.positional else list(columns)
        if sorted(order) != sorted(columns):
            raise ValueError(f"unexpected parameters {order} for columns {list(columns)}")
        self.names = tuple(order)
        processors: list[Processor | None] = [
            table.c[name].type.dialect_impl(dialect).bind_processor(dialect) for name in order
        ]
        # Only the columns whose type converts values are touched per row.
        self.converted = tuple(
            (i, name, processor)
            for i, (name, processor) in enumerate(zip(order, processors, strict=True))
            if processor is not None
        )


class BulkInsert:
    """``INSERT INTO table (columns) VALUES (...)`` for many rows given as mappings."""

    def __init__(self, table: Table, columns: Sequence[str]) -> None:
        self._table = table
        self._columns = tuple(columns)
        self._prepared: dict[type[Dialect], _Prepared] = {}

    def _for(self, dialect: Dialect) -> _Prepared:
        prepared = self._prepared.get(type(dialect))
        if prepared is None:
            prepared = self._prepared[type(dialect)] = _Prepared(
                self._table, self._columns, dialect
            )
        return prepared

    def execute(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        """Insert the rows (each with a value for every column) in the caller's transaction."""
        if not rows:
            return
        prepared = self._for(conn.dialect)
        names, converted = prepared.names, prepared.converted
        if prepared.positional:
            params: list[Any] = []
            for row in rows:
                values = [row[name] for name in names]
                for i, _name, processor in converted:
                    values[i] = processor(values[i])
                params.append(tuple(values))
        else:
            params = []
            for row in rows:
                bound = {name: row[name] for name in names}
                for _, name, processor in converted:
                    bound[name] = processor(bound[name])
                params.append(bound)
        conn.exec_driver_sql(prepared.sql, params)
