"""Five of the product documents' routine templates (docs: "Pre-Built Routine Templates"), adapted
to this CRM: each loads from the gallery as a draft, exports as the same text, activates, and runs
end to end on fake providers (the AI model, SMS, email), through its waits, replies and branches."""

import json
from datetime import datetime, timedelta

import pytest
import yaml
from django.utils import timezone

from crm_automation.automation import workflow_templates
from crm_automation.automation.definition import documents
from crm_automation.automation.models import Workflow, WorkflowRun, WorkflowSchedule
from crm_automation.automation.runtime.tasks import continue_runs, sweep
from crm_automation.automation.services.runs import run_answer
from crm_automation.automation.services.versions import workflow_export_yaml, workflow_import_yaml
from crm_automation.automation.services.workflows import workflow_transition
from crm_automation.automation.triggers import schedules
from crm_automation.crm.business_events import event_receive
from crm_automation.crm.models import (
    Contact,
    Deal,
    EmailMessage,
    Note,
    Notification,
    Project,
    SmsMessage,
    SmsSettings,
    Task,
)
from crm_automation.crm.sms import inbound
from crm_automation.webhooks.services import webhook_target_create
from tests.conftest import drain, stage, time_passes
from tests.fake_ai import chat
from tests.http_receiver import Receiver

KEYS = ["annual-check-in", "birthday-check-ins", "new-lead-welcome-sms", "onboarding-flow-kickoff",
        "video-production-pipeline"]


# --- The files ----------------------------------------------------------------------------------
def test_the_five_templates_are_in_the_gallery():
    shipped = {template.key: template for template in workflow_templates.available()}
    for key in KEYS:
        template = shipped[key]
        assert (workflow_templates.DIRECTORY / f"{key}.yaml").read_text() == template.text
        assert template.name and template.description and template.node_count >= 5


def test_their_configs_are_written_in_the_key_order_postgresql_keeps():
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
            if node["data"]["subtype"] == "tool-call":
                config = config["defaults"]
            if node["data"]["subtype"] != "chat-app":
                check(config, f"{key}: nodes[{node['id']}]")


@pytest.mark.parametrize("key", KEYS)
def test_a_template_loads_as_a_draft_and_exports_the_same_text(org, owner, key):
    workflow = workflow_templates.load(organization=org, by=owner, key=key)
    assert (workflow.status, workflow.key, workflow.created_by) == ("draft", key, owner)
    assert workflow_export_yaml(workflow) == workflow_templates.get(key).text


@pytest.mark.parametrize("key", KEYS)
def test_a_template_activates_once_a_model_is_set_up(org, owner, openai, key):
    workflow = workflow_templates.load(organization=org, by=owner, key=key)
    assert workflow_transition(workflow_id=workflow.pk, name="activate", by=owner).status == "activated"


def test_they_load_into_the_demo_and_into_an_organization_with_a_single_stage(db, monkeypatch):
    """seed_demo loads every shipped template, and the command loads them all or none: none of the
    five may need what an organization sets up itself (a webhook target, a chat channel, a stage
    other than the first)."""
    from django.core.management import call_command

    from crm_automation.crm.models import Organization, Stage

    monkeypatch.setenv("DEMO_PASSWORD", "demo-pass-123")
    call_command("seed_demo")
    demo = Workflow.objects.filter(organization__slug="demo", key__in=KEYS)
    assert sorted(demo.values_list("key", "status")) == [(key, "draft") for key in KEYS]
    bare = Organization.objects.create(name="Bare", slug="bare", plan=Organization.Plan.PRO)
    Stage.objects.create(organization=bare, slug="new", name="New", order=0)
    call_command("load_workflow_templates", *KEYS, "--org", "bare")
    assert sorted(Workflow.objects.filter(organization=bare).values_list("key", flat=True)) == KEYS


# --- Helpers ------------------------------------------------------------------------------------
class Model(list):
    """The fake model's scripted answers, chosen by what each question asks (parallel branches ask
    in an order of the engine's choosing): [(words of the prompt, the answer's text), …]. A
    question none of them matches is answered 500, which fails the step."""

    def __init__(self, server, answers: list[tuple[str, str]]) -> None:
        super().__init__()
        self.server, self.answers = server, answers

    def __bool__(self) -> bool:
        return True

    def pop(self, index=0):
        prompt = json.loads(self.server.requests[-1]["body"])["messages"][-1]["content"]
        for words, answer in self.answers:
            if words in prompt:
                return 200, chat(answer), {}, 0
        return 500, {"error": {"message": f"no scripted answer for {prompt[:80]!r}"}}, {}, 0


