"""A query the worker asks on every drain, built and compiled by the ORM once per process.

Django builds and compiles a queryset each time it is evaluated. For the looks a drain makes
whatever happens that is most of their cost: the candidate workflows of an event (three joins)
took 2.3 ms to build and compile and 2.2 ms to turn into objects against 0.4 ms for PostgreSQL
to run it, and a single change's drain asks ten such questions. Here the queryset is built once
with stand-in values for what changes between calls (the time, an id, a list of ids); its SQL,
how to convert its columns and how to make its objects are kept, and each call puts the real
values where the stand-ins are in the parameters.

    _DEALS = CompiledQuery(lambda ids: Deal.objects.filter(pk__in=ids).select_related("stage"), ids=list[UUID])
    deals = _DEALS.models(ids=[...])          # as list(queryset) would give them
    _SEEN = CompiledUpdate(lambda pk, now: (Run.objects.filter(pk=pk), {"seen_at": now}), pk=int, now=datetime)
    _SEEN.run(pk=7, now=timezone.now())       # as queryset.update(...) would, the number of rows

Arguments are datetimes, dates, ints, strings or UUIDs, or lists of ints, strings or UUIDs used
as `__in` filters (an empty list matches nothing; a list is padded to a power of two by repeating
its last value, so a few statements serve every length). A
value that changes the statement's shape (None, a field name) cannot be an argument: make one
CompiledQuery per shape.
"""

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from itertools import product
from typing import Any, TypeVar, get_args, get_origin
from uuid import NAMESPACE_OID, UUID, uuid5

from django.db import connection, connections, transaction
from django.db.models import Model, QuerySet
from django.db.models.query import get_related_populators  # type: ignore[attr-defined]  # (not in the stubs)
from django.db.models.sql import UpdateQuery

from crm_automation.bulk_insert import bound_cursor, prepared_cursor

M = TypeVar("M", bound=Model)
_MADE: list["CompiledQuery"] = []  # every one made (they are module constants): what warm_up() compiles


def updated_rows(model: type[M], update: str, params: list[Any], *, using: str, only: Any = None,
                 prepared: bool = False) -> list[M]:
    """Run a hand-written `UPDATE` of the model's table and return the rows it changed as objects
    (RETURNING every column; PostgreSQL, and SQLite since 3.35): a claim and the read of what it
    claimed in one round trip. `only`: of the rows changed, make an object of the one with this
    pk alone (a statement that also settled another row, say).

    Not `Manager.raw()`: it works out which column is which field on every call, and that was
    a fifth of a worker's CPU per email (benchmarks/drain_profile.py). `prepared`: PostgreSQL
    keeps the statement prepared (bulk_insert.prepared_cursor)."""
    connection = connections[using]
    shape = _RETURNING.get((model, connection.vendor))
    if shape is None:
        shape = _RETURNING[model, connection.vendor] = _returning(model, connection)
    sql, attnames, pk_at, converters = shape
    with prepared_cursor(connection) if prepared else bound_cursor(connection) as cursor:
        cursor.execute(f"{update} RETURNING {sql}", params)
        rows = [list(row) for row in cursor.fetchall() if only is None or row[pk_at] == only]
    return [model.from_db(using, attnames, row) for row in _converted(rows, converters, connection)]


def _converted(rows: list[list[Any]], converters: list[tuple[int, tuple[list[Any], Any]]],
               connection: Any) -> list[list[Any]]:
    """The rows (changed in place) with each column's converters applied, as a query's compiler
    applies them: the database's values as Python's."""
    for row in rows:
        for position, (functions, expression) in converters:
            value = row[position]
            for convert in functions:
                value = convert(value, expression, connection)
            row[position] = value
    return rows


# (model, vendor) → the RETURNING list (every column, in the order `Model.from_db` takes them), its
# attnames, where the pk is in it, and the columns' converters from the database's values to
# Python's (as a query's compiler applies them).
_Shape = tuple[str, list[str], int, list[tuple[int, tuple[list[Any], Any]]]]
_RETURNING: dict[tuple[type[Model], str], _Shape] = {}


def _returning(model: type[Model], connection: Any) -> _Shape:
    meta = model._meta
    fields = list(meta.concrete_fields)
    compiler = model._default_manager.none().query.get_compiler(connection=connection)
    converters = compiler.get_converters([f.get_col(meta.db_table) for f in fields])
    return (", ".join(connection.ops.quote_name(f.column) for f in fields), [f.attname for f in fields],
            fields.index(meta.pk), list(converters.items()))


