"""The ready-made workflow templates: each loads as a draft, exports as the same text, can be
activated and runs end to end; the command that loads them; the admin page that offers them."""

import pytest
import yaml
from django.core import mail
from django.core.management import CommandError, call_command
from django.urls import reverse

from crm_automation.automation import workflow_templates
from crm_automation.automation.models import Workflow, WorkflowRun
from crm_automation.automation.runtime.tasks import sweep
from crm_automation.automation.services.versions import workflow_export_yaml
from crm_automation.automation.services.workflows import workflow_transition
from crm_automation.crm.models import Deal, EmailMessage, Lead, Notification, Organization, Stage, Task
from crm_automation.crm.services import deal_move_to_stage
from tests.conftest import drain, make_org, stage, time_passes

KEYS = ["annual-check-in", "appointment-reminder", "birthday-check-ins", "customer-review-testimonial-funnel",
        "estimate-follow-up-3-touch", "invoice-overdue-reminder", "large-deal-approval", "lost-deal-feedback",
        "missed-call-follow-up", "new-lead-welcome-sequence", "new-lead-welcome-sms", "onboarding-flow-kickoff",
        "post-completion-follow-up", "proposal-follow-up-3-touch", "stale-deal-nudge", "video-production-pipeline",
        "weekly-pipeline-review", "won-deal-kickoff"]
PAGE = reverse("admin:automation_workflow_templates")


def activated(org, owner, key: str) -> Workflow:
    workflow = workflow_templates.load(organization=org, by=owner, key=key)
    return workflow_transition(workflow_id=workflow.pk, name="activate", by=owner)


def the_run() -> WorkflowRun:
    return WorkflowRun.objects.get()


def later() -> None:
    """The current wait is over and the sweep resumes the run."""
    time_passes()
    sweep(fan_out=False)


def sent() -> list[tuple[str, str]]:
    return list(EmailMessage.objects.filter(status="sent").order_by("pk").values_list("to", "subject"))


def tasks() -> list[tuple[str, str, str | None]]:
    return list(Task.objects.order_by("pk").values_list("title", "priority", "assignee__username"))


# --- The files ----------------------------------------------------------------------------------
def test_the_shipped_templates_are_listed_by_key():
    assert workflow_templates.keys() == KEYS
    for template in workflow_templates.available():
        assert (workflow_templates.DIRECTORY / f"{template.key}.yaml").read_text() == template.text
        assert template.name and template.description and template.node_count >= 5


def test_configs_are_written_in_the_key_order_postgresql_keeps():
    """jsonb stores an object's keys shortest first, then bytewise: configs written in that order
    come back from either database as written, so the export is the same text on both."""
    def check(value, place):
        if isinstance(value, dict):
            assert list(value) == sorted(value, key=lambda k: (len(k.encode()), k.encode())), place
            for key, item in value.items():
                check(item, f"{place}.{key}")
        elif isinstance(value, list):
            for i, item in enumerate(value):
                check(item, f"{place}[{i}]")

    for template in workflow_templates.available():
        for node in yaml.safe_load(template.text)["nodes"]:
            config = node["data"]["config"]
            if node["data"]["subtype"] == "tool-call":
                config = config["defaults"]
            if node["data"]["subtype"] != "chat-app":
                check(config, f"{template.key}: nodes[{node['id']}]")


@pytest.mark.parametrize("key", KEYS)
def test_a_template_loads_as_a_draft_exports_the_same_text_and_activates(org, owner, key, settings):
    # (The routines' AI steps activate once a provider is set up; none is asked here.)
    settings.AI = {**settings.AI, "PROVIDER": "openai", "MODEL": "gpt-test", "API_KEY": "sk-test"}
    if key == "post-completion-follow-up":  # it starts the funnel, which must be there first
        workflow_templates.load(organization=org, by=owner, key="customer-review-testimonial-funnel")
    workflow = workflow_templates.load(organization=org, by=owner, key=key)
    assert (workflow.status, workflow.key, workflow.created_by) == ("draft", key, owner)
    assert workflow_export_yaml(workflow) == workflow_templates.get(key).text
    workflow = workflow_transition(workflow_id=workflow.pk, name="activate", by=owner)
    assert workflow.status == "activated"


def test_an_unknown_template_is_refused_with_the_choices(org, owner):
    with pytest.raises(workflow_templates.UnknownTemplate, match="no workflow template “nope”; choose one of "
                                                                 "annual-check-in, appointment-reminder, "):
        workflow_templates.load(organization=org, by=owner, key="nope")
    assert not Workflow.objects.exists()