def model(server, *answers: tuple[str, str]) -> Model:
    server.replies = Model(server, list(answers))
    return server.replies


def prompts(server) -> list[str]:
    return [json.loads(r["body"])["messages"][-1]["content"] for r in server.requests]


def activated(org, owner, key: str) -> Workflow:
    workflow = workflow_templates.load(organization=org, by=owner, key=key)
    return workflow_transition(workflow_id=workflow.pk, name="activate", by=owner)


def the_run() -> WorkflowRun:
    return WorkflowRun.objects.get()


def later() -> None:
    """The current wait is over and the sweep resumes the run."""
    time_passes()
    sweep(fan_out=False)


def event(org, body: dict) -> None:
    event_receive(organization_id=org.pk, body=body, source="api")
    drain()


def sent() -> list[tuple[str, str]]:
    return list(EmailMessage.objects.filter(status="sent").order_by("pk").values_list("to", "subject"))


def texts() -> list[tuple[str, str, str]]:
    return list(SmsMessage.objects.order_by("pk").values_list("to", "body", "status"))


def notes() -> list[tuple[str, str]]:
    return list(Notification.objects.order_by("pk").values_list("user__username", "title"))


def days_to_wait(run: WorkflowRun) -> int:
    """How many days the step the run waits at waits (from now)."""
    step = run.actions.get(status="waiting")
    wake = datetime.fromisoformat(step.result["wake_at"])
    return round((wake - timezone.now()).total_seconds() / 86400)


@pytest.fixture
def sms(org) -> SmsSettings:
    return SmsSettings.objects.create(organization=org, from_number="+15550009999", auth_token="test-token")


def reply(sms_settings: SmsSettings, number: str, body: str, sid: str = "SMreply1") -> None:
    """The contact answers by SMS; the run that waits for it is woken and goes on."""
    inbound.receive(sms_settings, {"MessageSid": sid, "From": number, "Body": body})
    continue_runs(list(WorkflowRun.objects.filter(status="started").values_list("pk", flat=True)))


# --- 1. New lead welcome (SMS first) ------------------------------------------------------------
INQUIRY = {"type": "new_lead", "data": {"inquiry": {
    "name": "Grace Hopper", "email": "grace@example.com", "phone": "(555) 010-0200", "source": "the web form",
    "message": "A quote for a cedar deck"}}}
INTRO = "Hi Grace, this is Acme Decks: cedar is our speciality. How big is the deck you have in mind?"


def follow_up(n: int) -> tuple[str, str]:
    return f"follow-up email {n} of 4", json.dumps({"subject": f"Your cedar deck ({n})", "body": f"Note {n}"})


def test_new_lead_welcome_tells_the_team_when_the_lead_replies(org, owner, sms, openai):
    model(openai, ("first text message to Grace Hopper", INTRO))
    activated(org, owner, "new-lead-welcome-sms")
    event(org, INQUIRY)
    assert texts() == [("+15550100200", INTRO, "sent")] and the_run().status == "waiting"
    assert "asked us about: A quote for a cedar deck (they found us through the web form)" in prompts(openai)[0]
    reply(sms, "+15550100200", "About 20 square metres, can you call me?")
    run = the_run()
    assert run.status == "completed", run.error
    assert notes() == [("owner", "Grace Hopper replied to the welcome SMS")]
    assert Notification.objects.get().body == ("“About 20 square metres, can you call me?” from +15550100200. They "
                                               "asked about: A quote for a cedar deck")
    assert sent() == [] and not run.actions.filter(node_id="follow-ups").exists()


