"""Gradual rollout: a published version goes to a share of the records first (the same record
always on the same version), raised 10 % → 50 % → 100 % by an admin or on a schedule, held by
itself when it fails more than the previous version; the other records run the previous version
and their decisions say so."""

from datetime import timedelta

import pytest
from django.core.exceptions import PermissionDenied, ValidationError
from django.utils import timezone
from django.utils.dateparse import parse_datetime as parse

from crm_automation.automation.models import Rollout, Workflow, WorkflowDecision, WorkflowRun
from crm_automation.automation.runtime.rollout import bucket
from crm_automation.automation.services import rollouts
from crm_automation.automation.services.workflows import workflow_publish, workflow_update
from crm_automation.crm.models import Deal, Notification, Task
from crm_automation.crm.services import deal_move_to_stage
from crm_automation.refusals import Refused
from tests.conftest import drain, make_workflow, stage

ACTIONS = [{"id": "task", "type": "create_task", "config": {"title": "Old kickoff {{deal.title}}"}}]
NEW = [{"id": "task", "type": "create_task", "config": {"title": "New kickoff {{deal.title}}"}}]


@pytest.fixture
def workflow(org, owner):
    made = make_workflow(org, actions=ACTIONS, reenrollment="every_time", name="Kickoff")
    workflow_update(workflow_id=made.pk, by=owner, actions=NEW)  # saved, not yet published
    return Workflow.objects.get(pk=made.pk)


def deals(org, owner, count: int) -> list[Deal]:
    return [Deal.objects.create(organization=org, title=f"Deal {i}", owner=owner, stage=stage(org, "new"))
            for i in range(count)]


def win_all(org, records: list[Deal]) -> dict[str, int]:
    """Each deal moves to Won (again); returns {deal id: version number of its newest run}."""
    for deal in records:
        deal = Deal.objects.get(pk=deal.pk)
        if deal.stage.slug == "won":
            deal_move_to_stage(deal=deal, stage=stage(org, "proposal"))
        deal_move_to_stage(deal=Deal.objects.get(pk=deal.pk), stage=stage(org, "won"))
    while drain():
        pass
    newest: dict[str, int] = {}
    for entity, number in WorkflowRun.objects.order_by("pk").values_list("trigger_entity_id",
                                                                           "version__number"):
        newest[str(entity)] = number
    return newest


def test_a_version_moves_from_10_to_100_percent_and_records_stay_on_their_version(org, owner, workflow):
    records = deals(org, owner, 60)
    workflow_publish(workflow_id=workflow.pk, by=owner, share=10)
    workflow.refresh_from_db()
    assert workflow.current_version.number == 1 and workflow.rollout.version.number == 2
    inside = {str(d.pk) for d in records if bucket(workflow.pk, d.pk) < 10}
    assert 0 < len(inside) < 20  # about a tenth of 60
    first = win_all(org, records)
    assert {d for d, v in first.items() if v == 2} == inside
    titles = set(Task.objects.values_list("title", flat=True))
    assert any(t.startswith("New kickoff") for t in titles) and any(t.startswith("Old kickoff") for t in titles)
    outside = WorkflowDecision.objects.exclude(entity_id__in=inside).filter(outcome="matched").first()
    assert "on version 1: outside the 10 % rollout of version 2" in outside.reason
    assert outside.version.number == 1
    inside_decision = WorkflowDecision.objects.filter(entity_id__in=inside, outcome="matched").first()
    assert "inside its 10 % rollout" in inside_decision.reason and inside_decision.version.number == 2

    rollouts.rollout_raise(workflow_id=workflow.pk, by=owner, percent=50)
    second = win_all(org, records)
    on_new = {d for d, v in second.items() if v == 2}
    assert inside <= on_new  # nobody who ran the new version goes back
    assert on_new == {str(d.pk) for d in records if bucket(workflow.pk, d.pk) < 50}

    rollouts.rollout_raise(workflow_id=workflow.pk, by=owner, percent=100)
    workflow.refresh_from_db()
    assert workflow.current_version.number == 2 and workflow.rollout is None
    assert Rollout.objects.get().status == "completed"
    assert set(win_all(org, records).values()) == {2}
    assert [entry["what"] for entry in Rollout.objects.get().log] == [
        "started at 10 %", "raised to 50 %", f"raised to 100 % by {owner.username}"]


