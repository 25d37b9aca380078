"""`contact_updated` and `task_updated`: a save that changes a contact's or a task's tracked
fields is one event with the old and new values, decided under the row lock; workflows watch some
fields or all and, with `crossing`, fire once when the record starts to meet their conditions. A
task done stays one `task_completed` event, offered to `task_updated` workflows too."""

import re

import pytest
import yaml
from django.core.management import call_command
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from rest_framework.test import APIClient

from crm_automation.automation.definition import catalog
from crm_automation.automation.models import AutomationEvent, Workflow, WorkflowDecision, WorkflowRun
from crm_automation.automation.services.versions import parse_yaml, workflow_export_yaml, workflow_import_yaml
from crm_automation.automation.triggers import record_changes as field_changes
from crm_automation.crm.models import Contact, Notification, Organization, Task
from crm_automation.crm.services import record_update
from crm_automation.web.words import trigger_in_words
from tests.conftest import drain, make_workflow

NOTE = [{"type": "notify", "config": {"title": "{{contact.first_name}}: {{trigger.changed.email.old}} → "
                                               "{{trigger.changed.email.new}} ({{contact.email}})"}}]
TASK_NOTE = [{"type": "notify", "config": {"title": "{{trigger.task.title}} for {{deal.title}}: "
                                                    "{{trigger.changed.status.old}} → {{trigger.changed.status.new}}"}}]


def rule(field, operator, value=None) -> dict:
    found = {"field": field, "operator": operator}
    if value is not None:
        found["value"] = value
    return found


def events(kind: str) -> list[AutomationEvent]:
    return list(AutomationEvent.objects.filter(kind=kind).order_by("id"))


def titles() -> list[str]:
    return list(Notification.objects.order_by("id").values_list("title", flat=True))


def edit(record, **fields) -> None:
    """A plain save of a fresh copy (as a form or the shell does), then the worker."""
    record = type(record).objects.get(pk=record.pk)
    for name, value in fields.items():
        setattr(record, name, value)
    record.save()
    drain()


@pytest.fixture
def task(org, deal, owner):
    return Task.objects.create(organization=org, title="Send the proposal", deal=deal, assignee=owner)


# --- The save path --------------------------------------------------------------------------------
def test_a_contact_change_is_one_event_with_old_and_new_values_and_the_contact(org, contact):
    contact = Contact.objects.get(pk=contact.pk)
    contact.email, contact.phone = "ada@analytical.example", "+44 20 7946 0000"
    with CaptureQueriesContext(connection) as queries:
        contact.save()
    sql = [q["sql"] for q in queries]
    assert sum(s.startswith("INSERT") and "automation_automationevent" in s for s in sql) == 1
    (event,) = events("contact_updated")
    assert event.entity_type == "contact"
    assert event.payload["changed"] == {"email": ["ada@example.com", "ada@analytical.example"],
                                        "phone": ["", "+44 20 7946 0000"]}
    assert event.payload["contact"] == {"id": contact.pk, "first_name": "Ada", "last_name": "Lovelace",
                                        "email": "ada@analytical.example", "phone": "+44 20 7946 0000",
                                        "company": "Analytical", "custom": {}, "archived_at": None}
    # The same contact as contact_created's event: enrollment and history see one record.
    assert event.entity_id == AutomationEvent.objects.get(kind="contact_created").entity_id


def test_nothing_tracked_changed_no_event_and_an_untracked_write_reads_nothing(org, contact, task):
    contact = Contact.objects.get(pk=contact.pk)
    contact.save()  # the same values
    contact.email = "ada@example.com"
    contact.save(update_fields=["email"])
    task = Task.objects.get(pk=task.pk)
    task.save()
    task.description = "Two pages, one price"
    with CaptureQueriesContext(connection) as queries:
        task.save(update_fields=["description"])  # not tracked: no locked read either
    assert [q["sql"].split()[0] for q in queries] == ["UPDATE"]
    assert not AutomationEvent.objects.filter(kind__in=["contact_updated", "task_updated", "task_completed"]).exists()