def test_new_lead_welcome_follows_up_by_email_with_decreasing_frequency_when_nobody_replies(org, owner, sms, openai):
    model(openai, ("first text message to Grace Hopper", INTRO), *(follow_up(n) for n in (1, 2, 3, 4)))
    activated(org, owner, "new-lead-welcome-sms")
    event(org, INQUIRY)
    assert the_run().status == "waiting"
    later()  # 48 hours without a reply: the first follow-up (day 2), then 3 days until the second
    run = the_run()
    assert run.actions.get(node_id="intro-sms").result["timed_out"] is True
    assert sent() == [("grace@example.com", "Your cedar deck (1)")]
    assert run.status == "waiting" and days_to_wait(run) == 3
    gaps = []
    for touch in (2, 3, 4):
        later()
        run = the_run()
        assert sent()[-1] == ("grace@example.com", f"Your cedar deck ({touch})")
        if touch < 4:
            gaps.append(days_to_wait(run))
    assert gaps == [4, 5]  # days 2, 5, 9 and 14
    assert run.status == "completed", run.error
    assert len(sent()) == 4 and EmailMessage.objects.order_by("pk").last().body == "Note 4"
    asked = prompts(openai)[1:]
    assert "asked us about “A quote for a cedar deck” 2 days ago" in asked[0]
    assert "follow-up email 4 of 4: a short last note that leaves the door open" in asked[3]
    assert notes() == [] and len(texts()) == 1


def test_new_lead_welcome_asks_for_a_call_when_there_is_no_email_to_follow_up_by(org, owner, sms, openai):
    model(openai, ("first text message", INTRO))
    activated(org, owner, "new-lead-welcome-sms")
    event(org, {"type": "new_lead", "data": {"inquiry": {"name": "Alan Kay", "phone": "+1 555 010 0300"}}})
    later()
    assert the_run().status == "completed" and sent() == []
    assert notes() == [("owner", "Alan Kay did not answer the welcome SMS")]
    assert Notification.objects.get().body == ("No reply in 48 hours and no email to follow up by: call "
                                               "+15550100300.")


def test_new_lead_welcome_leaves_an_enquiry_without_a_phone_to_the_email_sequence(org, owner, sms, openai):
    activated(org, owner, "new-lead-welcome-sms")
    event(org, {"type": "new_lead", "data": {"inquiry": {"name": "Ada", "email": "ada@example.com"}}})
    assert not WorkflowRun.objects.exists() and not openai.requests


# --- 2. Annual check-in -------------------------------------------------------------------------
def a_year_before(due: datetime, days_later: int = 0):
    return timezone.localtime(due - timedelta(days=365 - days_later)).date()


def test_annual_check_in_emails_the_contacts_of_deals_won_a_year_ago_this_week(org, owner, openai):
    workflow = activated(org, owner, "annual-check-in")
    schedules.fire_due()
    due = WorkflowSchedule.objects.get(workflow=workflow).next_due_at
    assert (timezone.localtime(due).weekday(), timezone.localtime(due).hour) == (0, 9)
    ada = Contact.objects.create(organization=org, first_name="Ada", email="ada@example.com")
    bo = Contact.objects.create(organization=org, first_name="Bo", email="bo@example.com")
    no_email = Contact.objects.create(organization=org, first_name="Cy")
    won, lost = stage(org, "won"), stage(org, "lost")
    for title, contact, at, closed in [
        ("Cedar deck", ada, won, a_year_before(due, 2)),      # won a year ago this week: the one
        ("Fence", bo, lost, a_year_before(due, 3)),           # lost: no check-in
        ("Shed", no_email, won, a_year_before(due, 1)),        # nobody to email
        ("Roof", bo, won, a_year_before(due, 7)),              # a year ago next week
        ("Porch", bo, won, a_year_before(due, -1)),            # a year ago last week
    ]:
        Deal.objects.create(organization=org, title=title, contact=contact, stage=at, close_date=closed,
                            owner=owner)
    model(openai, ("we finished “Cedar deck” for Ada", json.dumps({
        "subject": "A year with your cedar deck", "body": "Hi Ada, how is the deck holding up?"})))
    schedules.fire_due(now=due + timedelta(seconds=1))
    drain()
    run = the_run()
    assert run.status == "completed", run.error
    found = run.actions.get(node_id="closed-a-year-ago").result["output"]
    assert [row["title"] for row in found["rows"]] == ["Cedar deck", "Fence"]
    assert sent() == [("ada@example.com", "A year with your cedar deck")]
    assert EmailMessage.objects.get().body == "Hi Ada, how is the deck holding up?"
    (asked,) = prompts(openai)
    assert f"(closed on {a_year_before(due, 2).isoformat()})" in asked and "signed by owner and the team" in asked
    assert run.actions.get(node_id="was-won", token="1").result["passed"] is False  # Fence was lost


