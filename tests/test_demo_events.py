"""The demo shows projects and other systems' events working: the billing system's command sends
an overdue invoice naming the contact by phone and the reminder goes out; the final inspection
done completes its project through a workflow, whose completion asks the client for a review."""

from io import StringIO

import pytest
from django.core.management import call_command

from crm_automation.automation.models import WorkflowRun
from crm_automation.crm.models import BusinessEvent, EmailMessage, Project, Task
from tests.conftest import drain


@pytest.fixture
def demo(db, monkeypatch):
    monkeypatch.setenv("DEMO_PASSWORD", "demo-password-1")
    call_command("seed_demo", stdout=StringIO())
    while drain():
        pass


def test_the_billing_systems_overdue_invoice_emails_the_contact_found_by_phone(demo):
    out = StringIO()
    call_command("send_demo_event", "--direct", "--days", "21", stdout=out)
    assert "Recorded invoice.overdue" in out.getvalue()
    while drain():
        pass
    event = BusinessEvent.objects.get()
    assert event.contact.first_name == "Ada" and event.source == "billing-demo"
    email = EmailMessage.objects.get(subject__startswith="Invoice INV-")
    assert email.to == "ada@example.com" and "1250.00" in email.body
    assert Task.objects.filter(title__startswith="Call Ada about invoice", priority="high").count() == 1
    assert WorkflowRun.objects.get(workflow__name="Overdue invoice reminder").status == "completed"


def test_the_final_inspection_completes_the_project_and_the_client_is_asked_for_a_review(demo):
    task = Task.objects.get(title="Final inspection")
    task.status = "done"
    task.save()
    while drain():
        pass
    project = Project.objects.get(name="Analytical website build")
    assert project.status == "completed"
    review = WorkflowRun.objects.get(workflow__name="Ask for a review when a project is completed")
    assert review.status == "completed" and review.event.caused_by_run_id is not None  # a workflow completed it
    assert EmailMessage.objects.filter(to="ada@example.com", subject="How did Analytical website build go?").exists()


def test_seeding_again_adds_nothing_twice(demo):
    call_command("seed_demo", stdout=StringIO())
    assert Project.objects.filter(name="Analytical website build").count() == 1
    assert WorkflowRun.objects.filter(workflow__name="Overdue invoice reminder").count() == 0
