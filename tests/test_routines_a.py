"""Five of the product documents' routine templates (and the review funnel the first one starts),
adapted to this CRM: each loads from the template gallery as a draft, exports as the same text,
activates, and runs end to end on the test SMS provider, a fake AI model and the test email
backend, through its waits, its replies and its branches.

At the end, what the documents ask for and the product cannot do yet, as expected failures."""

import json
from datetime import datetime, time, timedelta

import pytest
import yaml
from django.utils import timezone

from crm_automation.automation import workflow_templates
from crm_automation.automation.definition.documents import DocumentError
from crm_automation.automation.models import AiCall, Workflow, WorkflowRun
from crm_automation.automation.runtime.tasks import continue_runs, sweep
from crm_automation.automation.services.runs import run_cancel
from crm_automation.automation.services.versions import workflow_export_yaml
from crm_automation.automation.services.workflows import workflow_create, workflow_transition
from crm_automation.automation.triggers.manual import workflow_start
from crm_automation.crm import business_events
from crm_automation.crm.models import (
    Contact,
    Deal,
    EmailMessage,
    Notification,
    Project,
    SmsInbound,
    SmsMessage,
    SmsSettings,
    Task,
)
from crm_automation.crm.services import deal_move_to_stage
from crm_automation.crm.sms import inbound
from tests.conftest import drain, stage, time_passes
from tests.fake_ai import chat

FUNNEL = "customer-review-testimonial-funnel"
KEYS = [FUNNEL, "post-completion-follow-up", "missed-call-follow-up", "estimate-follow-up-3-touch",
        "invoice-overdue-reminder", "appointment-reminder"]
ADA = "+15550100100"


# --- Helpers ------------------------------------------------------------------------------------
@pytest.fixture
def sms(org) -> SmsSettings:
    return SmsSettings.objects.create(organization=org, from_number="+15550009999", auth_token="t")


@pytest.fixture
def ada(org) -> Contact:
    return Contact.objects.create(organization=org, first_name="Ada", last_name="Lovelace", email="ada@example.com",
                                  phone="(555) 010-0100")


def activated(org, owner, key: str) -> Workflow:
    workflow = workflow_templates.load(organization=org, by=owner, key=key)
    return workflow_transition(workflow_id=workflow.pk, name="activate", by=owner)


def run_of(key: str) -> WorkflowRun:
    return WorkflowRun.objects.get(workflow__key=key)


def settle() -> None:
    """Run what the nudges would (children started, runs woken by a reply) until none is left."""
    for _ in range(10):
        ids = list(WorkflowRun.objects.filter(status="started").values_list("pk", flat=True))
        if not ids:
            return
        continue_runs(ids)


def later() -> None:
    """The current waits (a wait node, a reply window) are over; the sweep resumes the runs."""
    time_passes()
    sweep(fan_out=False)
    settle()


def reply(sms_settings: SmsSettings, body: str) -> None:
    """Ada answers by SMS; the run waiting for her reply wakes and goes on."""
    inbound.receive(sms_settings, {"MessageSid": f"SMin{SmsInbound.objects.count()}", "From": ADA,
                                   "Body": body})
    settle()


def event(org, name: str, data: dict, **links) -> None:
    business_events.event_receive(organization_id=org.pk, body={"type": name, "data": data, **links},
                                  source="api")
    drain()


def texts() -> list[tuple[str, str]]:
    return list(SmsMessage.objects.filter(status="sent").order_by("pk").values_list("to", "body"))


def emails() -> list[tuple[str, str]]:
    return list(EmailMessage.objects.filter(status="sent").order_by("pk").values_list("to", "subject"))


def tasks() -> list[tuple[str, str, str | None]]:
    return list(Task.objects.order_by("pk").values_list("title", "priority", "assignee__username"))


def notes() -> list[tuple[str, str]]:
    return list(Notification.objects.order_by("pk").values_list("user__username", "title"))


