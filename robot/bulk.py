"""Many rows into one table at once, with SQLAlchemy's own SQL and types.

A batch of 1,000 warnings writes 4,000 rows (cases, warnings, two events each).

SQLite: through ``conn.execute(insert(table), rows)`` SQLAlchemy builds every row's parameters
anew (``construct_params``) and runs each value through its type's bind processor, a large part
of the batch's time inside SQLite's write lock, which every other writer waits for. Here the
INSERT is compiled by SQLAlchemy once, each column's bind processor is looked up once, and the
rows go to ``exec_driver_sql`` (the driver's executemany, SQLAlchemy's events and error wrapping
included) as plain tuples. The SQL and the conversions are SQLAlchemy's; only the per-row
bookkeeping is skipped.

PostgreSQL: psycopg's executemany sends one prepared INSERT per row (pipelined); its per-row
Python and the server's per-statement work made a warning cost twice what it does on SQLite.
Here the rows go as one array per column in a single statement, ``INSERT … SELECT … FROM
unnest(…) WITH ORDINALITY ORDER BY ordinality``: the rows are inserted, and take their ids, in
the order given. The arrays are sent in psycopg's binary format: its text format escapes every
element with a regular expression, which cost more than the per-row statements saved.

:class:`KeyedRead` is the read side: the rows whose key is one of many values. SQLite gets IN
lists of a few hundred values. On psycopg a long IN list is the slow way: psycopg converts a
query of more than a few kilobytes afresh on every execution (its cache only keeps short ones)
and dumps every value as a parameter of its own. There the values go as one binary array,
``key = ANY(%b)``, which PostgreSQL plans as it plans an IN list (it turns one into the other).
"""

from __future__ import annotations

import copy
import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import Column, Connection, String, Table, any_, bindparam, func, insert, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import Select
from sqlalchemy.types import TypeEngine

Processor = Callable[[Any], Any]


