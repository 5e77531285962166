"""The hot reads on SQLite (a row by id, a list page) run a compiled statement's SQL on the
connection's own sqlite3 handle, and convert each column with the type processors SQLAlchemy's
Result would apply (UtcDateTime, JSON, Boolean). On SQLite, SQLAlchemy's execution context and
result objects cost four times the query itself (about 20 µs against 5 for a row by id); the SQL,
the binds and the conversions stay SQLAlchemy's own. Other dialects use SQLAlchemy's execute.

Rows are named tuples: attribute access, like SQLAlchemy's Row. Converting a row costs more than
reading it (dates are parsed from text, tags from JSON), and the same rows are read again and
again (a client polling a backup, pages of a list), so converted rows are remembered by their raw
tuple: the key is the row's whole content, so a changed row is a new key, never a stale hit.

A statement run on its own (no transaction open on the connection, as `Database.read_one` runs
it) has its result remembered too, by its SQL and binds, while the database's commit count
(store/commits.py) stays where it was when the statement ran. A client polling a backup then
costs no read of SQLite at all until something is committed, by any process; the first commit
after makes every remembered result unusable. A statement inside a transaction never uses them:
its snapshot may be older than the count."""

from __future__ import annotations

from collections import namedtuple
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Select

from bootvault.store.commits import INFO_KEY

Processor = Callable[[Any], Any] | None


@dataclass(frozen=True)
class _Prepared:
    sql: str
    binds: list[tuple[str, Processor, Any]]  # name, conversion, value when not given
    row: Callable[..., Any]
    columns: list[tuple[int, Processor]]  # the columns that need converting, by position
    kind: int  # statements selecting the same columns share a kind, and their converted rows


_PREPARED: dict[Select[Any], _Prepared] = {}  # statements are built once by their callers
_KINDS: dict[tuple[int, ...], tuple[int, Callable[..., Any]]] = {}  # selected columns -> kind, row type
_CONVERTED: dict[tuple[int, tuple[Any, ...]], Any] = {}  # (kind, raw row) -> converted row
CONVERTED_MAX = 4096  # about 6 MiB of backup rows; the memo starts over when full
_RESULTS: dict[tuple[Any, ...], tuple[int, list[Any]]] = {}  # (its count, sql, *binds) -> (count, rows)
RESULTS_MAX = 4096  # the results share their rows with _CONVERTED


def _prepare(conn: Connection, stmt: Select[Any]) -> _Prepared:
    dialect = conn.dialect
    compiled = stmt.compile(dialect=dialect)
    binds: list[tuple[str, Processor, Any]] = []
    for name in compiled.positiontup or []:
        bind = compiled.binds[name]
        binds.append((name, bind.type.dialect_impl(dialect).bind_processor(dialect), bind.effective_value))
    cols = list(stmt.selected_columns)
    procs = [c.type.dialect_impl(dialect).result_processor(dialect, None) for c in cols]
    selected = tuple(id(c) for c in cols)  # table columns live as long as the process
    if selected not in _KINDS:
        _KINDS[selected] = len(_KINDS), namedtuple("Row", [c.name for c in cols])._make  # type: ignore[attr-defined]
    kind, make = _KINDS[selected]
    return _Prepared(
        sql=compiled.string,
        binds=binds,
        row=make,
        columns=[(i, p) for i, p in enumerate(procs) if p is not None],
        kind=kind,
    )


def rows(conn: Connection, stmt: Select[Any], params: dict[str, Any]) -> list[Any]:
    """All rows of `stmt` with `params` (bind parameter name -> value)."""
    if conn.dialect.name != "sqlite":
        return list(conn.execute(stmt, params))
    prepared = _PREPARED.get(stmt)
    if prepared is None:
        prepared = _PREPARED[stmt] = _prepare(conn, stmt)
    values = []
    for name, proc, default in prepared.binds:
        value = params.get(name, default)
        values.append(value if proc is None else proc(value))
    driver = conn.connection.driver_connection
    commits = None if driver.in_transaction else conn.info.get(INFO_KEY)  # type: ignore[union-attr]
    if commits is None:
        return _fetch(driver, prepared, values)
    before = commits.now()
    if before % 2:  # a commit is under way
        return _fetch(driver, prepared, values)
    key = (commits, prepared.sql, *values)  # commits: one database's results
    hit = _RESULTS.get(key)
    if hit is not None and hit[0] == before:
        return list(hit[1])
    out = _fetch(driver, prepared, values)
    if commits.now() == before:  # no commit while the statement ran: its result is the database's
        if len(_RESULTS) >= RESULTS_MAX:
            _RESULTS.clear()
        _RESULTS[key] = before, out
    return list(out)


def _fetch(driver: Any, prepared: _Prepared, values: list[Any]) -> list[Any]:
    cursor = driver.execute(prepared.sql, values)
    out = []
    kind = prepared.kind
    for raw in cursor.fetchall():
        row = _CONVERTED.get((kind, raw))
        if row is None:
            row = _convert(prepared, raw)
        out.append(row)
    return out


def _convert(prepared: _Prepared, raw: tuple[Any, ...]) -> Any:
    values = list(raw)
    for i, proc in prepared.columns:
        values[i] = proc(values[i])  # type: ignore[misc]
    row = prepared.row(values)
    if len(_CONVERTED) >= CONVERTED_MAX:
        _CONVERTED.clear()
    _CONVERTED[prepared.kind, raw] = row
    return row


def first(conn: Connection, stmt: Select[Any], params: dict[str, Any]) -> Any | None:
    found = rows(conn, stmt, params)
    return found[0] if found else None