def test_annual_check_in_goes_on_after_one_email_fails(org, owner, openai):
    workflow = activated(org, owner, "annual-check-in")
    schedules.fire_due()
    due = WorkflowSchedule.objects.get(workflow=workflow).next_due_at
    for name, email in [("Ada", "ada@example.com"), ("Bo", "not-an-email")]:
        contact = Contact.objects.create(organization=org, first_name=name, email=email)
        Deal.objects.create(organization=org, title=f"{name}'s deck", contact=contact, stage=stage(org, "won"),
                            close_date=a_year_before(due, 2))
    model(openai, ("for Ada", json.dumps({"subject": "Hi Ada", "body": "A year on"})),
          ("for Bo", json.dumps({"subject": "Hi Bo", "body": "A year on"})))
    schedules.fire_due(now=due + timedelta(seconds=1))
    drain()
    run = the_run()
    assert sent() == [("ada@example.com", "Hi Ada")]
    failed = run.actions.get(status="failed")
    assert failed.node_id == "check-in-email" and "is not an email address" in failed.error
    assert run.status == "partial"  # errorPolicy: skip: the run went on past the failed step


# --- 5. Birthday & anniversary check-ins --------------------------------------------------------
def test_anniversary_check_ins_text_the_contacts_added_a_year_ago_this_week(org, owner, sms, openai):
    workflow = activated(org, owner, "birthday-check-ins")
    schedules.fire_due()
    due = WorkflowSchedule.objects.get(workflow=workflow).next_due_at
    assert (timezone.localtime(due).weekday(), timezone.localtime(due).hour) == (0, 10)
    people = {name: Contact.objects.create(organization=org, first_name=name, last_name="Example", phone=phone)
              for name, phone in [("Ada", "(555) 010-0100"), ("Bo", "(555) 010-0101"), ("Cy", ""),
                                  ("Di", "(555) 010-0103")]}
    for name, days in [("Ada", 2), ("Bo", 3), ("Cy", 1), ("Di", -30)]:
        Contact.objects.filter(pk=people[name].pk).update(created_at=due - timedelta(days=365 - days))
    Contact.objects.filter(pk=people["Bo"].pk).update(sms_opted_out_at=timezone.now())  # replied STOP
    model(openai, ("text message to Ada Example", "Ada, a year with us this week: thank you!"),
          ("text message to Bo Example", "Bo, a year with us this week: thank you!"))
    schedules.fire_due(now=due + timedelta(seconds=1))
    drain()
    run = the_run()
    rows = run.actions.get(node_id="anniversaries").result["output"]["rows"]
    assert [row["first_name"] for row in rows] == ["Ada", "Bo"]  # Cy has no phone, Di joined in another week
    assert texts() == [("+15550100100", "Ada, a year with us this week: thank you!", "sent")]
    refused = run.actions.get(node_id="check-in-sms", token="1")
    assert refused.status == "failed" and "asked for no more SMS" in refused.error
    assert run.status == "partial"  # errorPolicy: skip: one contact's refusal does not stop the others
    assert SmsMessage.objects.get().contact == people["Ada"]


def test_the_contact_query_cannot_find_birthdays_yet(org):
    """What keeps this template from finding birthdays: crm/query_contacts filters only on a
    contact's standard fields (function.py CONTACT_FIELDS), not on the organization's own
    `custom` date field, and no filter or condition compares a date's month and day only."""
    from crm_automation.automation.nodes import function
    from crm_automation.crm.models import CustomField

    CustomField.objects.create(organization=org, entity="contact", key="birthday", label="Birthday", kind="date")
    config = {"functionRef": "crm/query_contacts", "args": {"filters": [
        {"field": "custom.birthday", "operator": "gte", "value": "2026-03-02"}]}}
    assert function.validate(config, organization_id=org.pk) == [(
        "config.args.filters[0].field", "“custom.birthday” is not a field of contacts; use one of id, first_name, "
                                        "last_name, email, phone, company, created_at")]
    assert "custom" not in function.CONTACT_FIELDS


# --- 4. Onboarding flow kickoff -----------------------------------------------------------------
APPROVED = {"type": "estimate.approved", "contact": {"email": "ada@example.com"},
            "data": {"estimate": {"number": "E-1042", "amount": "4800.00"}}}


def answer(by, node_id: str, decision: str, comment: str = "") -> None:
    run_answer(run_id=the_run().pk, by=by, node_id=node_id, decision=decision, comment=comment)
    continue_runs([the_run().pk])


def question() -> str:
    """The node of the question the run waits on."""
    return the_run().actions.get(status="waiting", action_type="user_input").node_id