# --- Running them -------------------------------------------------------------------------------
def test_won_deal_kickoff(org, owner, deal):
    activated(org, owner, "won-deal-kickoff")
    deal_move_to_stage(deal=deal, stage=stage(org, "won"))
    drain()
    assert the_run().status == "completed"
    assert tasks() == [("Kick off Website", "high", "owner")]
    assert Deal.objects.get(pk=deal.pk).probability == 100
    assert sent() == [("ada@example.com", "Welcome aboard: Website")] and len(mail.outbox) == 1
    assert list(Notification.objects.values_list("user__username", "title", "body")) == [
        ("owner", "Website was won", "Kickoff task for owner: Kick off Website.")]


@pytest.mark.parametrize(("decision", "expected"), [
    ("approved", [("Send the approved terms of Website (owner: fine)", "high", "owner")]),
    ("rejected", [("Rework the terms of Website: fine", "urgent", "owner")]),
])
def test_large_deal_approval_waits_for_an_admin(org, owner, deal, decision, expected):
    from crm_automation.automation.runtime.tasks import continue_runs
    from crm_automation.automation.services.runs import run_answer

    Deal.objects.filter(pk=deal.pk).update(amount=25000, probability=40)
    activated(org, owner, "large-deal-approval")
    deal_move_to_stage(deal=Deal.objects.get(pk=deal.pk), stage=stage(org, "negotiation"))
    drain()
    assert the_run().status == "waiting" and Notification.objects.get().title.startswith("A workflow asks you")
    run_answer(run_id=the_run().pk, by=owner, node_id="approve-terms", decision=decision, comment="fine")
    continue_runs([the_run().pk])
    assert the_run().status == "completed" and tasks() == expected
    assert Deal.objects.get(pk=deal.pk).probability == (80 if decision == "approved" else 40)


def test_large_deal_approval_tells_the_admins_when_nobody_answers(org, owner, deal):
    Deal.objects.filter(pk=deal.pk).update(amount=25000)
    activated(org, owner, "large-deal-approval")
    deal_move_to_stage(deal=Deal.objects.get(pk=deal.pk), stage=stage(org, "negotiation"))
    drain()
    later()
    assert the_run().status == "completed" and not tasks()
    assert Notification.objects.filter(title="Nobody approved the terms of Website in 2 days").count() == 1


def test_won_deal_kickoff_without_a_contact_still_does_the_rest(org, owner, deal):
    Deal.objects.filter(pk=deal.pk).update(contact=None)
    activated(org, owner, "won-deal-kickoff")
    deal_move_to_stage(deal=Deal.objects.get(pk=deal.pk), stage=stage(org, "won"))
    drain()
    assert the_run().actions.get(node_id="welcome-email").status == "failed"  # errorPolicy: skip
    assert tasks() == [("Kick off Website", "high", "owner")] and Notification.objects.count() == 1
    assert Deal.objects.get(pk=deal.pk).probability == 100


def test_new_lead_welcome_sequence_runs_to_the_call_task(org, owner):
    activated(org, owner, "new-lead-welcome-sequence")
    Lead.objects.create(organization=org, name="Grace Hopper", email="grace@example.com", company="Compiler Co",
                        owner=owner)
    drain()
    assert sent() == [("grace@example.com", "Welcome, Grace Hopper")] and the_run().status == "waiting"
    later()
    assert sent()[1:] == [("grace@example.com", "Re: Welcome, Grace Hopper")] and the_run().status == "waiting"
    later()
    assert the_run().status == "completed"
    assert tasks() == [("Call Grace Hopper (Compiler Co)", "high", "owner")] and len(sent()) == 2


def test_new_lead_welcome_sequence_stops_with_a_note_once_the_lead_is_contacted(org, owner):
    activated(org, owner, "new-lead-welcome-sequence")
    lead = Lead.objects.create(organization=org, name="Grace Hopper", email="grace@example.com", owner=owner)
    drain()
    Lead.objects.filter(pk=lead.pk).update(status="contacted")
    later()
    assert the_run().status == "completed" and len(sent()) == 1
    assert tasks() == [("Grace Hopper is contacted: no follow-up email sent", "low", "owner")]


@pytest.fixture
def qualified_deal(org, contact, owner):
    return Deal.objects.create(organization=org, title="Website", amount=12000, stage=stage(org, "qualified"),
                               contact=contact, owner=owner)


