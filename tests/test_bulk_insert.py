"""bulk_insert: the worker's multi-row INSERT writes what bulk_create would, on both databases."""

import uuid
from decimal import Decimal

import pytest
from django.db import DataError, IntegrityError, connection, transaction
from django.db.models import Q
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from crm_automation.automation.models import (
    AutomationEvent,
    FieldChange,
    LifecycleEvent,
    LifecycleType,
    RunStatus,
    StepStatus,
    WorkflowRun,
    WorkflowRunAction,
)
from crm_automation.bulk_insert import bulk_insert, bulk_insert_values
from crm_automation.crm.models import Deal
from tests.conftest import make_workflow, stage


@pytest.fixture
def run(org, owner):
    workflow = make_workflow(org, name="Kickoff")
    event = AutomationEvent.objects.create(organization=org, kind="deal_stage_change", entity_type="deal",
                                           entity_id=str(uuid.uuid4()), payload={})
    return WorkflowRun.objects.create(organization=org, workflow=workflow, version=workflow.current_version,
                                      event=event, trigger_type="deal_stage_change", trigger_entity_type="deal",
                                      trigger_entity_id=event.entity_id)


def step(run, node_id: str, **values) -> WorkflowRunAction:
    return WorkflowRunAction(run=run, node_id=node_id, position=values.pop("position", 1),
                             action_type="create_task", **values)


def test_rows_get_their_pks_in_order_and_read_back_as_the_orm_writes_them(run):
    moment = timezone.now()
    odd = {"quote": 'say "hi"\n\\', "none": None, "list": [1, "{x,y}", None], "é": "ü"}
    rows = bulk_insert([
        step(run, "a", status=StepStatus.COMPLETED, input=odd, result={"task_id": 7}, started_at=moment),
        step(run, "b", position=2, status="failed", error="Boom, it's broken", attempts=3),
    ])
    assert [r.pk for r in rows] == sorted(r.pk for r in rows) and all(r.pk for r in rows)
    assert not any(r._state.adding for r in rows)
    a, b = WorkflowRunAction.objects.filter(run=run).order_by("position")
    assert (a.pk, b.pk) == (rows[0].pk, rows[1].pk)
    assert a.status == "completed" and a.result == {"task_id": 7} and a.started_at == moment
    assert a.input == odd
    assert (b.status, b.error, b.attempts, b.input, b.started_at) == ("failed", "Boom, it's broken", 3, {}, None)


def test_one_row_alone_reads_back_as_in_a_batch(run):
    """(A single row goes as scalars, a batch as arrays: the same values either way.)"""
    moment = timezone.now()
    odd = {"quote": 'say "hi"\n\\', "none": None, "list": [1, "{x,y}", None], "é": "ü"}
    (alone,) = bulk_insert([step(run, "a", status=StepStatus.COMPLETED, input=odd, result={"n": 1.5},
                                 started_at=moment, attempts=2)])
    batch = bulk_insert([step(run, "b", status=StepStatus.COMPLETED, input=odd, result={"n": 1.5},
                              started_at=moment, attempts=2), step(run, "c")])
    stored = {row.node_id: row for row in WorkflowRunAction.objects.filter(run=run)}
    assert stored["a"].pk == alone.pk and stored["b"].pk == batch[0].pk
    for node in "ab":
        row = stored[node]
        assert (row.status, row.input, row.result, row.started_at, row.attempts, row.error) == (
            "completed", odd, {"n": 1.5}, moment, 2, "")


def test_a_field_left_to_its_database_default_gets_it(run):
    row = WorkflowRunAction(run=run, position=1, action_type="create_task")  # node_id, token: db_default ""
    bulk_insert([row])
    stored = WorkflowRunAction.objects.get(pk=row.pk)
    assert (stored.node_id, stored.token) == ("", "")


def test_auto_now_add_is_set_and_none_in_a_json_field_is_sql_null(org, run):
    before = timezone.now()
    change = FieldChange(organization=org, entity_type="deal", entity_id=uuid.uuid4(), field="probability",
                         old_value=None, new_value=100, run_id=run.pk, automation_key="k-1")
    bulk_insert([change])
    stored = FieldChange.objects.get(pk=change.pk)
    assert stored.created_at >= before and stored.old_value is None and stored.new_value == 100
    assert FieldChange.objects.filter(pk=change.pk, old_value__isnull=True).exists()


def test_choices_are_written_as_their_values(org, run):
    event = LifecycleEvent(organization=org, type=LifecycleType.RUN_STARTED, run_id=run.pk,
                           occurred_at=timezone.now())
    bulk_insert([event])
    assert LifecycleEvent.objects.filter(pk=event.pk, type="run.started").exists()


