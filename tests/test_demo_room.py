"""The demo leaves room for the newcomer's first workflow, and the list page and `seed_demo`
say how many more workflows can be activated (docs/product.md#plans)."""

import pytest
from django.core.management import call_command
from django.test import Client

from crm_automation.automation.management.commands.seed_demo import room_for_more
from crm_automation.automation.models import Workflow, WorkflowStatus
from crm_automation.automation.services.workflows import workflow_create, workflow_transition
from crm_automation.crm.models import Organization
from tests.conftest import make_workflow

pytestmark = pytest.mark.django_db
LIST = "/crm/automation/"


@pytest.fixture
def demo(capsys, monkeypatch) -> Organization:  # capsys first: it hears seed_demo
    monkeypatch.setenv("DEMO_PASSWORD", "demo-pass-123")
    call_command("seed_demo")
    return Organization.objects.get(slug="demo")


def test_after_seed_demo_the_demo_admin_activates_a_workflow_of_their_own(demo, capsys):
    demo_user = demo.memberships.get(user__username="demo").user
    live = Workflow.objects.filter(organization=demo, status=WorkflowStatus.ACTIVATED).count()
    assert live >= 10  # every capability of the demo stays live

    mine = workflow_create(organization=demo, name="My first workflow", by=demo_user,
                           trigger_type="deal_stage_change", trigger_config={"to_stage": "won"},
                           actions=[{"type": "create_task", "config": {"title": "Call {{deal.title}}"}}])
    workflow_transition(workflow_id=mine.pk, name="activate", by=demo_user)
    assert Workflow.objects.get(pk=mine.pk).status == WorkflowStatus.ACTIVATED
    out = capsys.readouterr().out
    assert f"Demo Agency is on the Enterprise plan: {live} workflows active, no limit" in out

    client = Client()
    client.force_login(demo_user)
    assert f"<strong>{live + 1}</strong> active · no limit on the Enterprise plan" in client.get(LIST).content.decode()


def test_a_demo_seeded_on_pro_before_is_told_how_to_make_room(demo):
    Organization.objects.filter(pk=demo.pk).update(plan=Organization.Plan.PRO)
    demo.refresh_from_db()
    extra = Workflow.objects.filter(organization=demo, status=WorkflowStatus.ACTIVATED).order_by("pk")[10:]
    Workflow.objects.filter(pk__in=list(extra.values_list("pk", flat=True))).update(status=WorkflowStatus.PAUSED)
    assert room_for_more(demo) == ("Demo Agency is on the Pro plan: 10 of 10 workflows active, none more can be: "
                                   "pause one, or set the organization's plan to Enterprise in the admin.")
    call_command("seed_demo")  # the plan someone chose stays
    assert Organization.objects.get(pk=demo.pk).plan == Organization.Plan.PRO


def test_the_list_says_how_many_more_can_be_activated(org, owner):
    for i in range(7):
        make_workflow(org, name=f"Flow {i}")
    client = Client()
    client.force_login(owner)
    assert "<strong>7 of 10</strong> active · 3 more can be activated" in client.get(LIST).content.decode()
    assert room_for_more(org) == "Acme is on the Pro plan: 7 of 10 workflows active, 3 more can be."
    for i in range(7, 10):
        make_workflow(org, name=f"Flow {i}")
    assert "the Pro plan's limit: pause one to activate another" in client.get(LIST).content.decode()