def test_proposal_follow_up_touches_three_times(org, owner, qualified_deal):
    activated(org, owner, "proposal-follow-up-3-touch")
    deal_move_to_stage(deal=qualified_deal, stage=stage(org, "proposal"))
    drain()
    assert sent() == [] and the_run().status == "waiting"
    later()
    assert sent() == [("ada@example.com", "Your proposal for Website")]
    later()
    assert sent()[1:] == [("ada@example.com", "Re: Your proposal for Website")]
    later()
    assert the_run().status == "completed"
    assert tasks() == [("Urgent: call Ada about Website", "urgent", "owner")]


def test_proposal_follow_up_ends_when_the_deal_moves_on(org, owner, qualified_deal):
    activated(org, owner, "proposal-follow-up-3-touch")
    deal_move_to_stage(deal=qualified_deal, stage=stage(org, "proposal"))
    drain()
    later()
    deal_move_to_stage(deal=Deal.objects.get(pk=qualified_deal.pk), stage=stage(org, "negotiation"))
    later()
    assert the_run().status == "completed"
    assert len(sent()) == 1 and tasks() == []


def test_stale_deal_nudge_tells_the_owner_about_their_other_open_deals(org, owner):
    activated(org, owner, "stale-deal-nudge")
    # Made without the signal (no runs of their own): one other open deal of the owner, one won.
    Deal.objects.bulk_create([
        Deal(organization=org, title="Other open", stage=stage(org, "proposal"), owner=owner),
        Deal(organization=org, title="Won already", stage=stage(org, "won"), owner=owner)])
    Deal.objects.create(organization=org, title="Fresh", stage=stage(org, "new"), owner=owner)
    drain()
    assert the_run().status == "waiting"
    later()
    run = the_run()
    assert run.status == "completed"
    assert [r["title"] for r in run.actions.get(node_id="other-open-deals").result["output"]["rows"]] == [
        "Other open"]
    assert list(Notification.objects.values_list("user__username", "title", "body")) == [
        ("owner", "Fresh has not closed in 14 days", "It is still in New after two weeks. You have 1 other open "
                                                     "deals.")]
    assert tasks() == [("Move Fresh forward or close it", "high", "owner")]


def test_stale_deal_nudge_leaves_a_won_deal_alone(org, owner):
    activated(org, owner, "stale-deal-nudge")
    fresh = Deal.objects.create(organization=org, title="Fresh", stage=stage(org, "new"), owner=owner)
    drain()
    deal_move_to_stage(deal=fresh, stage=stage(org, "won"))
    later()
    assert the_run().status == "completed"
    assert not Notification.objects.exists() and tasks() == []


def test_lost_deal_feedback(org, owner, deal):
    activated(org, owner, "lost-deal-feedback")
    Deal.objects.filter(pk=deal.pk).update(probability=40)
    deal_move_to_stage(deal=Deal.objects.get(pk=deal.pk), stage=stage(org, "lost"))
    drain()
    assert the_run().status == "completed"
    assert sent() == [("ada@example.com", "What could we have done better, Ada?")]
    assert tasks() == [("Review why Website was lost", "normal", "owner")]
    assert Deal.objects.get(pk=deal.pk).probability == 0


# --- The command --------------------------------------------------------------------------------
def test_the_command_loads_every_template_as_a_draft(org, capsys):
    call_command("load_workflow_templates", "--org", "acme")
    assert sorted(Workflow.objects.values_list("key", "status")) == [(key, "draft") for key in KEYS]
    out = capsys.readouterr().out
    assert "won-deal-kickoff: draft “Won deal kickoff” #" in out and f"Loaded {len(KEYS)} template(s) into Acme" in out


def test_the_command_loads_the_named_ones_and_says_when_an_id_was_taken(org, capsys):
    call_command("load_workflow_templates", "stale-deal-nudge", "--org", "acme")
    call_command("load_workflow_templates", "stale-deal-nudge", "--org", "acme")
    assert sorted(Workflow.objects.values_list("key", flat=True)) == ["stale-deal-nudge", "stale-deal-nudge-2"]
    assert "(id “stale-deal-nudge-2”: “stale-deal-nudge” was taken)" in capsys.readouterr().out


def test_the_command_loads_them_into_the_demo_organization(db, monkeypatch, capsys):
    monkeypatch.setenv("DEMO_PASSWORD", "demo-pass-123")
    call_command("seed_demo")  # (it loads most templates itself: these come again, as copies)
    drafts = Workflow.objects.filter(organization__slug="demo", status="draft", created_by__username="demo")
    before = drafts.count()
    call_command("load_workflow_templates", "--org", "demo", "--user", "demo")
    assert drafts.count() == before + len(KEYS)
    assert "(id “won-deal-kickoff-2”: “won-deal-kickoff” was taken)" in capsys.readouterr().out