def waiting(run: WorkflowRun) -> tuple[str, timedelta]:
    """The step the run waits at and how long it waits from now, to the minute."""
    step = run.actions.get(status="waiting")
    until = datetime.fromisoformat(step.result.get("wake_at") or step.result["timeout_at"])
    return step.node_id, timedelta(minutes=round((until - timezone.now()).total_seconds() / 60))


def asked(model_server) -> list[str]:
    """What the workflow asked the fake model, request by request (the user's message)."""
    return [json.loads(r["body"])["messages"][-1]["content"] for r in model_server.requests]


# --- The files ----------------------------------------------------------------------------------
def test_the_templates_are_in_the_gallery_with_a_name_and_a_description():
    assert set(KEYS) <= set(workflow_templates.keys())
    for key in KEYS:
        template = workflow_templates.get(key)
        assert (workflow_templates.DIRECTORY / f"{key}.yaml").read_text() == template.text
        assert template.name and template.description and template.node_count >= 5
    # The gallery, the command and the demo load templates in this order: the funnel that
    # post-completion-follow-up starts comes first, so loading them all works.
    assert workflow_templates.keys().index(FUNNEL) < workflow_templates.keys().index("post-completion-follow-up")


def test_configs_are_written_in_the_key_order_postgresql_keeps():
    """(As tests/test_workflow_templates.py checks: jsonb keeps an object's keys shortest first, then
    bytewise, so a file written in that order exports as the same text on either database.)"""
    def check(value, place):
        if isinstance(value, dict):
            assert list(value) == sorted(value, key=lambda k: (len(k.encode()), k.encode())), place
            for key, item in value.items():
                check(item, f"{place}.{key}")
        elif isinstance(value, list):
            for i, item in enumerate(value):
                check(item, f"{place}[{i}]")

    for key in KEYS:
        for node in yaml.safe_load(workflow_templates.get(key).text)["nodes"]:
            config = node["data"]["config"]
            check(config["defaults"] if node["data"]["subtype"] == "tool-call" else config, f"{key}: {node['id']}")


@pytest.mark.parametrize("key", KEYS)
def test_a_template_loads_as_a_draft_exports_the_same_text_and_activates(org, owner, openai, key):
    if key == "post-completion-follow-up":
        workflow_templates.load(organization=org, by=owner, key=FUNNEL)  # the sub-workflow it starts
    workflow = workflow_templates.load(organization=org, by=owner, key=key)
    assert (workflow.status, workflow.key, workflow.created_by) == ("draft", key, owner)
    assert workflow_export_yaml(workflow) == workflow_templates.get(key).text
    assert workflow_transition(workflow_id=workflow.pk, name="activate", by=owner).status == "activated"


def test_they_load_in_gallery_order_into_one_organization(org, owner):
    """What load_workflow_templates and the demo do: every template, in the gallery's order."""
    for template in workflow_templates.available():
        if template.key in KEYS:
            workflow_templates.load(organization=org, by=owner, key=template.key)
    assert sorted(Workflow.objects.values_list("key", flat=True)) == sorted(KEYS)


def test_the_follow_up_does_not_load_without_the_funnel_and_says_what_it_needs(org, owner):
    with pytest.raises(DocumentError) as refused:
        workflow_templates.load(organization=org, by=owner, key="post-completion-follow-up")
    assert f"workflowId: “{FUNNEL}” is not a workflow of this organization" in str(refused.value)
    assert not Workflow.objects.exists()



# --- Post-completion follow-up (and the funnel it starts) ---------------------------------------
THANKS = "Thanks for choosing us for the roof repair, Ada! How did everything go?"


@pytest.fixture
def roof(org, owner, ada) -> Project:
    return Project.objects.create(organization=org, name="Roof", service_type="roof repair", contact=ada, owner=owner,
                                  status="active")


def completed(project: Project) -> None:
    project.status = "completed"
    project.save()
    drain()