def test_a_schedule_raises_it_and_then_completes_it(org, owner, workflow):
    workflow_publish(workflow_id=workflow.pk, by=owner, share=10,
                     steps=[{"percent": 50, "after_hours": 1}, {"percent": 100, "after_hours": 2}])
    now = timezone.now()
    assert rollouts.check(now + timedelta(minutes=30)) == {"held": 0, "raised": 0}
    assert rollouts.check(now + timedelta(minutes=61)) == {"held": 0, "raised": 1}
    assert Rollout.objects.get().percent == 50
    rollouts.check(now + timedelta(hours=3, minutes=1))
    workflow.refresh_from_db()
    assert Rollout.objects.get().status == "completed" and workflow.current_version.number == 2


def finished_runs(workflow, version, *, failed: int, completed: int) -> None:
    from crm_automation.automation.models import AutomationEvent

    for i in range(failed + completed):
        entity_id = f"00000000-0000-0000-{version.number:04d}-{i:012d}"
        event = AutomationEvent.objects.create(organization_id=workflow.organization_id, kind="deal_stage_change",
                                               entity_type="deal", entity_id=entity_id, payload={},
                                               processed_at=timezone.now())
        WorkflowRun.objects.create(organization_id=workflow.organization_id, workflow=workflow, version=version,
                                   event=event, trigger_type="deal_stage_change", trigger_entity_type="deal",
                                   trigger_entity_id=event.entity_id, finished_at=timezone.now(),
                                   status="failed" if i < failed else "completed")


def test_it_is_held_with_a_notification_when_the_new_version_fails_more(org, owner, workflow):
    workflow_publish(workflow_id=workflow.pk, by=owner, share=10, steps=[{"percent": 50, "after_hours": 1}])
    rollout = Rollout.objects.select_related("version", "previous").get()
    finished_runs(workflow, rollout.previous, failed=1, completed=19)  # 5 %
    finished_runs(workflow, rollout.version, failed=1, completed=9)  # 10 %: within the 10-point margin
    assert rollouts.check() == {"held": 0, "raised": 0}
    finished_runs(workflow, rollout.version, failed=4, completed=0)  # 5 of 14: 36 %
    assert rollouts.check() == {"held": 1, "raised": 0}
    rollout.refresh_from_db()
    assert rollout.status == "held"
    assert "version 2 failed 5 of 14 runs (36 %) against 1 of 20 (5 %) for version 1" in rollout.held_reason
    note = Notification.objects.get(user=owner)
    assert note.title == "Rollout of “Kickoff” held"
    # Held: the schedule waits, the share stays, the records in it keep the new version.
    assert rollouts.check(timezone.now() + timedelta(hours=2)) == {"held": 0, "raised": 0}
    assert Rollout.objects.get().percent == 10
    # A person looks and calls it off: every record runs version 1 again.
    rollouts.rollout_abort(workflow_id=workflow.pk, by=owner)
    workflow.refresh_from_db()
    assert workflow.rollout is None and workflow.current_version.number == 1
    assert Rollout.objects.get().status == "aborted"


def test_publishing_to_everyone_ends_a_rollout_and_archiving_calls_it_off(org, owner, workflow):
    from crm_automation.automation.services.workflows import workflow_transition

    workflow_publish(workflow_id=workflow.pk, by=owner, share=50)
    workflow_publish(workflow_id=workflow.pk, by=owner)  # the same version, now to every record
    workflow.refresh_from_db()
    assert workflow.current_version.number == 2 and Rollout.objects.get().status == "completed"
    workflow_update(workflow_id=workflow.pk, by=owner, actions=ACTIONS)
    workflow_publish(workflow_id=workflow.pk, by=owner, share=10)
    workflow_transition(workflow_id=workflow.pk, name="archive", by=owner)
    assert Rollout.objects.order_by("-pk").first().status == "aborted"