@pytest.mark.parametrize(("args", "message"), [
    (["--org", "nowhere"], "There is no organization “nowhere”"),
    (["nope", "--org", "acme"], "There is no workflow template “nope”; choose one of annual-check-in, "
                                "appointment-reminder"),
    (["--org", "acme", "--user", "ghost"], "There is no user “ghost”"),
])
def test_the_command_refuses_what_does_not_exist(org, args, message):
    with pytest.raises(CommandError, match=message):
        call_command("load_workflow_templates", *args)
    assert not Workflow.objects.exists()


def test_the_command_loads_nothing_when_a_template_does_not_fit(db):
    bare = Organization.objects.create(name="Bare", slug="bare", plan=Organization.Plan.PRO)
    Stage.objects.create(organization=bare, slug="new", name="New", order=0)
    with pytest.raises(CommandError, match=r"estimate-follow-up-3-touch does not fit Bare; nothing was loaded:\n.*"
                                           r"“won” is not a stage of this organization"):
        call_command("load_workflow_templates", "--org", "bare")
    assert not Workflow.objects.exists()


# --- The admin page -----------------------------------------------------------------------------
def test_the_page_lists_the_templates_and_the_changelist_links_to_it(client, org, teammate):
    client.force_login(teammate)
    assert PAGE in client.get(reverse("admin:automation_workflow_changelist")).content.decode()
    page = client.get(PAGE).content.decode()
    for template in workflow_templates.available():
        assert template.name in page and f'value="{template.key}"' in page
        assert f"<td>{template.node_count}</td>" in page
    assert "When a deal is won: kickoff task, probability 100 and a welcome email" in page


def test_a_button_loads_a_draft_and_opens_it(client, org, teammate):
    client.force_login(teammate)
    response = client.post(PAGE, {"key": "lost-deal-feedback"}, follow=True)
    workflow = Workflow.objects.get()
    assert (workflow.organization, workflow.status, workflow.created_by) == (org, "draft", teammate)
    assert response.redirect_chain == [(reverse("admin:automation_workflow_change", args=[workflow.pk]), 302)]
    assert "“Lost deal feedback” is a new draft in Acme, made from a template" in response.content.decode()


def test_an_unknown_template_is_reported_on_the_page(client, org, owner):
    client.force_login(owner)
    page = client.post(PAGE, {"key": "nope"}).content.decode()
    assert "There is no workflow template “nope”" in page and not Workflow.objects.exists()


def test_viewers_cannot_load_templates(client, org, viewer):
    client.force_login(viewer)
    assert client.get(PAGE).status_code == 403
    assert client.post(PAGE, {"key": "won-deal-kickoff"}).status_code == 403
    assert not Workflow.objects.exists()


def test_an_outsider_cannot_load_into_another_organization(client, org, outsider):
    client.force_login(outsider)
    page = client.post(PAGE, {"key": "won-deal-kickoff", "organization": org.pk}).content.decode()
    assert "Choose the organization the workflow goes into." in page
    assert not Workflow.objects.exists()


def test_someone_in_two_organizations_chooses_one(client, org, teammate):
    from crm_automation.crm.models import Membership

    rival = make_org("rival")
    Membership.objects.create(user=teammate, organization=rival, role=Membership.Role.OPS)
    client.force_login(teammate)
    assert 'name="organization"' in client.get(PAGE).content.decode()
    client.post(PAGE, {"key": "won-deal-kickoff", "organization": rival.pk})
    assert list(Workflow.objects.values_list("organization__slug", flat=True)) == ["rival"]


def test_the_weekly_pipeline_review_tells_the_admins_on_monday_morning(org, owner, deal):
    from datetime import timedelta

    from crm_automation.automation.models import WorkflowSchedule
    from crm_automation.automation.triggers import schedules

    workflow = activated(org, owner, "weekly-pipeline-review")
    schedules.fire_due()
    due = WorkflowSchedule.objects.get(workflow=workflow).next_due_at
    assert (due.weekday(), due.hour, due.minute) == (0, 9, 0)
    schedules.fire_due(now=due + timedelta(seconds=1))
    drain()
    assert the_run().status == "completed"
    note = Notification.objects.get(user=owner)
    assert note.title == "Pipeline review: 1 open deals"