def test_what_changed_is_read_from_the_stored_row_not_from_a_stale_copy(org, contact):
    stale = Contact.objects.get(pk=contact.pk)
    fresh = Contact.objects.get(pk=contact.pk)
    fresh.email = "new@example.com"
    fresh.save()
    stale.phone = "555"  # a full save of the stale copy also writes the old email back
    stale.save()
    first, second = events("contact_updated")
    assert first.payload["changed"] == {"email": ["ada@example.com", "new@example.com"]}
    assert second.payload["changed"] == {"email": ["new@example.com", "ada@example.com"], "phone": ["", "555"]}


def test_a_task_change_is_about_its_deal_and_carries_the_task(org, deal, task, teammate):
    record_update(record=task, by=teammate, changes={"priority": "urgent", "due_date": "2030-01-31"})
    (event,) = events("task_updated")
    assert (event.entity_type, event.entity_id) == ("deal", deal.pk)
    assert event.payload["changed"] == {"due_date": [None, "2030-01-31"], "priority": ["normal", "urgent"]}
    assert event.payload["task"] == {"id": task.pk, "title": "Send the proposal", "priority": "urgent",
                                     "status": "open", "due_date": "2030-01-31", "assignee": "owner"}


def test_the_event_commits_with_the_change_and_a_rollback_leaves_none(org, contact,
                                                                      django_capture_on_commit_callbacks):
    with pytest.raises(RuntimeError), transaction.atomic():
        gone = Contact.objects.get(pk=contact.pk)
        gone.email = "gone@example.com"
        gone.save()
        raise RuntimeError("the request failed after the save")
    assert not events("contact_updated")
    with django_capture_on_commit_callbacks() as callbacks:
        kept = Contact.objects.get(pk=contact.pk)
        kept.company = "Analytical Engines"
        kept.save()
    assert [e.payload["changed"] for e in events("contact_updated")] == [
        {"company": ["Analytical", "Analytical Engines"]}]
    assert callbacks == []  # nudges are off in tests; no broker call either way


# --- Matching -------------------------------------------------------------------------------------
def test_a_workflow_watching_the_email_fires_on_its_change_only(org, owner, contact):
    workflow = make_workflow(org, name="Email", trigger_type="contact_updated", trigger_config={"fields": ["email"]},
                             actions=NOTE)
    edit(contact, phone="555")
    assert not WorkflowRun.objects.exists()
    assert WorkflowDecision.objects.get(workflow=workflow).reason == ("the workflow watches Email; this change was "
                                                                      "to Phone")
    edit(contact, email="ada@analytical.example")
    assert titles() == ["Ada: ada@example.com → ada@analytical.example (ada@analytical.example)"]


def test_crossing_fires_once_when_the_contact_starts_to_meet_the_conditions(org, owner, contact):
    make_workflow(org, name="Key account", trigger_type="contact_updated", trigger_config={"crossing": True},
                  conditions={"combinator": "and", "rules": [rule("contact.company", "eq", "Big Co"),
                                                             rule("contact.email", "is_not_empty")]},
                  actions=[{"type": "notify", "config": {"title": "{{contact.first_name}} is at {{contact.company}} "
                                                                  "(was {{trigger.changed.company.old}})"}}])
    edit(contact, company="Big Co")      # crosses
    edit(contact, phone="555")           # still at Big Co: no
    edit(contact, company="Small Co")    # leaves: no
    edit(contact, company="Big Co")      # crosses again
    edit(contact, email="")              # no longer meets them
    edit(contact, email="ada@big.example")  # meets them again through another field: crosses
    assert titles() == ["Ada is at Big Co (was Analytical)", "Ada is at Big Co (was Small Co)",
                        "Ada is at Big Co (was )"]
    refused = WorkflowDecision.objects.filter(outcome="condition_false").values_list("reason", flat=True)
    assert any("met the conditions before this change already" in r for r in refused)


def test_crossing_on_a_task_keeps_its_unchanged_fields(org, owner, task):
    make_workflow(org, name="Escalated", trigger_type="task_updated",
                  trigger_config={"fields": ["priority"], "crossing": True},
                  conditions={"combinator": "and", "rules": [rule("trigger.task.priority", "in", ["high", "urgent"]),
                                                             rule("trigger.task.title", "contains", "proposal")]},
                  actions=[{"type": "notify", "config": {
                      "title": "{{trigger.task.priority}}: {{trigger.task.title}} on {{deal.title}}"}}])
    edit(task, priority="urgent")  # crosses
    edit(task, priority="high")    # met before already: the title, unchanged, is read before the save too
    edit(task, title="Send the proposal today")  # not watched
    edit(task, priority="low")
    edit(task, priority="urgent")  # crosses again
    assert titles() == ["urgent: Send the proposal on Website", "urgent: Send the proposal today on Website"]


