"""`contact_created` and `task_completed`: a new contact travels in its event ({{contact.email}});
a task marked done starts workflows about its deal or lead ({{deal.title}}, {{trigger.task.title}}),
once per open → done, and a task without either still starts them."""

from crm_automation.automation.models import AutomationEvent, WorkflowRun
from crm_automation.crm.models import Contact, EmailMessage, Task
from tests.conftest import drain, make_workflow


def test_a_new_contact_starts_its_workflows_with_the_contact_in_the_event(org):
    make_workflow(org, name="Hello", trigger_type="contact_created", trigger_config={},
                  conditions={"combinator": "and", "rules": [{"field": "contact.email", "operator": "is_not_empty"}]},
                  actions=[{"type": "send_email", "config": {"to": "{{contact.email}}",
                                                             "subject": "Hello {{trigger.contact.first_name}}"}}])
    Contact.objects.create(organization=org, first_name="Alan", email="alan@example.com")
    Contact.objects.create(organization=org, first_name="No", email="")  # the condition is false
    drain()
    assert list(EmailMessage.objects.values_list("to", "subject")) == [("alan@example.com", "Hello Alan")]
    assert WorkflowRun.objects.get().trigger_type == "contact_created"


def test_a_task_done_starts_workflows_about_its_deal_once(org, deal, owner):
    make_workflow(org, name="Next step", trigger_type="task_completed", trigger_config={},
                  actions=[{"type": "create_task", "config": {
                      "title": "After “{{trigger.task.title}}”: next step for {{deal.title}}"}}])
    task = Task.objects.create(organization=org, title="Send the proposal", deal=deal, assignee=owner)
    task.status = "done"
    task.save()
    task.save()  # done already: not a completion
    task.title = "Send the proposal (v2)"
    task.save(update_fields=["title"])
    drain()
    run = WorkflowRun.objects.get()
    assert (run.trigger_entity_type, run.trigger_entity_id) == ("deal", deal.pk)
    assert Task.objects.filter(title="After “Send the proposal”: next step for Website").exists()
    assert AutomationEvent.objects.filter(kind="task_completed").count() == 1


def test_a_task_without_deal_or_lead_still_starts_workflows(org, owner):  # owner: an admin to notify
    make_workflow(org, name="Log", trigger_type="task_completed", trigger_config={},
                  actions=[{"type": "notify", "config": {"title": "Done: {{trigger.task.title}}"}}])
    task = Task.objects.create(organization=org, title="Tidy the CRM")
    task.status = "done"
    task.save()
    drain()
    assert WorkflowRun.objects.get().status == "completed"


def test_workflow_created_tasks_and_reopened_tasks_do_not_fire(org, deal):
    make_workflow(org, name="Next step", trigger_type="task_completed", trigger_config={},
                  actions=[{"type": "create_task", "config": {"title": "Next"}}])
    Task.objects.bulk_create([Task(organization=org, title="Made by a workflow", status="done", deal=deal)])
    task = Task.objects.create(organization=org, title="Open", deal=deal, status="done")  # created done
    task.status = "open"
    task.save()
    drain()
    assert not WorkflowRun.objects.exists()
