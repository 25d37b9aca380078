"""The words an ops manager tripped over, each fixed where it is made: a decision's doubled
"draft — not activated", a field-watch reason that named the stage filter, "Wait 1 days", a
planning document's name for the format on the YAML tab, an approval's confirmation cut
mid-word, an answered approval's notification still waiting, and a paused run's error naming the
wrong step."""

import re

from django.test import Client
from django.urls import reverse

from crm_automation.automation import wording
from crm_automation.automation.models import WorkflowDecision, WorkflowRun
from crm_automation.automation.nodes import control
from crm_automation.automation.runtime.tasks import sweep
from crm_automation.automation.services.runs import run_answer, run_cancel
from crm_automation.automation.services.versions import workflow_document, workflow_export_yaml
from crm_automation.automation.triggers import relative_time
from crm_automation.crm.models import Membership, Notification
from crm_automation.crm.services import deal_move_to_stage
from tests.conftest import drain, make_workflow, stage, time_passes
from tests.test_graph_engine import edge, task, win
from tests.test_no_outside_references import CITATION

LONG_PROMPT = ("Approve the 20% discount on {{deal.title}} before demo sends the signed proposal to the "
               "customer's procurement team?")
ASK = {"id": "ask", "type": "user_input", "label": "Approval", "config": {
    "promptText": LONG_PROMPT, "timeoutAmount": 2, "timeoutUnit": "days"}}
ASKING = ([ASK, task("yes", "Go"), task("no", "Stop"), task("late", "Late")],
          [edge("trigger", "ask"), edge("ask", "yes", "approved"), edge("ask", "no", "rejected"),
           edge("ask", "late", "timed-out")])