def warm_up() -> int:
    """Compile every query made so far as a single change asks it (lists of one, two or four
    items: an event's kinds of trigger are up to four): a worker calls this when it starts, so
    its first change does not pay for compiling. Returns how many statements it compiled.

    In a transaction, as they run: Django refuses to compile a SELECT … FOR UPDATE (the record
    locks) in autocommit, and a worker's watchdog thread calls this in autocommit. (Nothing is
    sent to the database: the transaction has no statement, and its commit none either.)"""
    compiled = 0
    with transaction.atomic():
        for query in list(_MADE):
            for lengths in product((1, 2, 4), repeat=len(query._lists)):
                query._for({name: [None] * length for name, length in zip(query._lists, lengths, strict=True)})
                compiled += 1
    return compiled


# Values no call passes, the i-th of a query's stand-ins: a parameter equal to one of them is
# where that argument goes.
_STAND_INS: dict[type, Callable[[int], Any]] = {
    datetime: lambda i: datetime(2001, 2, 3, 4, 5, 6, 789012, tzinfo=UTC) - timedelta(microseconds=i),
    date: lambda i: date(1901, 2, 3) + timedelta(days=i),
    int: lambda i: -7_654_321_987 - i,
    str: lambda i: f"\x00stand-in #{i}",
    UUID: lambda i: uuid5(NAMESPACE_OID, f"stand-in #{i}"),
}


@dataclass(frozen=True)
class _Compiled:
    sql: str
    params: list[Any]
    slots: dict[int, tuple[str, int]]  # parameter index → (argument, index in its list or -1)
    converters: list[tuple[int, tuple[list[Any], Any]]]  # column → (converters, expression)
    model: type[Model] | None = None  # what `models()` makes, and how
    model_slice: tuple[int, int] = (0, 0)
    init_list: tuple[str, ...] = ()
    populators: tuple[Any, ...] = ()
    annotations: tuple[tuple[str, int], ...] = ()