def test_onboarding_runs_from_the_approved_estimate_to_a_planned_project(org, owner, teammate, contact):
    activated(org, owner, "onboarding-flow-kickoff")
    event(org, APPROVED)
    assert sent() == [("ada@example.com", "Your invoice for estimate E-1042")]
    assert "approving estimate E-1042 (4800.00)" in EmailMessage.objects.get().body
    assert the_run().status == "waiting" and days_to_wait(the_run()) == 1
    later()  # a day to look the invoice over
    assert sent()[1:] == [("ada@example.com", "Reserve your start date: estimate E-1042")]
    assert question() == "card-on-file" and the_run().status == "waiting"
    asked = Notification.objects.filter(title__startswith="A workflow asks you")
    assert {n.user.username for n in asked} == {"owner", "teammate"}  # ops may answer
    answer(teammate, "card-on-file", "approved", "card ending 4242")
    assert sent()[2:] == [("ada@example.com", "Your contract for estimate E-1042")]
    assert question() == "contract-signed"
    answer(teammate, "contract-signed", "approved")
    run = the_run()
    assert run.status == "completed", run.error
    note = Note.objects.get()
    assert note.contact == contact and note.body == (
        "Onboarding complete for estimate E-1042 (4800.00): invoice sent, card on file (confirmed by teammate), "
        "contract signed (confirmed by teammate).")
    project = Project.objects.get()
    assert (project.name, project.status, project.contact) == ("Ada Lovelace: estimate E-1042", "planned", contact)
    assert len(sent()) == 3


def test_onboarding_stops_without_a_card_and_tells_the_admins(org, owner, contact):
    activated(org, owner, "onboarding-flow-kickoff")
    event(org, APPROVED)
    later()
    later()  # three days without an answer
    run = the_run()
    assert run.status == "completed" and run.actions.get(node_id="card-on-file").result["decision"] == "timed-out"
    assert ("owner", "No card on file for Ada Lovelace after 3 days") in notes()
    assert len(sent()) == 2 and not Note.objects.exists() and not Project.objects.exists()


@pytest.mark.parametrize(("refused_at", "emails"), [("card-on-file", 2), ("contract-signed", 3)])
def test_onboarding_stops_when_a_teammate_answers_no(org, owner, contact, refused_at, emails):
    activated(org, owner, "onboarding-flow-kickoff")
    event(org, APPROVED)
    later()
    if refused_at == "contract-signed":
        answer(owner, "card-on-file", "approved")
    answer(owner, refused_at, "rejected", "changed their mind")
    assert the_run().status == "completed"
    assert notes()[-1] == ("owner", "The onboarding of Ada Lovelace was stopped")
    assert len(sent()) == emails and not Project.objects.exists()


def test_onboarding_reminds_the_admins_of_an_unsigned_contract(org, owner, contact):
    activated(org, owner, "onboarding-flow-kickoff")
    event(org, APPROVED)
    later()
    answer(owner, "card-on-file", "approved")
    later()  # seven days without the signed contract
    assert the_run().status == "completed"
    assert notes()[-1] == ("owner", "Ada Lovelace has not signed the contract in 7 days")


# --- 3. Video production pipeline ---------------------------------------------------------------
REVIEW = {"type": "review.submitted", "contact": {"email": "ada@example.com"}, "data": {"review": {
    "rating": 5, "text": "The deck is perfect, the crew was lovely.", "platform": "Google",
    "url": "https://videos.example.com/ada-deck.mp4"}}}
STORYBOARD = {"title": "Ada's cedar deck", "scenes": [{"seconds": 10, "shot": "The deck at dusk", "text": "Ada"}]}
VIDEO_ANSWERS = [
    ("storyboard of a 45-second testimonial video", json.dumps(STORYBOARD)),
    ("Write the voice-over of this storyboard", "Ada wanted a deck for summer evenings."),
    ("for our portfolio page", "A cedar deck for Ada, who calls it perfect."),
    ("one social media post", "Summer evenings, sorted. #decks #cedar #happyclients"),
    ("YouTube title and description", json.dumps({"title": "Ada's cedar deck", "description": "A deck story."})),
]