def test_a_task_done_is_one_event_offered_to_both_triggers(org, owner, deal, task):
    completed = make_workflow(org, name="Completed", trigger_type="task_completed", trigger_config={},
                              actions=[{"type": "notify", "config": {"title": "Done: {{trigger.task.title}}"}}])
    updated = make_workflow(org, name="Status", trigger_type="task_updated", trigger_config={"fields": ["status"]},
                            actions=TASK_NOTE)
    titled = make_workflow(org, name="Titles", trigger_type="task_updated", trigger_config={"fields": ["title"]},
                           actions=TASK_NOTE)
    edit(task, status="done")
    (event,) = AutomationEvent.objects.filter(kind__startswith="task_")
    assert event.kind == "task_completed" and event.payload["changed"] == {"status": ["open", "done"]}
    runs = WorkflowRun.objects.order_by("workflow_id")
    assert [(r.workflow_id, r.event_id, r.status) for r in runs] == [(completed.pk, event.pk, "completed"),
                                                                     (updated.pk, event.pk, "completed")]
    assert sorted(titles()) == ["Done: Send the proposal", "Send the proposal for Website: open → done"]
    assert WorkflowDecision.objects.get(workflow=titled).reason == ("the workflow watches Title; this change was to "
                                                                    "Status")
    edit(task, status="open")  # reopened: an update, not a completion
    assert [e.kind for e in AutomationEvent.objects.filter(kind__startswith="task_").order_by("id")] == [
        "task_completed", "task_updated"]
    assert WorkflowRun.objects.filter(workflow=completed).count() == 1
    assert WorkflowRun.objects.filter(workflow=updated).count() == 2


def test_another_organizations_workflow_never_runs(org, owner, contact, other_org, outsider):
    mine = make_workflow(org, name="Mine", trigger_type="contact_updated", trigger_config={}, actions=NOTE)
    theirs = make_workflow(other_org, name="Theirs", trigger_type="contact_updated", trigger_config={}, actions=NOTE)
    their_contact = Contact.objects.create(organization=other_org, first_name="Eve", email="eve@rival.example")
    edit(contact, email="ada@new.example")
    assert list(WorkflowRun.objects.values_list("workflow_id", "organization_id")) == [(mine.pk, org.pk)]
    assert not WorkflowDecision.objects.filter(workflow=theirs).exists()
    assert list(Notification.objects.values_list("user__username", flat=True)) == ["owner"]
    edit(their_contact, email="eve@rival2.example")
    assert WorkflowRun.objects.get(workflow=theirs).organization_id == other_org.pk
    assert set(Notification.objects.filter(organization=other_org).values_list("user__username", flat=True)) == {
        "outsider"}


# --- Validation, documents, words -------------------------------------------------------------------
def test_templates_of_the_created_and_completed_triggers_are_offered():
    contact, task = catalog.fields_for("contact_updated"), catalog.fields_for("task_updated")
    assert set(catalog.fields_for("contact_created")) <= set(contact)
    assert set(catalog.fields_for("task_completed")) <= set(task)
    assert "contact.email" in contact and "trigger.changed.email.old" in contact
    assert {"deal.title", "lead.name", "trigger.task.title", "trigger.task.status"} <= set(task)
    assert "trigger.changed.priority.new" in task


@pytest.mark.parametrize(("trigger_type", "allowed"), [
    ("contact_updated", "first_name, last_name, email, phone, company, custom, archived_at (or one of your own: "
                        "custom.<key>)"),
    ("task_updated", "title, due_date, priority, status, assignee")])
def test_an_unknown_field_is_refused_naming_the_allowed_ones(org, trigger_type, allowed):
    assert field_changes.validate(trigger_type, {"fields": ["colour"]}) == [
        ("config.fields", f"must be a list of these fields: {allowed}")]
    with pytest.raises(Exception, match=re.escape(allowed)):
        make_workflow(org, trigger_type=trigger_type, trigger_config={"fields": ["colour"]},
                      actions=[{"type": "notify", "config": {"title": "Changed"}}])