def as_user(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_a_draft_decision_says_draft_once(org, deal):
    make_workflow(org, activate=False)
    deal_move_to_stage(deal=deal, stage=stage(org, "won"))
    drain()
    decision = WorkflowDecision.objects.get()
    assert str(decision) == "Draft: not activated: it would have run if it were activated"
    assert "not activated" not in decision.reason


def test_an_amount_trigger_names_the_field_it_watches_and_the_one_that_changed(org, deal):
    make_workflow(org, trigger_type="deal_updated", trigger_config={"fields": ["amount", "close_date"]})
    deal_move_to_stage(deal=deal, stage=stage(org, "won"))  # a stage change is an update too
    drain()
    decision = WorkflowDecision.objects.get()
    assert (decision.get_outcome_display(), decision.reason) == (
        "Watched field did not change", "the workflow watches Amount or Close date; this change was to Stage")


def test_counts_take_their_unit_in_the_singular_for_one():
    assert control.label("wait", {"delayAmount": 1, "delayUnit": "days"}) == "Wait 1 day"
    assert control.label("wait", {"delayAmount": 2, "delayUnit": "days"}) == "Wait 2 days"
    assert control.label("wait", {"delayAmount": 1, "delayUnit": "hours"}) == "Wait 1 hour"
    assert control.label("wait", {"delayAmount": 0, "delayUnit": "minutes"}) == "Wait 0 minutes"
    assert control.label("wait", {"until": "{{deal.close_date}}"}) == "Wait until Deal › Close date"
    assert relative_time.describe("deal_in_stage", {"stage": "won", "days": 1}, {"won": "Won"}) == \
        "A deal in Won for 1 day"
    assert relative_time.describe("deal_date_reached", {"field": "close_date", "offsetDays": -1}).startswith(
        "1 day before")
    assert wording.counted(1, "items") == "1 item" and wording.counted(3, "items") == "3 items"


def test_a_one_day_wait_is_exported_as_wait_1_day(org):
    workflow = make_workflow(org, activate=False, actions=[
        {"type": "wait", "config": {"delayAmount": 1, "delayUnit": "days"}}, task("t", "Then")])
    assert [n["data"]["label"] for n in workflow_document(workflow)["nodes"]][1] == "Wait 1 day"
    assert "Wait 1 days" not in workflow_export_yaml(workflow)


def test_the_yaml_tab_speaks_of_workflow_yaml_and_links_the_reference(org, owner):
    workflow = make_workflow(org, activate=False)
    page = as_user(owner).get(reverse("web:yaml", args=[workflow.pk])).content.decode()
    assert not CITATION.search(page)
    assert "The workflow as workflow YAML" in page and f'href="{reverse("api:docs")}"' in page


def test_text_is_shortened_at_a_word_with_an_ellipsis():
    assert wording.shorten("Approve the discount before demo sends the proposal", 40) == \
        "Approve the discount before demo sends…"
    assert wording.shorten("short", 40) == "short"
    assert wording.shorten("A" * 50, 10) == "AAAAAAAAA…"  # one long word: cut inside it, marked


def test_an_approval_confirmation_is_not_cut_mid_word(org, deal, owner):
    run = win(org, deal, *ASKING)
    step = run.actions.get(node_id="ask")
    page = as_user(owner).post(reverse("web:approval-answer", args=[step.pk]), {"decision": "approved"},
                               follow=True).content.decode()
    said = re.search(r"You approved “([^”]*)”", page).group(1)
    assert said.endswith("…") and len(said) <= 80
    assert LONG_PROMPT.replace("{{deal.title}}", "Website").startswith(said[:-1])  # whole words only
    assert said[:-1].rstrip() == said[:-1] and not said[:-1].endswith(" th")


def test_an_answered_approval_says_who_answered_what(org, deal, owner):
    run = win(org, deal, *ASKING)
    note = Notification.objects.get(user=owner)
    assert note.body == f"Run #{run.pk} waits for your answer." and note.read_at is None
    assert len(note.title) <= 200 and (note.title.endswith("…") or note.title.endswith("?"))
    run_answer(run_id=run.pk, by=owner, node_id="ask", decision="approved", comment="OK up to 10%")
    note.refresh_from_db()
    assert note.body == f"Run #{run.pk}: approved by owner: “OK up to 10%”." and note.read_at is not None
    assert "waits for your answer" not in note.body


def test_an_approval_nobody_answered_in_time_says_so(org, deal, owner):
    run = win(org, deal, *ASKING)
    time_passes()
    sweep(fan_out=False)
    note = Notification.objects.get(user=owner)
    assert note.body == f"Run #{run.pk}: no answer came in time; the run went on without one."
    assert note.read_at is not None


def test_an_approval_of_a_cancelled_run_says_no_answer_is_needed(org, deal, owner):
    run = win(org, deal, *ASKING)
    run_cancel(run_id=run.pk, by=owner)
    note = Notification.objects.get(user=owner)
    assert note.body.startswith(f"Run #{run.pk}: no answer is needed: the run was cancelled")
    assert note.read_at is not None


def test_a_paused_run_names_the_step_that_paused_it(org, deal, teammate):
    # Step 1 fails and is skipped by its policy; step 2 fails and pauses the run: the run's
    # error is about step 2, the one a person must retry or skip (the assignee leaves the
    # organization between the save and the run, so both steps fail).
    workflow = make_workflow(org, actions=[
        {"id": "first", "type": "create_task", "label": "First task", "on_error": {"policy": "skip"},
         "config": {"title": "First", "assignee": "teammate"}},
        {"id": "second", "type": "create_task", "label": "Second task", "on_error": {"policy": "pause"},
         "config": {"title": "Second", "assignee": "teammate"}}])
    Membership.objects.filter(user=teammate).delete()
    deal_move_to_stage(deal=deal, stage=stage(org, "won"))
    drain()
    run = WorkflowRun.objects.get(workflow=workflow)
    assert run.status == "paused"
    assert run.error.startswith("Step 2 (Second task) failed: "), run.error
    assert "no longer a member" in run.error
