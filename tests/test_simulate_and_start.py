"""Simulate runs any version against a record and changes nothing; a person starts a manual
workflow on a record; parts of the format that do not run yet are kept as drafts and refused at
activation with the reason; a follow-up example (a wait, AI nodes, a sub-workflow) imports with
this CRM's events and tools."""

import pytest
from django.core import mail
from django.core.exceptions import PermissionDenied
from django.urls import reverse

from crm_automation.automation.models import AutomationEvent, FieldChange, Workflow, WorkflowRun
from crm_automation.automation.runtime.tasks import continue_runs, sweep
from crm_automation.automation.services.simulation import simulate
from crm_automation.automation.services.versions import parse_yaml, workflow_export_yaml, workflow_import_yaml
from crm_automation.automation.services.workflows import workflow_transition
from crm_automation.crm.models import Deal, EmailMessage, Notification, Task
from crm_automation.crm.services import deal_move_to_stage
from crm_automation.refusals import Refused
from tests.conftest import drain, make_workflow, stage, time_passes
from tests.fake_ai import chat
from tests.test_graph_engine import BIG_DEAL, edge, task

EVERYTHING = [
    BIG_DEAL,
    {"id": "pause", "type": "wait", "config": {"delayAmount": 3, "delayUnit": "days"}},
    {"id": "mail", "type": "send_email", "config": {"to": "{{deal.contact.email}}", "subject": "Hi {{deal.title}}",
                                                    "body": "Dear {{deal.contact.first_name}}"}},
    {"id": "ask", "type": "user_input", "config": {"promptText": "OK?"}},
    {"id": "prob", "type": "update_field", "config": {"field": "probability", "value": 90}},
    task("t", "Follow up {{deal.title}}"),
    task("small", "Small"),
]
EDGES = [edge("trigger", "big"), edge("big", "pause", "condition-true"), edge("big", "small", "condition-false"),
         edge("pause", "mail"), edge("mail", "ask"), edge("ask", "prob", "approved"), edge("prob", "t")]


def counts() -> tuple:
    return (Task.objects.count(), EmailMessage.objects.count(), FieldChange.objects.count(),
            Notification.objects.count(), AutomationEvent.objects.filter(processed_at__isnull=True).count())


def test_simulate_runs_every_node_and_changes_nothing(org, deal, owner):
    Deal.objects.filter(pk=deal.pk).update(amount=5000, probability=10)
    wf = make_workflow(org, actions=EVERYTHING, graph={"edges": EDGES})
    before = counts()
    run = simulate(workflow_id=wf.pk, by=owner, record=Deal.objects.get(pk=deal.pk))
    assert counts() == before and not mail.outbox and Deal.objects.get(pk=deal.pk).probability == 10
    assert run.simulated and run.status == "completed"
    steps = {s.node_id: s.result for s in run.actions.all()}
    assert list(run.actions.order_by("position").values_list("node_id", flat=True)) == [
        "big", "pause", "mail", "ask", "prob", "t"]  # the path taken (not "small")
    assert "would_wait_until" in steps["pause"]
    assert steps["mail"]["would_send"] == {"to": "ada@example.com", "subject": "Hi Website", "body": "Dear Ada"}
    assert steps["mail"]["delivery"] == "not sent: simulation"
    assert steps["ask"]["decision"] == "approved" and steps["prob"]["old"] == 10 and steps["prob"]["new"] == 90
    assert steps["t"]["would_create_task"]["title"] == "Follow up Website"
    wf.refresh_from_db()
    assert (wf.run_count, wf.success_count) == (0, 0)  # counts nowhere


def test_simulate_any_version_and_only_by_ops(org, deal, owner, viewer, outsider):
    wf = make_workflow(org, actions=[task("t", "v1")], activate=False)
    from crm_automation.automation.services.workflows import workflow_update

    workflow_update(workflow_id=wf.pk, by=owner, actions=[task("t", "v2")])
    run = simulate(workflow_id=wf.pk, by=owner, record=deal, version_number=1)
    assert run.actions.get().result["would_create_task"]["title"] == "v1"
    with pytest.raises(PermissionDenied):
        simulate(workflow_id=wf.pk, by=viewer, record=deal)
    with pytest.raises(PermissionDenied):
        simulate(workflow_id=wf.pk, by=outsider, record=deal)