class CompiledQuery:
    """`CompiledQuery(build, **types)` where `build(**stand_ins)` returns the queryset."""

    def __init__(self, build: Callable[..., Any], *, prepared: bool = False, **types: Any) -> None:
        """`prepared`: PostgreSQL keeps the statement prepared (bulk_insert.prepared_cursor)."""
        self._build = build
        self._prepared = prepared
        self._types = types
        self._lists = sorted(name for name, kind in types.items() if get_origin(kind) is list)
        self._compiled: dict[tuple[str, tuple[int, ...]], _Compiled] = {}
        _MADE.append(self)

    def sql(self, **values: Any) -> tuple[str, list[Any]]:
        """(sql, params) with the values in place."""
        values = self._unique(values)
        compiled = self._for(values)
        return compiled.sql, self._params(compiled, values)

    def rows(self, **values: Any) -> list[tuple[Any, ...]]:
        """The rows as `values_list()` gives them (each column converted by its field)."""
        values = self._unique(values)
        if self._empty(values):
            return []
        compiled = self._for(values)
        return [tuple(row) for row in self._fetch(compiled, values)]

    def models(self, **values: Any) -> list[Any]:
        """The objects as iterating the queryset gives them (select_related ones attached)."""
        values = self._unique(values)
        if self._empty(values):
            return []
        compiled = self._for(values)
        assert compiled.model is not None, "models() needs a queryset of objects, not of values"
        start, end = compiled.model_slice
        made = []
        for row in self._fetch(compiled, values):
            obj = compiled.model.from_db(connection.alias, list(compiled.init_list), row[start:end])
            for populator in compiled.populators:
                populator.populate(row, obj)
            for name, position in compiled.annotations:
                setattr(obj, name, row[position])
            made.append(obj)
        return made

    # --- compiling -------------------------------------------------------------------------------
    def _for(self, values: dict[str, Any]) -> _Compiled:
        key = (connection.vendor, tuple(len(values[name]) for name in self._lists))  # (tests switch databases)
        compiled = self._compiled.get(key)
        if compiled is None:
            compiled = self._compiled[key] = self._compile(dict(zip(self._lists, key[1], strict=True)))
        return compiled

    def _stand_ins(self, lengths: dict[str, int]) -> dict[str, Any]:
        stand_ins: dict[str, Any] = {}
        made = 0  # every stand-in of the query differs from the others
        for name, kind in self._types.items():
            if name in lengths:
                (element,) = get_args(kind)
                stand_ins[name] = [_STAND_INS[element](made + i) for i in range(lengths[name])]
                made += lengths[name]
            else:
                stand_ins[name] = _STAND_INS[kind](made)
                made += 1
        return stand_ins

    def _statement(self, stand_ins: dict[str, Any]) -> Any:
        """The compiler of the built queryset."""
        queryset: QuerySet[Any] = self._build(**stand_ins)
        return queryset.query.get_compiler(connection=connection)

    def _compile(self, lengths: dict[str, int]) -> _Compiled:
        stand_ins = self._stand_ins(lengths)
        compiler = self._statement(stand_ins)
        sql, params = compiler.as_sql()
        where: dict[Any, tuple[str, int]] = {}
        for name, value in stand_ins.items():
            if name in lengths:
                where.update({self._adapt(item): (name, i) for i, item in enumerate(value)})
            else:
                where[self._adapt(value)] = (name, -1)
        slots = {i: where[param] for i, param in enumerate(params) if _hashable(param) and param in where}
        missing = set(stand_ins) - {name for name, _ in slots.values()}
        if missing:
            raise ValueError(f"the query does not use {sorted(missing)}")
        return self._described(compiler, sql, list(params), slots)

    @staticmethod
    def _described(compiler: Any, sql: str, params: list[Any], slots: dict[int, tuple[str, int]]) -> _Compiled:
        select = getattr(compiler, "select", None)
        if not select:  # (an UPDATE)
            return _Compiled(sql, params, slots, [])
        converters = list(compiler.get_converters([column for column, *_ in select[:compiler.col_count]]).items())
        klass_info = compiler.klass_info
        if not klass_info:  # values() / values_list()
            return _Compiled(sql, params, slots, converters)
        fields = klass_info["select_fields"]
        start, end = fields[0], fields[-1] + 1
        return _Compiled(
            sql, params, slots, converters, model=klass_info["model"], model_slice=(start, end),
            init_list=tuple(column.target.attname for column, *_ in select[start:end]),
            populators=tuple(get_related_populators(klass_info, select, connection.alias)),
            annotations=tuple((compiler.annotation_col_map or {}).items()))

    # --- calling ---------------------------------------------------------------------------------
    def _unique(self, values: dict[str, Any]) -> dict[str, Any]:
        missing = set(self._types) - set(values)
        if missing:
            raise TypeError(f"missing arguments: {sorted(missing)}")
        return {name: _padded(list(dict.fromkeys(value))) if name in self._lists else value
                for name, value in values.items()}

    def _empty(self, values: dict[str, Any]) -> bool:
        return any(not values[name] for name in self._lists)

    def _params(self, compiled: _Compiled, values: dict[str, Any]) -> list[Any]:
        params = list(compiled.params)
        for index, (name, item) in compiled.slots.items():
            params[index] = self._adapt(values[name] if item < 0 else values[name][item])
        return params

    def _fetch(self, compiled: _Compiled, values: dict[str, Any]) -> list[list[Any]]:
        with prepared_cursor(connection) if self._prepared else connection.cursor() as cursor:
            cursor.execute(compiled.sql, self._params(compiled, values))
            rows = [list(row) for row in cursor.fetchall()]
        return _converted(rows, compiled.converters, connection)

    @staticmethod
    def _adapt(value: Any) -> Any:
        """As the ORM passes it: SQLite takes datetimes and dates as text, UUIDs as hex."""
        if isinstance(value, datetime):
            return connection.ops.adapt_datetimefield_value(value)
        if isinstance(value, date):
            return connection.ops.adapt_datefield_value(value)
        if isinstance(value, UUID) and not connection.features.has_native_uuid_field:
            return value.hex
        return value


class CompiledUpdate(CompiledQuery):
    """`CompiledUpdate(build, **types)` where `build(**stand_ins)` returns (queryset, the values
    `queryset.update()` would be given); `run(**values)` returns the number of rows changed."""

    def run(self, **values: Any) -> int:
        values = self._unique(values)
        if self._empty(values):
            return 0
        compiled = self._for(values)
        with transaction.mark_for_rollback_on_error(), connection.cursor() as cursor:
            cursor.execute(compiled.sql, self._params(compiled, values))
            return int(cursor.rowcount)

    def _statement(self, stand_ins: dict[str, Any]) -> Any:
        queryset, updates = self._build(**stand_ins)
        query = queryset.query.chain(UpdateQuery)
        query.add_update_values(updates)
        query.annotations = {}
        return query.get_compiler(connection=connection)


def _padded(items: list[Any]) -> list[Any]:
    """The list at the next power of two, its last value repeated (`IN (a, b, b, b)` matches what
    `IN (a, b)` does): a batch of any size uses one of a few compiled statements."""
    size = 1
    while size < len(items):
        size *= 2
    return items + items[-1:] * (size - len(items))


def _hashable(value: Any) -> bool:
    return isinstance(value, int | str | UUID | datetime | date)