def follow_up_asks_how_it_went(org, owner, roof, openai) -> WorkflowRun:
    """The follow-up runs up to its SMS, which waits for Ada's reply."""
    activated(org, owner, FUNNEL)
    activated(org, owner, "post-completion-follow-up")
    completed(roof)
    run = run_of("post-completion-follow-up")
    assert run.status == "waiting" and not texts() and not openai.requests
    assert waiting(run) == ("wait-2h", timedelta(hours=2))
    openai.reply(200, chat(THANKS))
    later()
    assert asked(openai) == ["Write a warm 1-sentence SMS thanking Ada for the roof repair job. Ask how everything "
                             "went. Max 160 chars."]
    assert texts() == [(ADA, THANKS)]
    run.refresh_from_db()
    assert run.status == "waiting" and waiting(run) == ("send-sms", timedelta(hours=48))
    return run


def test_post_completion_a_happy_customer_goes_on_to_the_review_funnel(org, owner, sms, roof, openai):
    run = follow_up_asks_how_it_went(org, owner, roof, openai)
    openai.reply(200, chat('{"route": "positive", "reason": "they loved it"}'))
    reply(sms, "It was great, thank you!")
    run.refresh_from_db()
    assert run.status == "completed", run.error
    assert asked(openai)[1] == ("Read the customer reply: 'It was great, thank you!'. Classify sentiment as: "
                                "positive, negative, or no_reply.")
    assert run.actions.get(node_id="sentiment-router").result["handle"] == "route-0"
    assert not run.actions.filter(node_id="create-task").exists()
    funnel = WorkflowRun.objects.get(parent_run=run)
    assert funnel.workflow.key == FUNNEL and funnel.trigger_entity_id == roof.pk
    assert funnel.status == "waiting" and waiting(funnel) == ("ask-for-a-review", timedelta(hours=72))
    assert texts()[1] == (ADA, "So glad the roof repair went well, Ada! Would you reply with a few words about it? "
                               "With your OK we will share them as a testimonial.")
    reply(sms, "Best roofers in town, on time and tidy.")
    funnel.refresh_from_db()
    assert funnel.status == "completed", funnel.error
    assert tasks() == [("Testimonial from Ada: ask to publish it", "normal", "owner")]
    task = Task.objects.get()
    assert task.project == roof and "“Best roofers in town, on time and tidy.”" in task.description
    assert not emails()


@pytest.mark.parametrize(("answer", "route", "handle"), [("The crew left a mess in the yard.", "negative", "route-1"),
                                                         (None, "no_reply", "route-2")])
def test_post_completion_an_unhappy_or_silent_customer_is_an_urgent_task(org, owner, sms, roof, openai, answer,
                                                                         route, handle):
    run = follow_up_asks_how_it_went(org, owner, roof, openai)
    openai.reply(200, chat(json.dumps({"route": route, "reason": "not happy" if answer else "no answer"})))
    if answer:
        reply(sms, answer)
    else:
        later()  # 48 hours without a reply
    run.refresh_from_db()
    assert run.status == "completed", run.error
    sent = run.actions.get(node_id="send-sms").result
    assert sent["reply"] == answer and sent["timed_out"] is (answer is None)
    assert asked(openai)[1] == (f"Read the customer reply: '{answer or ''}'. Classify sentiment as: positive, "
                                "negative, or no_reply.")
    assert run.actions.get(node_id="sentiment-router").result["handle"] == handle
    assert tasks() == [("Follow up — Ada (needs attention)", "urgent", "owner")]
    task = Task.objects.get()
    assert task.project == roof and task.due_date == timezone.localdate()
    assert task.description.startswith(f"After Roof: {route} (")
    assert not WorkflowRun.objects.filter(parent_run=run).exists() and len(texts()) == 1


def test_the_funnel_started_by_hand_emails_for_a_review_when_no_words_come(org, owner, sms, roof):
    funnel = activated(org, owner, FUNNEL)
    run = workflow_start(workflow_id=funnel.pk, by=owner, record=roof)
    settle()
    run.refresh_from_db()
    assert run.status == "waiting" and len(texts()) == 1
    later()  # 3 days without a reply
    run.refresh_from_db()
    assert run.status == "completed", run.error
    assert emails() == [("ada@example.com", "A minute for a review, Ada?")] and not tasks()



# --- Missed call follow-up ----------------------------------------------------------------------
SORRY = ("Sorry we missed your call, Ada! We will call you back shortly. If texting is easier, just reply "
         "here.")