def test_what_cannot_roll_out_is_refused_and_changes_nothing(org, owner, teammate, workflow):
    with pytest.raises(PermissionDenied):
        workflow_publish(workflow_id=workflow.pk, by=teammate, share=10)
    with pytest.raises(ValidationError, match="after_hours"):
        workflow_publish(workflow_id=workflow.pk, by=owner, share=10, steps=[{"percent": 50}])
    with pytest.raises(ValidationError, match="above the share before it"):
        workflow_publish(workflow_id=workflow.pk, by=owner, share=50, steps=[{"percent": 20, "after_hours": 1}])
    with pytest.raises(ValidationError, match="share"):
        workflow_publish(workflow_id=workflow.pk, by=owner, share=0)
    assert not Rollout.objects.exists() and workflow.versions.count() == 1
    workflow_publish(workflow_id=workflow.pk, by=owner, share=10)
    with pytest.raises(Refused, match="no unpublished changes"):
        workflow_publish(workflow_id=workflow.pk, by=owner, share=20)
    with pytest.raises(ValidationError, match="above the current share"):
        rollouts.rollout_raise(workflow_id=workflow.pk, by=owner, percent=10)
    with pytest.raises(PermissionDenied):
        rollouts.rollout_raise(workflow_id=workflow.pk, by=teammate, percent=50)
    assert Rollout.objects.get().percent == 10


def test_a_changed_trigger_goes_to_everyone_at_once(org, owner):
    made = make_workflow(org, actions=ACTIONS, name="Trigger change")
    workflow_update(workflow_id=made.pk, by=owner, changes={"trigger_type": "lead_created", "trigger_config": {}},
                    actions=[{"id": "task", "type": "create_task", "config": {"title": "Call"}}])
    with pytest.raises(Refused, match="another trigger"):
        workflow_publish(workflow_id=made.pk, by=owner, share=10)
    assert not Rollout.objects.exists()


# --- The API --------------------------------------------------------------------------------------
def test_an_admin_rolls_out_over_the_api_and_others_cannot(org, owner, teammate, viewer, outsider, workflow,
                                                           client):
    client.force_login(owner)
    bad = client.post(f"/api/v1/workflows/{workflow.pk}/publish/", {"share": 0}, content_type="application/json")
    assert bad.status_code == 400 and "share" in bad.json()
    published = client.post(f"/api/v1/workflows/{workflow.pk}/publish/",
                            {"share": 10, "steps": [{"percent": 50, "after_hours": 24}], "margin": 5},
                            content_type="application/json")
    assert published.status_code == 200, published.content
    seen = client.get(f"/api/v1/workflows/{workflow.pk}/rollout/").json()["rollout"]
    assert (seen["version"], seen["previous"], seen["percent"], seen["status"], seen["margin"]) == (2, 1, 10,
                                                                                                   "active", 5)
    assert seen["runs"] == {"2": {"finished": 0, "failed": 0}, "1": {"finished": 0, "failed": 0}}
    for person in (teammate, viewer):
        client.force_login(person)
        assert client.get(f"/api/v1/workflows/{workflow.pk}/rollout/").status_code == 200  # members read it
        assert client.post(f"/api/v1/workflows/{workflow.pk}/rollout/", {"action": "raise", "percent": 50},
                           content_type="application/json").status_code == 403
    client.force_login(outsider)
    assert client.get(f"/api/v1/workflows/{workflow.pk}/rollout/").status_code == 404
    assert client.post(f"/api/v1/workflows/{workflow.pk}/rollout/", {"action": "abort"},
                       content_type="application/json").status_code == 404
    client.force_login(owner)
    missing = client.post(f"/api/v1/workflows/{workflow.pk}/rollout/", {"action": "raise"},
                          content_type="application/json")
    assert missing.status_code == 400 and "percent" in missing.json()
    raised = client.post(f"/api/v1/workflows/{workflow.pk}/rollout/", {"action": "raise", "percent": 50},
                         content_type="application/json")
    assert raised.status_code == 200 and raised.json()["rollout"]["percent"] == 50
    held = client.post(f"/api/v1/workflows/{workflow.pk}/rollout/", {"action": "hold", "reason": "checking"},
                       content_type="application/json").json()["rollout"]
    assert held["status"] == "held" and held["held_reason"] == "checking"
    done = client.post(f"/api/v1/workflows/{workflow.pk}/rollout/", {"action": "raise", "percent": 100},
                       content_type="application/json").json()["rollout"]
    assert done["status"] == "completed"
    again = client.post(f"/api/v1/workflows/{workflow.pk}/rollout/", {"action": "abort"},
                        content_type="application/json")
    assert again.status_code == 409 and "no rollout under way" in again.json()["detail"]


