"""CompiledQuery: a queryset compiled once answers as the queryset built anew would, whatever values it is given."""

from datetime import datetime, timedelta
from uuid import UUID, uuid4

import pytest
from django.db import connection
from django.db.models import F
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from crm_automation import compiled_query
from crm_automation.automation.models import AutomationEvent, WorkflowRun
from crm_automation.compiled_query import CompiledQuery, CompiledUpdate
from crm_automation.crm.models import Deal
from crm_automation.crm.services import deal_move_to_stage
from tests.conftest import drain, make_workflow, stage


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


def deal_in(org, contact, owner, title: str):
    return Deal.objects.create(organization=org, title=title, amount=100, stage=stage(org, "proposal"),
                               contact=contact, owner=owner)


def test_objects_come_back_as_the_queryset_gives_them_with_their_related_ones(org, contact, owner):
    deals = [deal_in(org, contact, owner, f"Deal {i}") for i in range(3)]
    Deal.objects.filter(pk=deals[1].pk).update(custom={"floors": 3}, probability=40)

    def build(ids):
        return Deal.objects.filter(pk__in=ids).select_related("stage", "contact", "owner").order_by("title")

    query = CompiledQuery(build, ids=list[UUID])
    for ids in ([deals[1].pk], [deals[0].pk, deals[2].pk], [d.pk for d in deals], [deals[1].pk, deals[1].pk]):
        made, expected = query.models(ids=ids), list(build(ids))
        assert [(d.pk, d.title, d.custom, d.probability, d.amount, d.created_at) for d in made] == [
            (d.pk, d.title, d.custom, d.probability, d.amount, d.created_at) for d in expected]
        with CaptureQueriesContext(connection) as queries:  # the related ones came with them
            assert [(d.stage.slug, d.contact.email, d.owner.username) for d in made] == [
                (d.stage.slug, d.contact.email, d.owner.username) for d in expected]
        assert not queries.captured_queries
        assert all(not d._state.adding and d._state.db == "default" for d in made)
    assert query.models(ids=[]) == []
    assert query.models(ids=[uuid4()]) == []


def test_rows_are_converted_as_values_list_converts_them(org, contact, owner):
    deal = deal_in(org, contact, owner, "Roof")
    query = CompiledQuery(lambda ids, title: Deal.objects.filter(pk__in=ids, title=title).values_list(
        "pk", "created_at", "custom", "stage__slug"), ids=list[UUID], title=str)
    assert query.rows(ids=[deal.pk], title="Roof") == list(Deal.objects.filter(pk=deal.pk).values_list(
        "pk", "created_at", "custom", "stage__slug"))
    assert query.rows(ids=[deal.pk], title="Porch") == []


def test_an_update_changes_the_rows_the_queryset_would_and_counts_them(org, contact, owner):
    deals = [deal_in(org, contact, owner, f"Deal {i}") for i in range(3)]
    moment = timezone.now() - timedelta(days=3)
    query = CompiledUpdate(lambda ids, step, now, title: (
        Deal.objects.filter(pk__in=ids, organization=org), {"probability": F("probability") + step,
                                                             "updated_at": now, "title": title}),
        ids=list[UUID], step=int, now=datetime, title=str)
    assert query.run(ids=[deals[0].pk, deals[2].pk], step=7, now=moment, title="Won") == 2
    assert query.run(ids=[deals[0].pk], step=1, now=moment, title="Won again") == 1
    assert query.run(ids=[], step=1, now=moment, title="none") == 0
    got = {d.pk: (d.probability, d.updated_at, d.title) for d in Deal.objects.filter(organization=org)}
    assert got == {deals[0].pk: (18, moment, "Won again"), deals[1].pk: (10, deals[1].updated_at, "Deal 1"),
                   deals[2].pk: (17, moment, "Won")}


