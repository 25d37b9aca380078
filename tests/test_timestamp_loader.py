"""The timestamptz loader (crm_automation/timestamp_loader.py): the datetimes Django's own loader
would give, read without parsing in Python; what it cannot read fails as Django's does."""

from datetime import UTC, datetime, timedelta, timezone

import pytest
from django.db import DataError, connection
from django.db.backends.postgresql.psycopg_any import register_tzloader  # type: ignore[import-untyped]

from crm_automation.automation.models import AutomationEvent

pytestmark = [pytest.mark.django_db,
              pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's timestamptz text")]

LITERALS = ["2026-12-07 10:48:20.123456+00", "2026-03-29 01:30:00.5+00", "2026-03-29 01:30:00+00",
            "0001-01-01 00:00:00+00", "1999-12-31 23:59:59.000001+00", "9999-12-31 23:59:59.999999+00",
            "2024-02-29 12:00:00.01+00"]


def read(literals: list[str], *, django_loader: bool = False) -> tuple[datetime, ...]:
    with connection.cursor() as cursor:
        if django_loader:
            register_tzloader(connection.timezone, cursor.cursor)
        cursor.execute("SELECT " + ", ".join("%s::timestamptz" for _ in literals), literals)
        return cursor.fetchone()


def test_it_is_the_loader_every_cursor_uses():
    connection.ensure_connection()
    loader = connection.connection.adapters.get_loader(1184, 0)  # timestamptz, text
    assert loader.__module__ == "crm_automation.timestamp_loader"
    assert loader.timezone is connection.timezone  # so Django registers no loader of its own per cursor


def test_it_reads_what_django_reads():
    ours, django = read(LITERALS), read(LITERALS, django_loader=True)
    assert ours == django
    assert [value.tzinfo for value in ours] == [value.tzinfo for value in django] == [UTC] * len(LITERALS)
    assert ours[1] == datetime(2026, 3, 29, 1, 30, 0, 500000, tzinfo=UTC)


def test_a_session_in_another_time_zone_still_gives_the_same_instant_in_utc():
    with connection.cursor() as cursor:
        cursor.execute("SET TIME ZONE 'Asia/Kolkata'")
        try:
            cursor.execute("SELECT '2026-12-07 10:48:20.25+00'::timestamptz")
            (value,) = cursor.fetchone()
        finally:
            cursor.execute("SET TIME ZONE 'UTC'")
    assert value == datetime(2026, 12, 7, 10, 48, 20, 250000, tzinfo=UTC) and value.tzinfo is UTC
    assert value.astimezone(timezone(timedelta(hours=5, minutes=30))).hour == 16


@pytest.mark.parametrize("literal", ["infinity", "10000-01-01 00:00:00+00", "2000-01-01 00:00:00+00 BC"])
def test_what_python_cannot_hold_fails_as_with_django_loader(literal):
    errors = []
    for django_loader in (False, True):
        with pytest.raises(DataError) as raised:
            read([literal], django_loader=django_loader)
        errors.append(str(raised.value))
    assert errors[0] == errors[1]


def test_rows_read_through_the_orm_keep_their_microseconds(org):
    when = datetime(2026, 12, 7, 10, 48, 20, 7, tzinfo=UTC)
    event = AutomationEvent.objects.create(organization=org, kind="deal_created", entity_type="deal",
                                           entity_id="00000000-0000-0000-0000-000000000001", payload={})
    AutomationEvent.objects.filter(pk=event.pk).update(created_at=when, claimed_until=when + timedelta(seconds=1))
    event.refresh_from_db()
    assert (event.created_at, event.claimed_until) == (when, when + timedelta(microseconds=1_000_000))
    assert AutomationEvent.objects.filter(created_at=when).get().pk == event.pk