class _Rows:
    """A driver with positional parameters (sqlite3): the compiled INSERT, rows as tuples."""

    def __init__(self, table: Table, columns: Sequence[str], dialect: Dialect) -> None:
        statement = insert(table).values({name: bindparam(name) for name in columns})
        compiled = statement.compile(dialect=dialect)
        if not compiled.positional or sorted(compiled.positiontup or ()) != sorted(columns):
            raise ValueError(f"expected one positional parameter per column in {compiled}")
        self.sql = compiled.string
        self.names = tuple(compiled.positiontup or ())
        # Only the columns whose type converts values are touched per row.
        self.converted = [
            (i, processor)
            for i, name in enumerate(self.names)
            if (processor := _processor(table.c[name].type, dialect)) is not None
        ]

    def execute(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        names, converted = self.names, self.converted
        params: list[tuple[Any, ...]] = []
        for row in rows:
            values = [row[name] for name in names]
            for i, processor in converted:
                values[i] = processor(values[i])
            params.append(tuple(values))
        conn.exec_driver_sql(self.sql, params)


class _Plain:
    """Any other driver: SQLAlchemy's own executemany."""

    def __init__(self, table: Table, columns: Sequence[str], dialect: Dialect) -> None:
        self.columns = columns
        self.statement = insert(table)

    def execute(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        conn.execute(self.statement, [{name: row[name] for name in self.columns} for row in rows])


class _Arrays:
    """psycopg (PostgreSQL): one statement, one array parameter per column."""

    def __init__(self, table: Table, columns: Sequence[str], dialect: Dialect) -> None:
        # Prefixed names: a parameter named like a column must not look like one to SQLAlchemy.
        self.keys = [(name, f"a_{name}") for name in columns]
        arrays = [bindparam(key, type_=_array_of(table.c[name].type)) for name, key in self.keys]
        rows = func.unnest(*arrays).table_valued(*columns, with_ordinality="n").render_derived()
        ordered = select(*(rows.c[name] for name in columns)).order_by(rows.c.n)
        sql = insert(table).from_select(list(columns), ordered).compile(dialect=dialect).string
        for _, key in self.keys:
            # %b: psycopg's binary format (see the module's note). Each placeholder once.
            placeholder = f"%({key})s"
            if sql.count(placeholder) != 1:
                raise ValueError(f"expected {placeholder} once in {sql}")
            sql = sql.replace(placeholder, f"%({key})b")
        self.sql = sql
        self.processors = [
            _processor(_array_of(table.c[name].type), dialect) for name, _ in self.keys
        ]

    def execute(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        params: dict[str, Any] = {}
        for (name, key), processor in zip(self.keys, self.processors, strict=True):
            values = [row[name] for row in rows]
            params[key] = values if processor is None else processor(values)
        conn.exec_driver_sql(self.sql, params)


def _array_of(type_: TypeEngine[Any]) -> ARRAY[Any]:
    """The array parameter's type for a column of this type.

    Without a length: PostgreSQL's cast to ``varchar(n)`` cuts a longer value short, where the
    INSERT itself refuses it. One dimension: a JSON value that is a list is one element.
    """
    if isinstance(type_, String) and type_.length is not None:
        unsized = copy.copy(type_)
        unsized.length = None
        return ARRAY(unsized, dimensions=1)
    return ARRAY(type_, dimensions=1)


def _processor(type_: TypeEngine[Any], dialect: Dialect) -> Processor | None:
    """The bind processor SQLAlchemy itself would run for a value of this type."""
    processor: Processor | None = type_.dialect_impl(dialect).bind_processor(dialect)
    return processor


class BulkInsert:
    """``INSERT INTO table (columns) VALUES (...)`` for many rows given as mappings."""

    def __init__(self, table: Table, columns: Sequence[str]) -> None:
        self._table = table
        self._columns = tuple(columns)
        # Per dialect object: an engine's settings (its JSON serializer, say) live there.
        self._prepared: weakref.WeakKeyDictionary[Dialect, _Rows | _Arrays | _Plain] = (
            weakref.WeakKeyDictionary()
        )

    def execute(self, conn: Connection, rows: Sequence[Mapping[str, Any]]) -> None:
        """Insert the rows (each with a value for every column) in the caller's transaction."""
        if not rows:
            return
        dialect = conn.dialect
        prepared = self._prepared.get(dialect)
        if prepared is None:
            form: type[_Rows | _Arrays | _Plain] = _Plain
            if dialect.driver == "psycopg":
                form = _Arrays
            elif dialect.positional:
                form = _Rows
            prepared = self._prepared[dialect] = form(self._table, self._columns, dialect)
        prepared.execute(conn, rows)


#: A KeyedRead's statement for one dialect: its SQL, the key array's bind processor, and the
#: values of the parameters that carry their own.
_CompiledRead = tuple[str, Processor | None, dict[str, Any]]

#: Values per IN (...) list where the values go one parameter each (SQLite's limit is 32,766).
IN_LIST_CHUNK = 500


class KeyedRead:
    """``SELECT … WHERE <where> AND key IN (values)`` for any number of values.

    ``statement`` is the SELECT without the key's condition. Its other parameters are bound
    by name, or carry their own value (``column == "open"``). On psycopg they, and the rows that
    come back, skip SQLAlchemy's type processing: bind and read only values that need none
    (integers, strings). Elsewhere the values go in IN lists of :data:`IN_LIST_CHUNK`, so an
    ORDER BY or LIMIT holds within each list.
    """

    def __init__(self, statement: Select[Any], key: Column[Any]) -> None:
        self._key = key
        self._chunked = statement.where(key.in_(bindparam("keys", expanding=True)))
        self._array_form = statement.where(
            key == any_(bindparam("keys", type_=_array_of(key.type)))
        )
        self._compiled: weakref.WeakKeyDictionary[Dialect, _CompiledRead] = (
            weakref.WeakKeyDictionary()
        )

    def execute(
        self, conn: Connection, values: Sequence[Any], params: Mapping[str, Any] | None = None
    ) -> list[Sequence[Any]]:
        """The matching rows, read in the caller's transaction (none for no values)."""
        if not values:
            return []
        bound = dict(params or {})
        dialect = conn.dialect
        if dialect.driver != "psycopg":
            rows: list[Sequence[Any]] = []
            for i in range(0, len(values), IN_LIST_CHUNK):
                bound["keys"] = values[i : i + IN_LIST_CHUNK]
                rows.extend(conn.execute(self._chunked, bound))
            return rows
        compiled = self._compiled.get(dialect)
        if compiled is None:
            compiled = self._compiled[dialect] = self._compile(dialect)
        sql, processor, own_values = compiled
        bound = {**own_values, **bound}
        bound["keys"] = list(values) if processor is None else processor(list(values))
        return list(conn.exec_driver_sql(sql, bound))

    def _compile(self, dialect: Dialect) -> _CompiledRead:
        compiled = self._array_form.compile(dialect=dialect)
        sql = compiled.string
        if sql.count("%(keys)s") != 1:
            raise ValueError(f"expected %(keys)s once in {sql}")
        # The driver gets only what is passed to it: the values SQLAlchemy would have bound
        # itself (a literal in the statement, a LIMIT) must be passed along.
        own_values = {
            name: bind.effective_value
            for name, bind in compiled.binds.items()
            if name != "keys" and not bind.required
        }
        # %b: psycopg's binary format, as for BulkInsert's arrays.
        processor = _processor(_array_of(self._key.type), dialect)
        return sql.replace("%(keys)s", "%(keys)b"), processor, own_values
