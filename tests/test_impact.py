"""Impact preview: the last days' recorded changes replayed through a workflow as saved — how
many would have started it, why the others would not, which steps and branches the runs would
have reached — with nothing sent or written; and it agrees with what real runs do."""

from datetime import timedelta

from django.test import Client
from django.utils import timezone
from rest_framework.test import APIClient

from crm_automation.automation.models import AutomationEvent, ImpactPreview, Workflow, WorkflowRun
from crm_automation.automation.runtime.tasks import impact_preview
from crm_automation.automation.services import impact
from crm_automation.automation.services.workflows import workflow_transition
from crm_automation.crm.models import Deal, EmailMessage, Task
from crm_automation.crm.services import deal_move_to_stage
from tests.conftest import drain, make_workflow, stage
from tests.test_graph_engine import edge, task

BIG = {"id": "big", "type": "condition", "label": "Big", "config": {"rules": [
    {"field": "deal.amount", "operator": "gt", "value": 10000}]}}
FLOW = ([BIG, task("yes", "Big {{deal.title}}"), task("no", "Small {{deal.title}}")],
        [edge("trigger", "big"), edge("big", "yes", "condition-true"), edge("big", "no", "condition-false")])


def deals_won(org, contact, amounts) -> None:
    for i, amount in enumerate(amounts):
        deal = Deal.objects.create(organization=org, title=f"D{i}", amount=amount, stage=stage(org, "proposal"),
                                   contact=contact)
        deal_move_to_stage(deal=deal, stage=stage(org, "won"))
    other = Deal.objects.create(organization=org, title="Lost one", stage=stage(org, "proposal"), contact=contact)
    deal_move_to_stage(deal=other, stage=stage(org, "lost"))


def test_a_draft_replays_past_changes_and_counts_steps_and_branches(org, contact):
    deals_won(org, contact, [20000, 5000, 15000])
    drain()  # nothing listened then
    draft = make_workflow(org, name="Sort", activate=False, actions=FLOW[0], graph={"edges": FLOW[1]})
    result = impact.preview(draft, days=30)
    assert (result.events, result.entered) == (4, 3)
    assert result.skipped == {"the stage did not match": 1}
    assert (result.reached["big"], result.reached["yes"], result.reached["no"]) == (3, 2, 1)
    assert result.branches[("big", "condition-true")] == 2 and result.branches[("big", "condition-false")] == 1
    assert not Task.objects.exists() and not EmailMessage.objects.exists()


def test_the_preview_agrees_with_real_runs(org, contact):
    workflow = make_workflow(org, name="Sort", activate=False, actions=FLOW[0], graph={"edges": FLOW[1]})
    workflow_transition(workflow_id=workflow.pk, name="activate", by=None)
    deals_won(org, contact, [20000, 5000, 15000, 30000])
    drain()
    result = impact.preview(Workflow.objects.get(pk=workflow.pk), days=30)
    assert result.entered == WorkflowRun.objects.filter(workflow=workflow).count() == 4
    assert result.reached["yes"] == Task.objects.filter(title__startswith="Big").count() == 3
    assert result.reached["no"] == Task.objects.filter(title__startswith="Small").count() == 1


def test_older_changes_are_left_out(org, contact):
    deals_won(org, contact, [20000])
    AutomationEvent.objects.update(created_at=timezone.now() - timedelta(days=40))
    deals_won(org, contact, [20000])
    draft = make_workflow(org, name="Sort", activate=False, actions=FLOW[0], graph={"edges": FLOW[1]})
    assert impact.preview(draft, days=30).entered == 1
    assert impact.preview(draft, days=90).entered == 2