def missed_call(org, owner) -> WorkflowRun:
    activated(org, owner, "missed-call-follow-up")
    event(org, "call.missed", {"call": {"from_number": ADA, "at": "2026-03-02T10:15:00"}}, contact={"phone": ADA})
    run = run_of("missed-call-follow-up")
    assert texts() == [(ADA, SORRY)]
    assert tasks() == [(f"Call back Ada Lovelace at {ADA}", "high", None)]
    assert Task.objects.get().due_date == timezone.localdate()
    assert run.status == "waiting" and waiting(run) == ("text-back", timedelta(hours=4))  # the merge waits for it
    assert run.actions.get(node_id="callback-task").status == "completed"
    assert not run.actions.filter(node_id="both-done").exists()
    return run


def test_missed_call_without_a_reply_in_4_hours_texts_again_and_tells_the_admins(org, owner, teammate, sms, ada):
    run = missed_call(org, owner)
    later()
    run.refresh_from_db()
    assert run.status == "completed", run.error
    assert run.actions.get(node_id="text-back").result["timed_out"] is True
    assert run.actions.get(node_id="no-reply-in-4-hours").result["passed"] is True
    assert texts()[1:] == [(ADA, "Hi Ada, we are still trying to reach you about your call. When is a good time to "
                                 "talk? Reply with a time, or call us back.")]
    assert notes() == [("owner", "Missed call: Ada Lovelace has not replied in 4 hours")]  # the admins only
    assert Notification.objects.get().body == (f"They called from {ADA} and have not answered our SMS. The callback "
                                               "task is open; a second SMS went out.")


def test_missed_call_a_reply_ends_it_quietly(org, owner, sms, ada):
    run = missed_call(org, owner)
    reply(sms, "Call me after 5 please")
    run.refresh_from_db()
    assert run.status == "completed", run.error
    assert run.actions.get(node_id="both-done").result["arrived_from"] == ["callback-task", "text-back"]
    assert run.actions.get(node_id="no-reply-in-4-hours").result["passed"] is False
    assert len(texts()) == 1 and not notes() and len(tasks()) == 1


def test_missed_call_without_sms_still_makes_the_task_and_tells_the_admins(org, owner, ada):
    """No SMS settings: the texts fail (the workflow's policy is skip), the rest still happens."""
    activated(org, owner, "missed-call-follow-up")
    event(org, "call.missed", {"call": {"from_number": ADA}}, contact={"phone": ADA})
    run = run_of("missed-call-follow-up")
    assert run.status == "partial", run.error
    assert "SMS is not set up" in run.actions.get(node_id="text-back").error
    assert len(tasks()) == 1 and notes() == [("owner", "Missed call: Ada Lovelace has not replied in 4 hours")]
    assert not SmsMessage.objects.exists()



# --- Estimate follow-up (3-touch) ---------------------------------------------------------------
ESTIMATE = {"estimate": {"number": "EST-7", "amount": "4800", "expires_on": "2030-02-01"}}
REMINDER = "Hi Ada, did estimate EST-7 (4800.00) reach you? Any questions, just reply here."


@pytest.fixture
def kitchen(org, owner, ada) -> Deal:
    return Deal.objects.create(organization=org, title="Kitchen", amount=4800, stage=stage(org, "proposal"),
                               contact=ada, owner=owner)


def estimate_sent(org, owner, **links) -> WorkflowRun:
    """The estimate goes out; 24 hours later the reminder SMS, which waits 3 days for a reply."""
    activated(org, owner, "estimate-follow-up-3-touch")
    event(org, "estimate.sent", ESTIMATE, contact={"email": "ada@example.com"}, **links)
    run = run_of("estimate-follow-up-3-touch")
    assert not texts() and waiting(run) == ("wait-24-hours", timedelta(hours=24))
    later()
    assert texts() == [(ADA, REMINDER)]
    run.refresh_from_db()
    assert waiting(run) == ("reminder-sms", timedelta(hours=72))
    assert run.actions.get(node_id="still-pending").result["passed"] is True
    return run