def test_the_simulate_page_and_the_record_panel(client, org, deal, owner):
    wf = make_workflow(org, actions=[task("t", "Hello {{deal.title}}")])
    client.force_login(owner)
    page = client.get(reverse("admin:crm_deal_change", args=[deal.pk])).content.decode()
    link = reverse("admin:automation_workflow_simulate", args=[wf.pk]) + f"?record={deal.pk}"
    assert link in page
    assert str(deal.pk) in client.get(link).content.decode()
    response = client.post(link, {"record": str(deal.pk), "version": "1"})
    run = WorkflowRun.objects.get(simulated=True)
    assert response.url == reverse("admin:automation_workflowrun_change", args=[run.pk]) and not Task.objects.exists()
    listing = client.get(reverse("admin:automation_workflowrun_changelist")).content.decode()
    assert "(simulation)" in listing


MANUAL = [task("t", "Call {{deal.contact.first_name}} about {{deal.title}}")]


def test_a_person_starts_a_manual_workflow_on_a_record(client, org, deal, owner):
    wf = make_workflow(org, trigger_type="manual_deal", trigger_config={}, actions=MANUAL)
    client.force_login(owner)
    page = client.get(reverse("admin:crm_deal_change", args=[deal.pk])).content.decode()
    start = reverse("admin:automation_workflow_start", args=[wf.pk])
    assert f"{start}?record={deal.pk}" in page
    assert "Start now" in client.get(f"{start}?record={deal.pk}").content.decode()
    client.post(start, {"record": str(deal.pk)})
    run = WorkflowRun.objects.get()
    continue_runs([run.pk])
    run.refresh_from_db()
    assert run.status == "completed" and Task.objects.get().title == "Call Ada about Website"
    assert run.event.decisions.get().reason == "started by owner"


def test_a_manual_workflow_is_started_only_by_ops_on_its_own_records(client, org, deal, viewer, outsider, other_org):
    from crm_automation.automation.triggers.manual import workflow_start

    wf = make_workflow(org, trigger_type="manual_deal", trigger_config={}, actions=MANUAL)
    with pytest.raises(PermissionDenied):
        workflow_start(workflow_id=wf.pk, by=viewer, record=deal)
    client.force_login(outsider)
    assert client.post(reverse("admin:automation_workflow_start", args=[wf.pk]),
                       {"record": str(deal.pk)}).status_code in (302, 403, 404)
    auto = make_workflow(org, name="Auto", actions=MANUAL)
    with pytest.raises(Refused, match="not started by hand"):
        workflow_start(workflow_id=auto.pk, by=None, record=deal)
    assert not WorkflowRun.objects.exists()


LATER_YAML = """\
id: later-parts
name: Later parts
nodes:
- id: weekly
  type: workflow
  data:
    subtype: schedule
    label: Every Monday
    config:
      cron: 0 9 * * 1
- id: write
  type: workflow
  data:
    subtype: agent
    label: Draft Note
    config:
      additionalPrompt: Write a note
edges:
- source: weekly
  target: write
"""


def test_parts_that_come_later_are_kept_as_drafts_and_activation_says_why(org, owner):
    wf, notes = workflow_import_yaml(organization=org, by=owner, text=LATER_YAML)
    assert wf.status == "draft" and wf.trigger_type == "schedule"
    with pytest.raises(Refused) as refused:
        workflow_transition(workflow_id=wf.pk, name="activate", by=owner)
    text = " ".join(refused.value.messages)
    assert "schedule" not in text  # schedules run (schedules.py); the agent needs a provider (none in tests)
    assert "AI node “write” cannot run: no AI provider is set up: set AI_PROVIDER" in text
    assert "subtype: agent" in workflow_export_yaml(Workflow.objects.get(pk=wf.pk))


