"""The product documents' Post-Completion Follow-Up imports as written (its indentation restored
and its {{…}} values quoted, as YAML needs) and runs end to end on fake providers: wait → agent →
SMS with reply → router → the review funnel sub-workflow, or an urgent task."""

import pytest

from crm_automation.automation.models import Workflow, WorkflowRun, WorkflowRunAction
from crm_automation.automation.runtime.tasks import continue_runs, sweep
from crm_automation.automation.services.versions import workflow_import_yaml
from crm_automation.crm.models import Contact, Project, SmsMessage, SmsSettings, Task
from crm_automation.crm.sms import inbound
from tests.conftest import drain, make_workflow, time_passes
from tests.fake_ai import chat, openai  # noqa: F401 (the fixtures)

AS_WRITTEN = """\
id: post-completion-follow-up
name: Post-Completion Follow-Up
_status: production
nodes:
- id: trigger
  type: workflow
  data:
    subtype: chat-app
    label: Project Completed
    config:
      event: project.completed
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
      additionalPrompt: "Write a warm 1-sentence SMS thanking
        {{trigger.contact.first_name}} for the {{trigger.project.service_type}} job.
        Ask how everything went. Max 160 chars."
- id: send-sms
  type: workflow
  data:
    subtype: tool-call
    label: Send SMS
    config:
      toolName: crm/send_sms
      defaults:
        to: "{{trigger.contact.phone}}"
        body: "{{Draft SMS}}"
        wait_for_reply: true
        reply_timeout_hours: 48
- id: sentiment-router
  type: workflow
  data:
    subtype: router
    label: Sentiment Router
    config:
      classificationPrompt: "Read the customer reply: '{{Send SMS.reply}}'.
        Classify sentiment as: positive, negative, or no_reply."
      routes:
      - id: route-0
        label: positive
      - id: route-1
        label: negative
      - id: route-2
        label: no_reply
- id: start-review-funnel
  type: workflow
  data:
    subtype: sub-workflow
    label: Start Review Funnel
    config:
      workflowId: review-testimonial-funnel
      awaitResponse: false # fire-and-forget; don't block this run
- id: create-task
  type: workflow
  data:
    subtype: tool-call
    label: Create Follow-Up Task
    config:
      toolName: crm/create_task
      defaults:
        title: "Follow up — {{trigger.contact.first_name}} (needs attention)"
        priority: urgent
        project_id: "{{trigger.project.id}}"
edges:
- { source: trigger, target: wait-2h }
- { source: wait-2h, target: draft-sms }
- { source: draft-sms, target: send-sms }
- { source: send-sms, target: sentiment-router }
- { source: sentiment-router, target: start-review-funnel, sourceHandle: route-0 }
- { source: sentiment-router, target: create-task, sourceHandle: route-1 }
- { source: sentiment-router, target: create-task, sourceHandle: route-2 }
"""


@pytest.fixture
def ready(org, owner, openai):  # noqa: F811
    SmsSettings.objects.create(organization=org, from_number="+15550009999", auth_token="t")
    make_workflow(org, name="Review funnel", key="review-testimonial-funnel", trigger_type="manual_project",
                  trigger_config={}, actions=[{"type": "create_task", "label": "Review",
                                               "config": {"title": "Ask {{project.name}}'s client for a review"}}])
    workflow, notes = workflow_import_yaml(organization=org, by=owner, text=AS_WRITTEN)
    assert workflow.status == "activated", notes
    ada = Contact.objects.create(organization=org, first_name="Ada", phone="+1 555 010 0100")
    project = Project.objects.create(organization=org, name="Roof", service_type="roof repair", contact=ada,
                                     status="active")
    return workflow, project, openai


def complete(project) -> WorkflowRun:
    project.status = "completed"
    project.save()
    drain()
    run = WorkflowRun.objects.get(workflow__key="post-completion-follow-up")
    assert run.status == "waiting"  # two hours, holding nothing
    time_passes(pk=run.pk)
    sweep(fan_out=False)
    run.refresh_from_db()
    return run


def reply(org, text: str) -> None:
    inbound.receive(SmsSettings.objects.get(organization=org), {"MessageSid": f"SM{text[:5]}", "From": "+15550100100",
                                                                "Body": text})


def test_a_happy_reply_starts_the_review_funnel(org, ready):
    workflow, project, model = ready
    model.reply(200, chat("Hi Ada, thanks for choosing us for the roof repair! How did it go?"))
    run = complete(project)
    assert run.status == "waiting"  # for the reply now
    sms = SmsMessage.objects.get()
    assert sms.to == "+15550100100" and sms.body.startswith("Hi Ada") and sms.status == "sent"
    model.reply(200, chat('{"route": "positive", "reason": "delighted"}'))
    reply(org, "It was perfect, thank you!")
    continue_runs([run.pk])
    run.refresh_from_db()
    assert run.status == "completed", run.error
    steps = {s.node_id: s for s in WorkflowRunAction.objects.filter(run=run)}
    continue_runs([steps["start-review-funnel"].result["child_run"]])  # (fire-and-forget: its own run)
    assert steps["send-sms"].result["reply"] == "It was perfect, thank you!"
    assert steps["sentiment-router"].result["handle"] == "route-0" and "create-task" not in steps
    assert Task.objects.get().title == "Ask Roof's client for a review"  # the funnel ran
    assert Workflow.objects.get(key="review-testimonial-funnel").runs.count() == 1


def test_no_reply_in_48_hours_makes_an_urgent_task_on_the_project(org, ready):
    workflow, project, model = ready
    model.reply(200, chat("Hi Ada, how did the roof repair go?"))
    run = complete(project)
    model.reply(200, chat('{"route": "no_reply", "reason": "no answer"}'))
    time_passes(pk=run.pk)
    sweep(fan_out=False)
    run.refresh_from_db()
    assert run.status == "completed", run.error
    assert WorkflowRunAction.objects.get(run=run, node_id="send-sms").result["timed_out"] is True
    task = Task.objects.get()
    assert task.title == "Follow up — Ada (needs attention)" and task.priority == "urgent" and task.project == project