@pytest.mark.parametrize("with_deal", [True, False], ids=["deal-stays-open", "no-deal-named"])
def test_estimate_unanswered_gets_all_three_touches(org, owner, sms, ada, kitchen, openai, with_deal):
    run = estimate_sent(org, owner, **({"deal": str(kitchen.pk)} if with_deal else {}))
    openai.reply(200, chat("Hi Ada, following up on estimate EST-7. Happy to answer questions. The team"))
    later()  # 3 days, no reply
    assert emails() == [("ada@example.com", "Your estimate EST-7")]
    assert EmailMessage.objects.get().body == ("Hi Ada, following up on estimate EST-7. Happy to answer questions. "
                                               "The team")
    assert asked(openai) == ["Write a short, friendly follow-up email body (plain text, no subject line) to Ada about "
                             "estimate EST-7 for 4800.00, sent 4 days ago. Offer to answer questions or adjust the "
                             "scope. Sign off as the team."]
    run.refresh_from_db()
    assert waiting(run) == ("wait-7-days", timedelta(days=7))
    openai.reply(200, chat("Hi Ada, a last note about EST-7: it is valid until 1 February. The team"))
    later()
    run.refresh_from_db()
    assert run.status == "completed", run.error
    assert emails()[1:] == [("ada@example.com", "Re: Your estimate EST-7")]
    assert "mention when it expires (2030-02-01) if that is known" in asked(openai)[1]
    assert len(texts()) == 1 and not tasks()


def test_estimate_a_reply_to_the_reminder_is_a_task_not_emails(org, owner, sms, ada, kitchen, openai):
    run = estimate_sent(org, owner, deal=str(kitchen.pk))
    reply(sms, "Can we leave out the skylight?")
    run.refresh_from_db()
    assert run.status == "completed", run.error
    assert tasks() == [("Answer Ada about estimate EST-7", "high", "owner")]  # the deal's owner
    assert Task.objects.get().deal == kitchen
    assert "“Can we leave out the skylight?”" in Task.objects.get().description
    assert not emails() and not openai.requests


@pytest.mark.parametrize("when", ["before-the-sms", "before-the-emails", "before-the-last-email"])
def test_estimate_stops_once_the_deal_is_won_or_lost(org, owner, sms, ada, kitchen, openai, when):
    activated(org, owner, "estimate-follow-up-3-touch")
    event(org, "estimate.sent", ESTIMATE, contact={"email": "ada@example.com"}, deal=str(kitchen.pk))
    steps = ["before-the-sms", "before-the-emails", "before-the-last-email"]
    openai.reply(200, chat("Following up. The team"))
    for _ in range(steps.index(when)):
        later()
    deal_move_to_stage(deal=Deal.objects.get(pk=kitchen.pk), stage=stage(org, "won" if steps.index(when) % 2 else
                                                                          "lost"))
    later()
    run = run_of("estimate-follow-up-3-touch")
    assert run.status == "completed", run.error
    assert len(texts()) == (0 if when == "before-the-sms" else 1)
    assert len(emails()) == {"before-the-sms": 0, "before-the-emails": 0, "before-the-last-email": 1}[when]
    assert AiCall.objects.count() == len(emails()) and not tasks()



# --- Invoice overdue reminder -------------------------------------------------------------------
def invoice_overdue(org, owner, amount_due="1250") -> WorkflowRun:
    activated(org, owner, "invoice-overdue-reminder")
    event(org, "invoice.overdue", {"invoice": {"number": "INV-42", "amount_due": amount_due, "due_date": "2026-03-01",
                                               "days_overdue": 1}}, contact={"email": "ada@example.com"})
    run = run_of("invoice-overdue-reminder")
    assert run.status == "waiting" and run.actions.get(node_id="wait-3-days").status == "waiting"
    return run


