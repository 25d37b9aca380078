"""Reading `timestamptz` columns on PostgreSQL without parsing each one in Python.

Django registers its own loader for `timestamptz` (a subclass of psycopg's pure-Python loader, so
psycopg cannot swap in its C one): every datetime read is parsed character by character in
Python. A worker reads several per run (the claimed events and emails, the runs, the records),
and so does every admin or API list. This loader reads the same text with `datetime.fromisoformat`
(C) and falls back to Django's loader for anything it does not read (years past 9999, BC dates,
`infinity`), so the values are the same datetimes, in the connection's time zone as before.

Registered on each new PostgreSQL connection (`connection_created`, crm/apps.py), with the
`timezone` Django compares before it registers its own loader on a cursor (so it does not).
"""

from datetime import datetime
from typing import Any

from django.db.backends.signals import connection_created


def register(sender: Any, connection: Any, **kwargs: Any) -> None:
    """`connection_created` receiver: use the fast loader on a new PostgreSQL connection."""
    if connection.vendor != "postgresql":
        return
    from django.db.backends.postgresql.psycopg_any import BaseTzLoader  # type: ignore[import-untyped]

    zone = connection.timezone
    if zone is None:  # USE_TZ = False: Django's loader makes them naive; keep it
        return

    class IsoTzLoader(BaseTzLoader):
        timezone = zone

        def load(self, data: Any) -> datetime:
            try:
                value = datetime.fromisoformat(str(data, "ascii"))
            except ValueError:
                result: datetime = super().load(data)
                return result
            return value if value.tzinfo is zone else value.astimezone(zone)

    connection.connection.adapters.register_loader("timestamptz", IsoTzLoader)


def connect() -> None:
    connection_created.connect(register, weak=False, dispatch_uid="crm-timestamp-loader")