def test_update_conflicts_updates_the_row_and_gives_its_pk(run):
    first = bulk_insert([step(run, "email", status=StepStatus.RUNNING)])[0]
    again = bulk_insert([step(run, "email", status=StepStatus.COMPLETED, result={"email_id": 1}),
                         step(run, "next", position=2)],
                        unique_fields=["run", "node_id", "token"], update_fields=["status", "result"])
    assert again[0].pk == first.pk and again[1].pk not in (None, first.pk)
    stored = WorkflowRunAction.objects.get(pk=first.pk)
    assert (stored.status, stored.result) == ("completed", {"email_id": 1})
    assert WorkflowRunAction.objects.filter(run=run).count() == 2


def values(run, node_id: str, **more) -> dict:
    return {"run_id": run.pk, "node_id": node_id, "token": "", "position": 1, "action_type": "send_email",
            "status": StepStatus.RUNNING, "input": {}, "result": {}, "error": "", "attempts": 1, "started_at": None,
            "finished_at": None, **more}


def test_rows_given_as_values_are_written_as_instances_would_be_and_upserted_in_order(run):
    """(bulk_insert_values: the step rows of a segment, with no model instance on PostgreSQL.)"""
    moment = timezone.now()
    odd = {"quote": 'say "hi"\n\\', "none": None, "list": [1, "{x,y}", None], "é": "ü"}
    (first,) = bulk_insert_values(WorkflowRunAction, [values(run, "email", input=odd, started_at=moment)],
                                  unique_fields=["run", "node_id", "token"], update_fields=["status", "result"])
    pks = bulk_insert_values(WorkflowRunAction, [
        values(run, "next", position=2, status=StepStatus.COMPLETED, result={"n": 1.5}, finished_at=moment),
        values(run, "email", status=StepStatus.COMPLETED, result={"email_id": 7})],
        unique_fields=["run", "node_id", "token"], update_fields=["status", "result"])
    assert pks[1] == first and pks[0] not in (None, first)
    stored = {row.node_id: row for row in WorkflowRunAction.objects.filter(run=run)}
    assert (stored["email"].pk, stored["email"].status, stored["email"].result, stored["email"].input,
            stored["email"].started_at) == (first, "completed", {"email_id": 7}, odd, moment)
    assert (stored["next"].pk, stored["next"].position, stored["next"].result, stored["next"].finished_at) == (
        pks[0], 2, {"n": 1.5}, moment)
    assert bulk_insert_values(WorkflowRunAction, []) == []


def test_values_missing_a_column_are_left_to_the_model_and_its_defaults(run):
    (pk,) = bulk_insert_values(WorkflowRunAction, [{"run_id": run.pk, "position": 1, "action_type": "create_task"}])
    stored = WorkflowRunAction.objects.get(pk=pk)
    assert (stored.node_id, stored.status, stored.input, stored.attempts) == ("", "pending", {}, 0)


def test_ignore_conflicts_leaves_the_refused_rows_out(run):
    bulk_insert([step(run, "a")])
    bulk_insert([step(run, "a", status="failed"), step(run, "b", position=2)], ignore_conflicts=True)
    assert dict(WorkflowRunAction.objects.filter(run=run).values_list("node_id", "status")) == {
        "a": "pending", "b": "pending"}


def test_a_refused_row_is_djangos_integrity_error_and_writes_nothing(run):
    bulk_insert([step(run, "a")])
    with pytest.raises(IntegrityError), transaction.atomic():
        bulk_insert([step(run, "z"), step(run, "a")])
    assert list(WorkflowRunAction.objects.filter(run=run).values_list("node_id", flat=True)) == ["a"]


@pytest.mark.skipif(connection.vendor != "postgresql", reason="SQLite keeps any length, through the ORM too")
def test_a_value_too_long_is_refused_not_cut(run):
    with pytest.raises(DataError, match="too long"), transaction.atomic():
        bulk_insert([step(run, "x" * 61)])  # node_id is 60 at most
    assert not WorkflowRunAction.objects.filter(run=run).exists()


def test_one_statement_seen_by_djangos_query_log(run):
    with CaptureQueriesContext(connection) as queries:
        bulk_insert([step(run, str(i), position=i) for i in range(1, 51)])
    assert len(queries.captured_queries) == 1
    assert WorkflowRunAction.objects.filter(run=run).count() == 50


def test_a_model_it_does_not_take_goes_to_bulk_create(org):
    # (created_at is the database's Now(): an expression, which bulk_create writes)
    events = bulk_insert([AutomationEvent(organization=org, kind="deal_created", entity_type="deal",
                                          entity_id=uuid.uuid4(), payload={"a": 1})])
    stored = AutomationEvent.objects.get(pk=events[0].pk)
    assert stored.payload == {"a": 1} and stored.created_at is not None
    assert bulk_insert([]) == []