# --- The Publish page -----------------------------------------------------------------------------
def test_the_publish_page_releases_to_a_share_and_raises_holds_or_calls_it_off(org, owner, viewer, workflow,
                                                                               client):
    client.force_login(owner)
    page = client.get(f"/crm/automation/workflows/{workflow.pk}/publish/").content.decode()
    assert "one record in ten (10 %) first" in page
    client.post(f"/crm/automation/workflows/{workflow.pk}/publish/", {"share": "10", "scheduled": "1"})
    rollout = Rollout.objects.get()
    assert rollout.percent == 10 and [step["percent"] for step in rollout.steps] == [50, 100]
    page = client.get(f"/crm/automation/workflows/{workflow.pk}/publish/").content.decode()
    assert "Version 2 is rolling out: 10 % of the records" in page and "Raise to 50 %" in page
    client.post(f"/crm/automation/workflows/{workflow.pk}/publish/", {"rollout": "raise", "percent": "50"})
    assert Rollout.objects.get().percent == 50
    client.post(f"/crm/automation/workflows/{workflow.pk}/publish/", {"rollout": "hold"})
    assert Rollout.objects.get().status == "held"
    client.force_login(viewer)
    page = client.get(f"/crm/automation/workflows/{workflow.pk}/publish/").content.decode()
    assert "(held)" in page and "Only admins of" in page and "Call it off" not in page
    assert client.post(f"/crm/automation/workflows/{workflow.pk}/publish/", {"rollout": "abort"}).status_code == 403
    client.force_login(owner)
    client.post(f"/crm/automation/workflows/{workflow.pk}/publish/", {"rollout": "abort"})
    assert Rollout.objects.get().status == "aborted"
    assert Workflow.objects.get(pk=workflow.pk).current_version.number == 1


def test_a_held_rollouts_schedule_waits_and_goes_on_from_its_raise(org, owner, workflow):
    workflow_publish(workflow_id=workflow.pk, by=owner, share=10,
                     steps=[{"percent": 50, "after_hours": 24}, {"percent": 100, "after_hours": 24}])
    rollouts.rollout_hold(workflow_id=workflow.pk, by=owner, reason="looking at a complaint")
    rollout = Rollout.objects.get()
    # Three days held, then raised a little: the rest of the schedule starts again from now.
    held_at = timezone.now() - timedelta(days=3)
    rollout.log[-1]["at"] = held_at.isoformat()
    Rollout.objects.filter(pk=rollout.pk).update(log=rollout.log)
    rollouts.rollout_raise(workflow_id=workflow.pk, by=owner, percent=20)
    assert rollouts.check() == {"held": 0, "raised": 0}
    rollout.refresh_from_db()
    assert rollout.percent == 20 and rollout.status == "active"
    assert all(timedelta(hours=23) < parse(step["at"]) - timezone.now() for step in rollout.steps)


def test_a_business_events_record_stays_on_its_version(org, owner, contact):
    """Another system's event about a contact: every event of that contact runs the same version
    (the bucket is the contact, not the event)."""
    from crm_automation.crm.business_events import event_send

    made = make_workflow(org, trigger_type="event:invoice.paid", trigger_config={}, actions=ACTIONS,
                         reenrollment="every_time", name="Paid")
    workflow_update(workflow_id=made.pk, by=owner, actions=NEW)
    workflow_publish(workflow_id=made.pk, by=owner, share=50)
    for number in range(6):
        event_send(organization_id=org.pk, name="invoice.paid", by=owner, links={"contact": contact.pk},
                   data={"invoice": {"number": f"INV-{number}", "amount_paid": "10.00"}})
    while drain():
        pass
    assert WorkflowRun.objects.filter(workflow=made).count() == 6
    assert len(set(WorkflowRun.objects.filter(workflow=made).values_list("version__number", flat=True))) == 1


def test_a_workflow_on_no_record_or_with_new_timing_goes_to_everyone_at_once(org, owner):
    scheduled = make_workflow(org, trigger_type="schedule", trigger_config={"frequency": "daily", "time": "09:00"},
                              actions=[{"id": "task", "type": "create_task", "config": {"title": "Daily"}}],
                              name="Daily")
    workflow_update(workflow_id=scheduled.pk, by=owner,
                    actions=[{"id": "task", "type": "create_task", "config": {"title": "Every day"}}])
    with pytest.raises(Refused, match="runs on no record"):
        workflow_publish(workflow_id=scheduled.pk, by=owner, share=10)
    assert not Rollout.objects.exists()
