"""Multi-row INSERTs for the rows a worker writes on every run, without the ORM's cost per value.

`QuerySet.bulk_create` prepares every value through its field and, on PostgreSQL, sends each
column as a text array that psycopg quotes character by character in Python (JSON columns are
all quotes). In a drain that was half of a worker's CPU per run (benchmarks/drain_profile.py).
Here a model's INSERT is written once per (model, conflict clause): each column goes as one
binary array (`INSERT … SELECT * FROM unnest(%b::type[], …) RETURNING id`), values are read
straight off the instances, and the statement's text never changes, so psycopg keeps it
parsed and PostgreSQL keeps it prepared. A single row goes as scalars (`VALUES (%b::type, …)`).
On SQLite this is `bulk_create` itself.

It takes what the hot path and the bulk services write: new instances of models with an
integer pk (none set yet) or a pk each instance makes for itself (a uuid4), whose database
defaults, if any, are plain values, or (`bulk_insert_values`) the same rows as dicts of their
columns' values, with no instance made at all. Anything else goes to `bulk_create`, which stays
the general tool.
"""

import enum
import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from operator import attrgetter
from typing import Any, TypeVar

import psycopg
from django.conf import settings
from django.db import connection, models
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Value
from django.db.models.expressions import DatabaseDefault

M = TypeVar("M", bound=models.Model)
_TYPMOD = re.compile(r"\(.*?\)")


# How one column's values are read off the instances (one comprehension per column).
_ColumnReader = Callable[[Sequence[models.Model]], list]


@dataclass(frozen=True)
class _Statement:
    columns: tuple[_ColumnReader, ...]
    sql: str
    one_row_sql: str  # (VALUES: one row's values go as scalars, cheaper to dump than one-element arrays)
    pk_from_database: bool  # an auto-incremented pk (else each instance holds its own: a uuid4)


_STATEMENTS: dict[tuple, _Statement | None] = {}
# Rows a statement for the bulk services (thousands of records at once): a few MB of arrays.
BULK_BATCH = 5000


def bulk_insert(objs: Sequence[M], *, ignore_conflicts: bool = False, match_on: Sequence[str] = (),
                unique_fields: Sequence[str] = (), update_fields: Sequence[str] = (),
                batch_size: int | None = None) -> list[M]:
    """Insert `objs` (one model) in one statement and give each its pk, as `bulk_create` does.

    `ignore_conflicts`: rows the unique constraints refuse are left out and keep no pk (as with
    `bulk_create`); with `match_on` (attnames that tell the rows apart) the rows made get their
    pk: on PostgreSQL from the INSERT itself, elsewhere from one SELECT of the rows holding
    those values. `unique_fields` + `update_fields`: ON CONFLICT (unique) DO UPDATE those
    fields; every row gets the pk of the row it inserted or updated. `batch_size`: at most that
    many rows a statement."""
    if not objs:
        return list(objs)
    if batch_size is not None and len(objs) > batch_size:
        return [obj for start in range(0, len(objs), batch_size) for obj in bulk_insert(
            objs[start:start + batch_size], ignore_conflicts=ignore_conflicts, match_on=match_on,
            unique_fields=unique_fields, update_fields=update_fields)]
    model = type(objs[0])
    if ignore_conflicts and update_fields:
        raise ValueError("ignore_conflicts and update_fields exclude each other")
    if match_on and not ignore_conflicts:
        raise ValueError("match_on is for ignore_conflicts: otherwise every row gets its pk")
    statement = _statement(model, ignore_conflicts, tuple(match_on), tuple(unique_fields), tuple(update_fields))
    if statement is None or (statement.pk_from_database and any(obj.pk is not None for obj in objs)):
        made = model._default_manager.bulk_create(
            objs, ignore_conflicts=ignore_conflicts, update_conflicts=bool(update_fields),
            unique_fields=unique_fields or None, update_fields=update_fields or None)
        if match_on:
            rows = model._default_manager.filter(**{f"{name}__in": {getattr(obj, name) for obj in objs}
                                                    for name in match_on}).values_list("pk", *match_on)
            _match(objs, match_on, rows)
        return made
    returned = _run(statement, objs)
    if match_on:
        _match(objs, match_on, returned)
    elif not ignore_conflicts:  # one row back per row sent, in order
        for obj, (pk,) in zip(objs, returned, strict=True):
            obj.pk = pk
    for obj in objs:
        obj._state.adding = False
        obj._state.db = connection.alias
    return list(objs)


