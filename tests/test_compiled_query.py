"""CompiledQuery: a queryset compiled once answers as the queryset built anew would, whatever values it is given."""

from datetime import datetime, timedelta

import pytest
from django.db import connection
from django.utils import timezone

from crm_automation.automation.models import AutomationEvent
from crm_automation.compiled_query import CompiledQuery


def events_of(org, ages_minutes: list[int]) -> list[AutomationEvent]:
    now = timezone.now()
    made = []
    for minutes in ages_minutes:
        event = AutomationEvent.objects.create(organization=org, kind="deal_created", entity_type="deal",
                                               entity_id="00000000-0000-0000-0000-000000000001", payload={})
        AutomationEvent.objects.filter(pk=event.pk).update(created_at=now - timedelta(minutes=minutes))
        made.append(event)
    return made


def run(query: CompiledQuery, **values) -> list[int]:
    sql, params = query.sql(**values)
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [pk for (pk,) in cursor.fetchall()]


def test_each_call_puts_its_own_values_where_the_stand_ins_were(org, other_org):
    mine = events_of(org, [30, 10, 1])
    theirs = events_of(other_org, [20])

    def build(now, organization):
        return AutomationEvent.objects.filter(organization_id=organization, created_at__lt=now).order_by(
            "id").values("id")

    query = CompiledQuery(build, now=datetime, organization=int)
    now = timezone.now()
    for moment, organization in [(now - timedelta(minutes=5), org.pk), (now, org.pk), (now, other_org.pk),
                                 (now - timedelta(hours=1), org.pk)]:
        assert run(query, now=moment, organization=organization) == list(build(moment, organization).values_list(
            "id", flat=True))
    assert run(query, now=now - timedelta(minutes=5), organization=org.pk) == [mine[0].pk, mine[1].pk]
    assert run(query, now=now, organization=other_org.pk) == [theirs[0].pk]


def test_a_stand_in_the_query_does_not_use_is_refused():
    query = CompiledQuery(lambda now, organization: AutomationEvent.objects.filter(created_at__lt=now).values("id"),
                          now=datetime, organization=int)
    with pytest.raises(ValueError, match="organization"):
        query.sql(now=timezone.now(), organization=1)