# A post-completion follow-up written for a field-service CRM, its events and tools swapped for
# this CRM's: a deal won instead of project.completed, an email instead of an SMS; the agent and router stay (they are
# kept, and refused at activation until the AI features exist).
FOLLOW_UP_EXAMPLE = """\
id: post-completion-follow-up
name: Post-Completion Follow-Up
_status: draft
nodes:
- id: trigger
  type: workflow
  data:
    subtype: chat-app
    label: Deal Won
    config:
      event: deal_stage_change
      to_stage: won
- id: wait-2h
  type: workflow
  data:
    subtype: wait
    label: Wait 2 Hours
    config:
      delayAmount: 2
      delayUnit: hours
- id: draft-sms
  type: workflow
  data:
    subtype: agent
    label: Draft SMS
    config:
      additionalPrompt: Write a warm 1-sentence note thanking {{deal.contact.first_name}} for {{deal.title}}.
- id: send-sms
  type: workflow
  data:
    subtype: tool-call
    label: Send SMS
    config:
      toolName: crm/send_email
      defaults:
        to: '{{deal.contact.email}}'
        body: '{{Draft SMS}}'
        subject: Thank you
- id: sentiment-router
  type: workflow
  data:
    subtype: router
    label: Sentiment Router
    config:
      routes:
      - id: route-0
        label: positive
      - id: route-1
        label: negative
      classificationPrompt: 'Read the customer reply: {{Send SMS.subject}}'
- id: start-review-funnel
  type: workflow
  data:
    subtype: sub-workflow
    label: Start Review Funnel
    config:
      workflowId: review-funnel
      awaitResponse: false
- id: create-task
  type: workflow
  data:
    subtype: tool-call
    label: Create Follow-Up Task
    config:
      toolName: crm/create_task
      defaults:
        title: Follow up — {{deal.contact.first_name}} (needs attention)
        priority: urgent
edges:
- source: trigger
  target: wait-2h
- source: wait-2h
  target: draft-sms
- source: draft-sms
  target: send-sms
- source: send-sms
  target: sentiment-router
- source: sentiment-router
  target: start-review-funnel
  sourceHandle: route-0
- source: sentiment-router
  target: create-task
  sourceHandle: route-1
"""


def test_the_follow_up_example_imports_round_trips_and_says_what_cannot_run_yet(org, owner):
    import yaml

    make_workflow(org, name="Review funnel", key="review-funnel", actions=[task("t", "Ask for a review")])
    parsed = parse_yaml(FOLLOW_UP_EXAMPLE, org.pk)
    assert [a["type"] for a in parsed["definition"]["actions"]] == [
        "wait", "agent", "send_email", "router", "sub_workflow", "create_task"]
    wf, _ = workflow_import_yaml(organization=org, by=owner, text=FOLLOW_UP_EXAMPLE)
    exported = yaml.safe_load(workflow_export_yaml(wf))
    assert exported.pop("settings") == {"errorPolicy": "abort", "reenrollment": "not_while_running",
                                        "timeoutSeconds": 60}  # ours, added with their defaults
    assert exported == yaml.safe_load(FOLLOW_UP_EXAMPLE)
    with pytest.raises(Refused, match="AI nodes “draft-sms”, “sentiment-router” cannot run: no AI provider"):
        workflow_transition(workflow_id=wf.pk, name="activate", by=owner)


def test_the_follow_up_example_runs_end_to_end_with_a_provider(org, owner, deal, openai):
    make_workflow(org, name="Review funnel", key="review-funnel", actions=[task("t", "Ask for a review")])
    wf, _ = workflow_import_yaml(organization=org, by=owner, text=FOLLOW_UP_EXAMPLE)
    workflow_transition(workflow_id=wf.pk, name="activate", by=owner)
    openai.reply(200, chat("Thank you, Ada, for trusting us with the Website!"))
    openai.reply(200, chat('{"route": "negative", "reason": "the subject is a plain thank-you"}'))
    deal_move_to_stage(deal=Deal.objects.get(pk=deal.pk), stage=stage(org, "won"))
    drain()
    time_passes()  # the two hours
    sweep(fan_out=False)
    run = WorkflowRun.objects.get(workflow=wf)
    assert run.status == "completed", run.error
    email = EmailMessage.objects.get()
    assert email.body == "Thank you, Ada, for trusting us with the Website!" and email.to == "ada@example.com"
    assert Task.objects.filter(title="Follow up — Ada (needs attention)").count() == 1
    assert [s.node_id for s in run.actions.order_by("position")] == [
        "wait-2h", "draft-sms", "send-sms", "sentiment-router", "create-task"]