def test_instances_that_make_their_own_uuid_pk_keep_it_and_read_back_as_bulk_create_writes_them(org, contact):
    def made(n: int) -> list[Deal]:
        return [Deal(organization=org, title=f"O'Neil \\ \"{i}\" {{Acme, Inc}}", amount=Decimal("1234.50"),
                     stage=stage(org, "proposal"), contact=contact, custom={"size": i, "tags": ["a", None]})
                for i in range(n)]

    ours, theirs = made(3), made(3)
    with CaptureQueriesContext(connection) as queries:
        kept = bulk_insert(ours)
    assert [d.pk for d in kept] == [d.pk for d in ours] and all(isinstance(d.pk, uuid.UUID) for d in kept)
    assert len(queries.captured_queries) == 1 and not any(d._state.adding for d in kept)
    Deal.objects.bulk_create(theirs)

    def stored(deals):
        moments = ("created_at", "updated_at", "stage_entered_at")  # (set when each was made)
        assert not Deal.objects.filter(pk__in=[d.pk for d in deals]).filter(
            Q(created_at=None) | Q(updated_at=None) | Q(stage_entered_at=None)).exists()
        fields = [f.attname for f in Deal._meta.concrete_fields if f.attname not in ("id", *moments)]
        rows = {d["id"]: d for d in Deal.objects.filter(pk__in=[d.pk for d in deals]).values("id", *fields)}
        return [{k: v for k, v in rows[d.pk].items() if k != "id"} for d in deals]

    assert stored(ours) == stored(theirs)


def test_values_may_leave_out_the_columns_the_database_fills(org):
    rows = [{"organization_id": org.pk, "kind": "deal_created", "entity_type": "deal", "entity_id": uuid.uuid4(),
             "payload": {"n": i, "quote": 'say "hi"'}, "depth": 0, "caused_by_run_id": None} for i in range(3)]
    with CaptureQueriesContext(connection) as queries:
        pks = bulk_insert_values(AutomationEvent, rows)
    assert len(queries.captured_queries) == 1
    stored = list(AutomationEvent.objects.filter(pk__in=pks).order_by("pk"))
    assert [e.pk for e in stored] == pks and [e.payload["n"] for e in stored] == [0, 1, 2]
    assert all(e.created_at is not None and e.processed_at is None and e.claimed_until is None and e.error == ""
               for e in stored)


def test_a_column_the_database_cannot_fill_gets_the_models_default(org):
    """(payload has a Python default, {}: left out, the row goes through the model.)"""
    (pk,) = bulk_insert_values(AutomationEvent, [{"organization_id": org.pk, "kind": "deal_created",
                                                  "entity_type": "deal", "entity_id": uuid.uuid4()}])
    assert AutomationEvent.objects.get(pk=pk).payload == {}


def test_batch_size_splits_the_statement_and_keeps_the_order(run):
    with CaptureQueriesContext(connection) as queries:
        rows = bulk_insert([step(run, str(i), position=i) for i in range(1, 8)], batch_size=3)
    assert [r.position for r in rows] == list(range(1, 8)) and [r.pk for r in rows] == sorted(r.pk for r in rows)
    pks = bulk_insert_values(WorkflowRunAction, [
        {"run_id": run.pk, "node_id": f"v{i}", "token": "", "position": i, "action_type": "create_task"}
        for i in range(5)], batch_size=2)
    assert list(WorkflowRunAction.objects.filter(pk__in=pks).order_by("pk").values_list("position", flat=True)) == [
        0, 1, 2, 3, 4]
    if connection.vendor == "postgresql":
        assert len(queries.captured_queries) == 3


def test_runs_refused_by_the_enrollment_index_keep_no_pk(run):
    WorkflowRun.objects.filter(pk=run.pk).update(holds_enrollment=True)

    def later_run(entity_id: str) -> WorkflowRun:  # one run per event and workflow, as dispatch makes them
        event = AutomationEvent.objects.create(organization_id=run.organization_id, kind="deal_stage_change",
                                               entity_type="deal", entity_id=entity_id, payload={})
        return WorkflowRun(organization_id=run.organization_id, workflow=run.workflow, version=run.version,
                           event=event, trigger_type=run.trigger_type, trigger_entity_type="deal",
                           trigger_entity_id=entity_id, status=RunStatus.STARTED, holds_enrollment=True)

    rival, other = later_run(run.trigger_entity_id), later_run(str(uuid.uuid4()))
    bulk_insert([rival, other], ignore_conflicts=True, match_on=("event_id", "workflow_id", "status"))
    assert WorkflowRun.objects.filter(workflow=run.workflow).count() == 2
    made = WorkflowRun.objects.get(event=other.event)
    assert str(made.trigger_entity_id) == other.trigger_entity_id
    assert (rival.pk, other.pk) == (None, made.pk)  # the refused run has none, the made one its own


def test_without_match_on_rows_kept_out_by_ignore_conflicts_give_no_pks(run):
    rows = bulk_insert([step(run, "a"), step(run, "b", position=2)], ignore_conflicts=True)
    assert [r.pk for r in rows] == [None, None]
    with pytest.raises(ValueError, match="match_on"):
        bulk_insert([step(run, "c")], match_on=("node_id",))