def test_the_impact_tab_and_the_api(org, contact, owner, outsider, django_capture_on_commit_callbacks):
    deals_won(org, contact, [20000, 5000])
    draft = make_workflow(org, name="Sort", activate=False, actions=FLOW[0], graph={"edges": FLOW[1]})
    page = Client()
    page.force_login(owner)
    with django_capture_on_commit_callbacks(execute=False):  # the worker's task is not sent: run below
        waiting = page.get(f"/crm/automation/workflows/{draft.pk}/impact/?days=7").content.decode()
    assert "Replaying the recorded changes of the last 7 days" in waiting and 'http-equiv="refresh"' in waiting
    made = ImpactPreview.objects.get()
    assert (made.status, made.days, made.requested_by) == ("queued", 7, owner)
    impact_preview(made.pk)  # the worker
    text = page.get(f"/crm/automation/workflows/{draft.pk}/impact/?days=7").content.decode()
    assert "<strong>2</strong> of 3 recorded changes would have started it" in text and "yes" in text
    assert 'http-equiv="refresh"' not in text and ImpactPreview.objects.count() == 1  # shown again, not redone
    api = APIClient()
    api.force_authenticate(owner)
    with django_capture_on_commit_callbacks(execute=False):
        asked = api.get(f"/api/v1/workflows/{draft.pk}/impact/", {"days": 30})
    assert asked.status_code == 202 and asked["Retry-After"] == "2" and asked.json()["status"] == "queued"
    impact_preview(ImpactPreview.objects.get(days=30).pk)
    body = api.get(f"/api/v1/workflows/{draft.pk}/impact/", {"days": 30}).json()
    assert body["entered"] == 2 and {"node": "big", "runs": 2} in body["reached"]
    assert api.get(f"/api/v1/workflows/{draft.pk}/impact/", {"days": 0}).status_code == 400
    api.force_authenticate(outsider)
    assert api.get(f"/api/v1/workflows/{draft.pk}/impact/").status_code == 404


def test_a_changed_workflow_gets_a_new_preview_and_a_lost_task_is_handed_over_again(org, contact, owner,
                                                                                   django_capture_on_commit_callbacks):
    deals_won(org, contact, [20000])
    draft = make_workflow(org, name="Sort", activate=False, actions=FLOW[0], graph={"edges": FLOW[1]})
    with django_capture_on_commit_callbacks(execute=False):
        first = impact.preview_request(draft, days=30)
    impact_preview(first.pk)
    assert impact.preview_request(Workflow.objects.get(pk=draft.pk), days=30).pk == first.pk
    Workflow.objects.filter(pk=draft.pk).update(draft_revision=draft.draft_revision + 1)  # someone saved it
    with django_capture_on_commit_callbacks(execute=False):
        second = impact.preview_request(Workflow.objects.get(pk=draft.pk), days=30)
    assert second.pk != first.pk and second.status == "queued"
    ImpactPreview.objects.filter(pk=second.pk).update(created_at=timezone.now() - timedelta(minutes=5))
    assert impact.requeue_lost() == 1  # its task never reached a worker (the broker was down)
    impact_preview(second.pk)
    impact_preview(second.pk)  # a second delivery of the task does nothing
    second.refresh_from_db()
    assert second.status == "done" and second.result["entered"] == 1


def test_contact_and_task_triggers_are_replayed_too_and_agree_with_real_runs(org, deal, owner):
    """A workflow started by a new contact or a task done: its preview counts the recorded
    changes as dispatch would (it used to say nothing would have started it)."""
    from crm_automation.crm.models import Contact

    hello = make_workflow(org, name="Hello", trigger_type="contact_created", trigger_config={},
                          conditions={"combinator": "and", "rules": [
                              {"field": "contact.email", "operator": "is_not_empty"}]},
                          actions=[{"type": "send_email", "config": {"to": "{{contact.email}}", "subject": "Hi"}}])
    done = make_workflow(org, name="Next", trigger_type="task_completed", trigger_config={},
                         actions=[task("next", "Next for {{deal.title}}")])
    Contact.objects.create(organization=org, first_name="Alan", email="alan@example.com")
    Contact.objects.create(organization=org, first_name="No", email="")
    first = Task.objects.create(organization=org, title="Send the proposal", deal=deal, assignee=owner)
    first.status = "done"
    first.save()
    drain()
    contacts = impact.preview(Workflow.objects.get(pk=hello.pk), days=30)
    # The deal's contact, Alan, and one without an email: two started it, and two would have.
    assert (contacts.events, contacts.entered) == (3, 2)
    assert WorkflowRun.objects.filter(workflow=hello).count() == 2
    assert contacts.skipped == {"the conditions were false": 1}
    tasks = impact.preview(Workflow.objects.get(pk=done.pk), days=30)
    assert tasks.entered == WorkflowRun.objects.filter(workflow=done).count() == 1
    assert tasks.reached["next"] == 1