def bulk_insert_values(model: type[models.Model], rows: Sequence[dict[str, Any]], *,
                       unique_fields: Sequence[str] = (), update_fields: Sequence[str] = (),
                       batch_size: int | None = None) -> list[int]:
    """`bulk_insert` for rows given as {attname: value}, every row with the same columns: returns
    their pks, in order. A column may be left out where the database fills it as the ORM would
    (it has a database default, or it is nullable with no default of its own: NULL). On
    PostgreSQL no model instance is made (a worker writes several rows a run this way and has
    no use for the objects); elsewhere the rows become instances for `bulk_create`. `batch_size`:
    at most that many rows a statement."""
    if not rows:
        return []
    if batch_size is not None and len(rows) > batch_size:
        return [pk for start in range(0, len(rows), batch_size) for pk in bulk_insert_values(
            model, rows[start:start + batch_size], unique_fields=unique_fields, update_fields=update_fields)]
    statement = _statement(model, False, (), tuple(unique_fields), tuple(update_fields), frozenset(rows[0]))
    if statement is None:  # (a statement reads only the columns the rows hold)
        objs = bulk_insert([model(**row) for row in rows], unique_fields=unique_fields, update_fields=update_fields)
        return [obj.pk for obj in objs]
    return [pk for (pk,) in _run(statement, [_Values(row) for row in rows])]