def test_video_pipeline_storyboards_narrates_and_writes_every_platforms_caption(org, owner, contact, openai):
    model(openai, *VIDEO_ANSWERS)
    activated(org, owner, "video-production-pipeline")
    event(org, REVIEW)
    run = the_run()
    assert run.status == "completed", run.error
    asked = prompts(openai)
    assert "(5 stars on Google): “The deck is perfect, the crew was lovely.”" in asked[0]
    assert "Ada's own words where they fit: " + json.dumps(STORYBOARD, sort_keys=True) in asked[1]
    assert len(asked) == 5 and run.actions.get(node_id="captions-ready").result["arrived_from"] == [
        "portfolio-caption", "social-caption", "youtube-description"]
    render, publish = Task.objects.order_by("pk")
    assert (render.title, render.priority) == ("Render the testimonial video “Ada's cedar deck”", "high")
    assert render.description.startswith("Customer video: https://videos.example.com/ada-deck.mp4\n\nStoryboard: [")
    assert render.description.endswith("Voice-over:\nAda wanted a deck for summer evenings.")
    assert publish.title == "Publish “Ada's cedar deck” once it is rendered"
    assert publish.description == ("Portfolio: A cedar deck for Ada, who calls it perfect.\n\nSocial: Summer evenings, "
                                   "sorted. #decks #cedar #happyclients\n\nYouTube: Ada's cedar deck\nA deck story.")


def test_video_pipeline_leaves_a_low_rating_or_a_review_without_video_alone(org, owner, contact, openai):
    activated(org, owner, "video-production-pipeline")
    event(org, {**REVIEW, "data": {"review": {**REVIEW["data"]["review"], "rating": 3}}})
    event(org, {**REVIEW, "data": {"review": {"rating": 5, "text": "Great"}}})
    assert not WorkflowRun.objects.exists() and not openai.requests


def connected_pipeline() -> str:
    """The shipped pipeline as an organization that has connected its render service would make it:
    the render task becomes an http/request to its webhook target, the publish task names the video."""
    document, _tree = documents.from_yaml(workflow_templates.get("video-production-pipeline").text)
    nodes = {node["id"]: node for node in document["nodes"]}
    nodes["render-task"].update(id="render-video", data={"subtype": "tool-call", "label": "Render Video", "config": {
        "toolName": "http/request", "defaults": {"target": "render-service", "body": {
            "title": "{{Storyboard.title}}", "scenes": "{{Storyboard.scenes}}", "narrative": "{{Narrative}}",
            "source": "{{trigger.review.url}}"}}}})
    nodes["publish-task"]["data"]["config"]["defaults"]["title"] = "Publish {{Render Video.body.video_url}}"
    for edge in document["edges"]:
        for end in ("source", "target"):
            if edge[end] == "render-task":
                edge[end] = "render-video"
    return documents.to_yaml({**document, "id": "connected-video-pipeline", "name": "Connected video pipeline"})


def test_video_pipeline_with_a_connected_render_service_sends_it_the_storyboard(org, owner, contact, openai,
                                                                                 settings):
    settings.WEBHOOK_ALLOWED_HOSTS = ["127.0.0.1"]  # the stand-in is local: allowed explicitly
    render = Receiver()
    try:
        webhook_target_create(organization=org, name="render-service", url=f"http://127.0.0.1:{render.port}/render",
                              by=None)
        render.reply(201, {"job": "r-1", "video_url": "https://cdn.example.com/r-1.mp4"})
        model(openai, *VIDEO_ANSWERS)
        workflow, _notes = workflow_import_yaml(organization=org, by=owner, text=connected_pipeline())
        workflow_transition(workflow_id=workflow.pk, name="activate", by=owner)
        event(org, REVIEW)
        run = the_run()
        assert run.status == "completed", run.error
        (request,) = render.requests
        assert request["path"] == "/render" and request["headers"]["webhook-id"]
        assert json.loads(request["body"]) == {
            "title": "Ada's cedar deck", "scenes": STORYBOARD["scenes"], "source": REVIEW["data"]["review"]["url"],
            "narrative": "Ada wanted a deck for summer evenings."}
        assert Task.objects.get().title == "Publish https://cdn.example.com/r-1.mp4"
    finally:
        render.close()


def test_a_template_cannot_name_a_render_service_every_organization_has(org, owner):
    """Why the shipped pipeline has a render task: a webhook target is the organization's own, and a
    template that names one does not load where there is none (seed_demo loads every template)."""
    with pytest.raises(documents.DocumentError) as refused:
        workflow_import_yaml(organization=org, by=owner, text=connected_pipeline())
    assert "“render-service” is not a webhook target of this organization; create one first" in str(refused.value)