def test_invoice_overdue_reminds_twice_tells_the_admins_then_escalates(org, owner, ada):
    run = invoice_overdue(org, owner)
    assert waiting(run) == ("wait-3-days", timedelta(days=3))
    later()
    assert emails() == [("ada@example.com", "Friendly reminder: invoice INV-42")]
    assert EmailMessage.objects.get().body == (
        "Hi Ada, a friendly reminder that invoice INV-42 for 1250.00 was due on 2026-03-01. If you have already paid, "
        "thank you, and please ignore this note; if anything about it is unclear, just reply.")
    assert waiting(run) == ("wait-until-day-7", timedelta(days=4))
    later()
    assert emails()[1:] == [("ada@example.com", "Second notice: invoice INV-42 is overdue")]
    assert not notes() and waiting(run) == ("wait-until-day-14", timedelta(days=7))
    later()
    assert notes() == [("owner", "Invoice INV-42 (1250.00) is unpaid after two reminders")]
    assert not tasks() and waiting(run) == ("wait-until-day-21", timedelta(days=7))
    later()
    run.refresh_from_db()
    assert run.status == "completed", run.error
    assert tasks() == [("Escalate invoice INV-42 (1250.00): Ada Lovelace", "urgent", None)]


def test_invoice_overdue_with_nothing_due_sends_nothing(org, owner, ada):
    run = invoice_overdue(org, owner, amount_due="0")
    later()
    run.refresh_from_db()
    assert run.status == "completed", run.error
    assert run.actions.get(node_id="amount-due-on-day-3").result["passed"] is False
    assert not emails() and not notes() and not tasks()


def test_invoice_overdue_paid_meanwhile_a_person_cancels_the_run(org, owner, ada):
    """The CRM keeps no invoice: invoice.paid cannot reach the waiting run, so a person cancels it
    (what the template's description and notification say)."""
    run = invoice_overdue(org, owner)
    later()
    event(org, "invoice.paid", {"invoice": {"number": "INV-42", "amount_paid": "1250"}},
          contact={"email": "ada@example.com"})
    run_cancel(run_id=run.pk, by=owner)
    later()
    run.refresh_from_db()
    assert run.status == "cancelled" and len(emails()) == 1 and not notes() and not tasks()



# --- Appointment reminder (24h + day-of) --------------------------------------------------------
def at(day, hour: int) -> datetime:
    """`hour` o'clock of `day` on the organization's clock (TIME_ZONE), as the wait reads a date."""
    return timezone.make_aware(datetime.combine(day, time.min)) + timedelta(hours=hour)


@pytest.fixture
def remodel(org, owner, ada) -> Project:
    return Project.objects.create(organization=org, name="Kitchen remodel", contact=ada, owner=owner, status="active",
                                  start_date=timezone.localdate() + timedelta(days=5))


def appointment_booked(org, owner, remodel) -> WorkflowRun:
    """Booked for the project's start day; at 9:00 the day before, the SMS (waiting for YES) and the email."""
    activated(org, owner, "appointment-reminder")
    starts = f"{remodel.start_date.isoformat()}T09:30:00"
    event(org, "appointment.booked", {"appointment": {"starts_at": starts, "location": "12 Elm St"}},
          contact={"phone": ADA}, project=str(remodel.pk))
    run = run_of("appointment-reminder")
    step = run.actions.get(node_id="wait-until-the-day-before")
    assert datetime.fromisoformat(step.result["wake_at"]) == at(remodel.start_date, -15)  # 09:00 the day before
    assert not texts() and not emails()
    later()
    assert texts() == [(ADA, f"Hi Ada, a reminder of your appointment tomorrow for Kitchen remodel ({starts}). Reply "
                             "YES to confirm, or call us to reschedule.")]
    assert emails() == [("ada@example.com", "Your appointment tomorrow: Kitchen remodel")]
    assert "at " + starts + " (12 Elm St)" in EmailMessage.objects.get().body
    run.refresh_from_db()
    assert run.status == "waiting" and waiting(run) == ("confirmation-sms", timedelta(hours=8))
    return run