def test_after_warm_up_a_single_change_compiles_only_queries_made_since(org, deal, monkeypatch):
    """What a worker does when it starts: its first change then waits for no compiling, but
    for the few queries made on first use (the claim's, one per batch size)."""
    make_workflow(org, actions=[
        {"type": "create_task", "config": {"title": "Kick off {{deal.title}}", "due_in_days": 2}},
        {"type": "update_field", "config": {"field": "probability", "value": 100}},
        {"type": "send_email", "config": {"to": "{{deal.contact.email}}", "subject": "Won", "body": "Hi"}}])
    deal_move_to_stage(deal=deal, stage=stage(org, "won"))
    assert compiled_query.warm_up() >= 10
    warmed = list(compiled_query._MADE)
    compiled: list[CompiledQuery] = []
    real = CompiledQuery._compile

    def compile_and_note(self, lengths):
        compiled.append(self)
        return real(self, lengths)

    monkeypatch.setattr(CompiledQuery, "_compile", compile_and_note)
    with monkeypatch.context() as m:  # (as a fresh worker: nothing compiled but by warm_up)
        for query in warmed:
            m.setattr(query, "_compiled", {})
        compiled_query.warm_up()
        compiled.clear()
        assert drain() == 1
    assert WorkflowRun.objects.get(workflow__organization=org).status == "completed"
    assert not [query for query in compiled if any(query is w for w in warmed)]


def test_updated_rows_are_the_objects_a_fresh_read_gives(org):
    """An UPDATE … RETURNING made into objects (the claims of events and emails): every field as
    the ORM reads it (the JSON payload, the aware datetimes), and with `only`, just that row."""
    first, second, untouched = events_of(org, [3, 2, 1])
    AutomationEvent.objects.filter(pk=first.pk).update(payload={"changed": {"stage": ["a", "b"]}, "n": 1.5})
    table = connection.ops.quote_name(AutomationEvent._meta.db_table)
    until = timezone.now() + timedelta(minutes=5)
    claim = f"UPDATE {table} SET claimed_until = %s WHERE id IN (%s, %s)"
    params = [AutomationEvent._meta.get_field("claimed_until").get_db_prep_save(until, connection),
              first.pk, second.pk]

    made = compiled_query.updated_rows(AutomationEvent, claim, params, using="default")

    fields = [f.attname for f in AutomationEvent._meta.concrete_fields]
    fresh = {e.pk: e for e in AutomationEvent.objects.filter(pk__in=[first.pk, second.pk])}
    assert sorted(e.pk for e in made) == sorted(fresh)
    for event in made:
        assert isinstance(event, AutomationEvent) and not event._state.adding and event._state.db == "default"
        assert {f: getattr(event, f) for f in fields} == {f: getattr(fresh[event.pk], f) for f in fields}
    assert next(e for e in made if e.pk == first.pk).payload == {"changed": {"stage": ["a", "b"]}, "n": 1.5}
    assert all(e.claimed_until == until for e in made)
    assert AutomationEvent.objects.get(pk=untouched.pk).claimed_until is None

    only = compiled_query.updated_rows(AutomationEvent, claim, params, using="default", only=second.pk)
    assert [e.pk for e in only] == [second.pk]
    assert compiled_query.updated_rows(AutomationEvent, claim, [params[0], -1, -2], using="default") == []


@pytest.mark.django_db(transaction=True)
def test_a_worker_warms_up_in_autocommit_the_record_locks_included(org, deal):
    """A worker's watchdog thread warms up outside any transaction; Django compiles a SELECT … FOR
    UPDATE only inside one (on PostgreSQL): the warm-up stopped at the first lock, in every worker,
    and its first change compiled the rest."""
    make_workflow(org, actions=[
        {"type": "create_task", "config": {"title": "Kick off {{deal.title}}", "due_in_days": 2}},
        {"type": "update_field", "config": {"field": "probability", "value": 100}}])
    deal_move_to_stage(deal=deal, stage=stage(org, "won"))
    assert connection.get_autocommit()
    assert compiled_query.warm_up() >= 10  # (raised TransactionManagementError on PostgreSQL)
    assert connection.get_autocommit()