CONTACT_YAML = """id: email-watch
name: Email watch
nodes:
- id: trigger
  type: workflow
  data:
    subtype: chat-app
    label: Contact email
    config:
      event: {event}
      fields: {fields}
      crossing: true
- id: tell
  type: workflow
  data:
    subtype: desktop-notification
    label: Tell
    config:
      title: '{{{{contact.email}}}} was {{{{trigger.changed.email.old}}}}'
edges:
- source: trigger
  target: tell
"""


def test_the_api_refuses_an_unknown_field_with_its_place_and_saves_nothing(org, owner):
    client = APIClient()
    client.force_authenticate(owner)
    refused = client.post("/api/v1/workflows/", CONTACT_YAML.format(event="contact.updated", fields="[email, colour]"),
                          content_type="application/yaml")
    assert refused.status_code == 400, refused.content
    (error,) = refused.json()["errors"]
    assert error["place"] == "nodes[trigger].data.config.fields" and error["line"] == 11
    assert "first_name, last_name, email, phone, company, custom" in error["message"]
    assert not Workflow.objects.exists()
    created = client.post("/api/v1/workflows/", CONTACT_YAML.format(event="contact.updated", fields="[email]"),
                          content_type="application/yaml")
    assert created.status_code == 201, created.content
    assert Workflow.objects.get().trigger_type == "contact_updated"


@pytest.mark.parametrize(("event", "trigger_type", "fields"), [
    ("contact.updated", "contact_updated", "[email, phone]"), ("contact_updated", "contact_updated", "[email]"),
    ("task.updated", "task_updated", "[status, assignee]")])
def test_yaml_round_trip(org, owner, event, trigger_type, fields):
    text = CONTACT_YAML.format(event=event, fields=fields)
    if trigger_type == "task_updated":
        text = text.replace("{{contact.email}} was {{trigger.changed.email.old}}",
                            "{{trigger.task.title}} was {{trigger.changed.status.old}}")
    definition = parse_yaml(text, org.pk)["definition"]
    assert (definition["trigger_type"], definition["trigger_config"]) == (
        trigger_type, {"fields": yaml.safe_load(fields), "crossing": True})
    workflow, _ = workflow_import_yaml(organization=org, by=owner, text=text)
    exported = workflow_export_yaml(workflow)
    assert yaml.safe_load(exported)["nodes"][0]["data"]["config"]["event"] == trigger_type  # our spelling out
    again, _ = workflow_import_yaml(organization=org, by=owner, text=exported)
    assert again.current_version.definition["trigger_type"] == trigger_type
    assert again.current_version.definition["trigger_config"] == definition["trigger_config"]
    copy = workflow_export_yaml(again)  # the copy's id and name are its own
    assert copy.replace("email-watch-2", "email-watch").replace("Email watch (2)", "Email watch") == exported


def test_the_triggers_in_words():
    assert trigger_in_words("contact_updated", {"fields": ["email", "phone"]}, {}) == \
        "A contact's email or phone changes"
    assert trigger_in_words("contact_updated", {}, {}) == "A contact is updated"
    assert trigger_in_words("task_updated", {"fields": ["due_date"], "crossing": True}, {}) == \
        "A task's due date changes, when it starts to meet the conditions"
    assert dict(catalog.TRIGGER_CHOICES)["task_updated"] == "A task is updated"


def test_the_demo_tells_the_admins_of_a_new_contact_email(db, monkeypatch):
    monkeypatch.setenv("DEMO_PASSWORD", "demo-pass-123")
    call_command("seed_demo")
    call_command("seed_demo")
    org = Organization.objects.get(slug="demo")
    workflow = Workflow.objects.get(organization=org, name="Contact email changed")
    assert (workflow.status, workflow.trigger_type) == ("activated", "contact_updated")
    drain()  # the demo's own history first
    edit(Contact.objects.get(organization=org, email="ada@example.com"), email="ada@analytical.example")
    note = Notification.objects.get(organization=org, title="Ada Lovelace's email changed")
    assert note.body == "Was ada@example.com, now ada@analytical.example."