def the_day(run: WorkflowRun, remodel: Project) -> None:
    """The run waits until 7:00 on the day; then the SMS with the arrival time goes out."""
    run.refresh_from_db()
    step = run.actions.get(node_id="wait-until-the-day")
    assert run.status == "waiting" and step.status == "waiting"
    assert datetime.fromisoformat(step.result["wake_at"]) == at(remodel.start_date, 7)
    assert len(texts()) == 1
    later()
    assert remodel.start_date is not None
    assert texts()[1:] == [(ADA, f"Good morning Ada! Olive and the crew will arrive within 30 minutes of "
                                 f"{remodel.start_date.isoformat()}T09:30:00 for Kitchen remodel.")]
    run.refresh_from_db()
    assert run.status == "completed", run.error


def test_appointment_confirmed_gets_both_reminders_and_bothers_nobody(org, owner, sms, remodel):
    run = appointment_booked(org, owner, remodel)
    reply(sms, "Yes, see you then")
    the_day(run, remodel)
    assert run.actions.get(node_id="confirmed").result["passed"] is True
    assert not notes()


def test_appointment_not_confirmed_tells_the_admins_on_the_day(org, owner, sms, remodel):
    run = appointment_booked(org, owner, remodel)
    later()  # 8 hours without a reply
    the_day(run, remodel)
    assert run.actions.get(node_id="confirmed").result["passed"] is False
    assert notes() == [("owner", "Ada Lovelace has not confirmed today's appointment")]
    assert Notification.objects.get().body == (
        f"The appointment for Kitchen remodel is at {remodel.start_date.isoformat()}T09:30:00. Their reply to the "
        f"reminder, if any: “”. Call (555) 010-0100 before the crew leaves.")


def test_appointment_a_reply_that_does_not_confirm_tells_the_admins(org, owner, sms, remodel):
    run = appointment_booked(org, owner, remodel)
    reply(sms, "Can we move it to Friday?")
    the_day(run, remodel)
    assert notes() == [("owner", "Ada Lovelace has not confirmed today's appointment")]
    assert "“Can we move it to Friday?”" in Notification.objects.get().body


def test_appointment_without_a_project_stops_at_the_first_wait_saying_why(org, owner, sms, ada):
    activated(org, owner, "appointment-reminder")
    event(org, "appointment.booked", {"appointment": {"starts_at": "2030-05-01T09:30:00"}}, contact={"phone": ADA})
    run = run_of("appointment-reminder")
    assert run.status == "failed"
    assert run.actions.get(node_id="wait-until-the-day-before").error == (
        "project.start_date is empty, so there is no date to wait for")
    assert not texts() and not emails() and not notes()



# --- What the documents ask for and the product cannot do yet -----------------------------------
def test_a_wait_until_24_hours_before_the_appointment(org):
    workflow_create(organization=org, name="Reminder", trigger_type="event:appointment.booked", trigger_config={},
                    actions=[{"id": "day-before", "type": "wait", "config": {
                        "until": "{{trigger.appointment.starts_at}}", "offsetAmount": -24, "offsetUnit": "hours"}},
                        {"id": "note", "type": "create_task", "config": {"title": "Remind them"}}])


def test_a_wait_until_3_days_after_the_invoices_due_date(org, owner, ada):
    workflow = workflow_create(organization=org, name="Dunning", trigger_type="event:invoice.overdue",
                               trigger_config={}, actions=[
                                   {"id": "day-3", "type": "wait", "config": {
                                       "until": "{{trigger.invoice.due_date}}", "offsetAmount": 3}},
                                   {"id": "note", "type": "create_task", "config": {"title": "Remind them"}}])
    workflow_transition(workflow_id=workflow.pk, name="activate", by=owner)
    due = (timezone.localdate() + timedelta(days=1)).isoformat()
    event(org, "invoice.overdue", {"invoice": {"number": "INV-1", "amount_due": "10", "due_date": due}},
          contact={"email": "ada@example.com"})
    run = WorkflowRun.objects.get()
    assert run.status == "waiting", run.error


def test_a_notification_about_a_project_links_to_the_project(org, owner, sms, remodel):
    from django.urls import reverse

    run = appointment_booked(org, owner, remodel)
    later()
    the_day(run, remodel)
    assert Notification.objects.get().link == reverse("admin:crm_project_change", args=[remodel.pk])