class _Values:
    """A row's values as attributes, for the column readers (which read instances)."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__ = values


def _run(statement: _Statement, objs: Sequence[Any]) -> list[tuple[Any, ...]]:
    """Execute the INSERT for these rows (one row: scalars; more: one array per column)."""
    arrays = [values_of(objs) for values_of in statement.columns]
    with server_bound_cursor(connection) as cursor:
        if len(objs) == 1:
            cursor.execute(statement.one_row_sql, [values[0] for values in arrays])
        else:
            cursor.execute(statement.sql, arrays)
        return cursor.fetchall()


def server_bound_cursor(connection: BaseDatabaseWrapper, kind: type[psycopg.Cursor] = psycopg.Cursor) -> Any:
    """A Django cursor (execute wrappers, query log, error translation) over a psycopg cursor that
    binds its parameters on the server: Django's own binds on the client, quoting each value
    in Python, which costs most for JSON. PostgreSQL only. Its statement is not prepared
    (Django turns psycopg's prepared statements off) unless it is a `prepared_cursor`."""
    connection.ensure_connection()
    with connection.wrap_database_errors:
        return connection._prepare_cursor(kind(connection.connection))  # type: ignore[attr-defined]


class _PreparingCursor(psycopg.Cursor):
    """Asks PostgreSQL to keep every statement it runs prepared on its connection (psycopg names
    it on first use and sends only the name and the values after)."""

    def execute(self, query: Any, params: Any = None, *, prepare: bool | None = None,
                binary: bool | None = None) -> Any:
        super().execute(query, params, prepare=True if prepare is None else prepare, binary=binary)
        if self._query is None and isinstance(query, str):
            # psycopg keeps no text of a prepared statement, where Django's query log (and
            # CaptureQueriesContext) reads it: the statement as written, its placeholders in.
            self._query = _Written(query.encode())  # type: ignore[assignment]
        return self


@dataclass(frozen=True)
class _Written:
    query: bytes


def prepared_cursor(connection: BaseDatabaseWrapper) -> Any:
    """`bound_cursor`, and on PostgreSQL its statements are prepared once per connection. For the
    looks between a drain's start and its runs' creation (the organization's pick, the events'
    claim, the candidate workflows, the stages, the records), which PostgreSQL otherwise parses
    and plans on every call: their planning was the larger part of the server's time in a
    single change's drain. Preparing them took 1.6–2.3 ms off those two hops in two interleaved
    comparisons (benchmarks/README.md, "Prepared statements"). Not the run's own statements:
    prepared too, they made its hop slower in two comparisons of three (a generic plan is not
    always the one PostgreSQL would have chosen for the values). Django's own statements and
    the batch INSERTs, whose text changes with their number of rows, stay unprepared.

    `DB_PREPARED_STATEMENTS=0` turns it off, for a PgBouncer in transaction mode that cannot
    keep a statement prepared (before 1.21, or without `max_prepared_statements`)."""
    if connection.vendor != "postgresql":
        return connection.cursor()
    if not settings.DB_PREPARED_STATEMENTS:
        return server_bound_cursor(connection)
    cursor = server_bound_cursor(connection, _PreparingCursor)
    if connection.connection.prepare_threshold is None:  # Django's default; psycopg then ignores prepare=True too
        connection.connection.prepare_threshold = _ONLY_WHEN_ASKED
    return cursor


# A threshold no statement reaches: psycopg prepares what a cursor asks it to, and nothing by count.
_ONLY_WHEN_ASKED = 2**62


def bound_cursor(connection: BaseDatabaseWrapper) -> Any:
    """`server_bound_cursor` on PostgreSQL, Django's own cursor elsewhere: for a hand-written
    statement that runs on every save or every claim."""
    return server_bound_cursor(connection) if connection.vendor == "postgresql" else connection.cursor()


def _match(objs: Sequence[models.Model], match_on: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Give each object the pk of the row (pk, *match_on values) that holds its values."""
    pks = {tuple(row[1:]): row[0] for row in rows}
    key = attrgetter(*match_on) if len(match_on) > 1 else lambda obj: (getattr(obj, match_on[0]),)
    for obj in objs:
        obj.pk = pks.get(tuple(v.value if isinstance(v, enum.Enum) else v for v in key(obj)))


def _statement(model: type[models.Model], ignore: bool, match: tuple[str, ...], unique: tuple[str, ...],
               update: tuple[str, ...], given: frozenset[str] | None = None) -> _Statement | None:
    key = (model, ignore, match, unique, update, given)
    if key not in _STATEMENTS:
        _STATEMENTS[key] = _write_statement(model, ignore, match, unique, update, given) \
            if connection.vendor == "postgresql" else None
    return _STATEMENTS[key]


def _write_statement(model: type[models.Model], ignore: bool, match: tuple[str, ...], unique: tuple[str, ...],
                     update: tuple[str, ...], given: frozenset[str] | None = None) -> _Statement | None:
    """`given` (rows as dicts): the attnames the rows hold; the other columns are left to the
    database, if it fills them as the ORM would (None: no statement)."""
    meta = model._meta
    pk_from_database = isinstance(meta.pk, models.AutoField)
    if not pk_from_database and not (meta.pk is not None and callable(meta.pk.default)):
        return None  # a pk neither generated by the database nor by Python (uuid4) on each instance
    fields = [f for f in meta.concrete_fields if not (f.primary_key and pk_from_database)
              and not getattr(f, "generated", False)]
    if given is not None:
        if not all(f.attname in given or _filled_by_database(f) for f in fields):
            return None
        fields = [f for f in fields if f.attname in given]
    readers = [_reader(f) for f in fields]
    if any(read is None for read in readers):
        return None
    columns = tuple(read for read in readers if read is not None)
    quote = connection.ops.quote_name
    # No length in the cast (varchar, not varchar(40)): an explicit cast would cut a long value,
    # where the INSERT's own assignment refuses it, as the ORM's statement does.
    types = [_TYPMOD.sub("", f.db_type(connection) or "") for f in fields]
    into = f"INSERT INTO {quote(meta.db_table)} ({', '.join(quote(f.column) for f in fields)})"
    tail = ""
    if ignore:
        tail = " ON CONFLICT DO NOTHING"
    elif update:
        targets = ", ".join(quote(_column(meta, name)) for name in unique)
        sets = ", ".join(f"{quote(c)} = EXCLUDED.{quote(c)}" for c in (_column(meta, n) for n in update))
        tail = f" ON CONFLICT ({targets}) DO UPDATE SET {sets}"
    returning = ", ".join(quote(c) for c in (meta.pk.column, *(_column(meta, name) for name in match)))
    tail += f" RETURNING {returning}"
    return _Statement(columns,
                      f"{into} SELECT * FROM unnest({', '.join(f'%b::{t}[]' for t in types)}){tail}",
                      f"{into} VALUES ({', '.join(f'%b::{t}' for t in types)}){tail}", pk_from_database)


def _filled_by_database(field: models.Field) -> bool:
    """Whether leaving the column out of an INSERT gives what the ORM would write for a row that
    does not set it: its database default, or NULL for a nullable column with no default."""
    if field.has_db_default():  # type: ignore[attr-defined]  # (Django 5; the stubs lag)
        return True
    return field.null and not field.has_default()


def _column(meta: Any, name: str) -> str:
    field = meta.get_field(name)
    assert isinstance(field, models.Field) and field.column, f"{name} is not a column"
    return field.column


def _reader(field: models.Field) -> _ColumnReader | None:
    """How a column's values are read off the instances, decided once per field (None: leave the
    model to bulk_create). One comprehension per column: no Python call per value."""
    get = attrgetter(field.attname)
    if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
        return lambda objs: [field.pre_save(obj, True) for obj in objs]
    default: Any = DatabaseDefault  # a value no instance holds: no database default to stand in for
    if field.has_db_default():  # type: ignore[attr-defined]  # (Django 5; the stubs lag)
        default = field.db_default  # an instance not given the field holds DatabaseDefault()
        if hasattr(default, "resolve_expression"):
            if not isinstance(default, Value):  # a database expression: bulk_create writes it
                return None
            default = default.value
    if isinstance(field, models.JSONField):
        # As text, cast to jsonb by the statement; None is SQL NULL, as the ORM stores it.
        encoder = field.encoder
        if default is not DatabaseDefault:
            return None
        return lambda objs: [None if v is None else json.dumps(v, cls=encoder) for v in map(get, objs)]
    if default is DatabaseDefault:
        return lambda objs: [v.value if isinstance(v, enum.Enum) else v for v in map(get, objs)]
    return lambda objs: [default if isinstance(v, DatabaseDefault) else v.value if isinstance(v, enum.Enum) else v
                         for v in map(get, objs)]
