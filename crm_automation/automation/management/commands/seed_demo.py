"""Load the demo organization (idempotent): stages, a user, records and its workflows."""

import os
import secrets
from datetime import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand
from django.db import transaction

from crm_automation.automation import plans, workflow_templates
from crm_automation.automation.models import AutomationEvent, UnitPrices, Workflow, WorkflowStatus
from crm_automation.automation.services.monitoring import unit_prices_set, workflow_set_minutes_saved
from crm_automation.automation.services.shadow import workflow_set_mode
from crm_automation.automation.services.workflows import (
    workflow_create,
    workflow_publish,
    workflow_transition,
    workflow_update,
)
from crm_automation.automation.triggers.manual import workflow_start
from crm_automation.crm.changes import DEAL_STAGE_CHANGE
from crm_automation.crm.models import (
    Contact,
    Deal,
    EventType,
    Lead,
    Membership,
    Organization,
    Project,
    SmsSettings,
    Stage,
    Task,
)
from crm_automation.crm.services import deal_move_to_stage, leads_import
from crm_automation.refusals import Refused, reasons
from crm_automation.webhooks.models import WebhookEndpoint
from crm_automation.webhooks.services import webhook_endpoint_create

STAGES = [("new", "New"), ("qualified", "Qualified"), ("proposal", "Proposal"),
          ("negotiation", "Negotiation"), ("won", "Won"), ("lost", "Lost")]
CONTACTS = [("Ada", "Lovelace", "ada@example.com", "Analytical Ltd"),
            ("Grace", "Hopper", "grace@example.com", "Compiler Co"),
            ("Alan", "Turing", "alan@example.com", "Bletchley Digital")]
# Ada's phone: `manage.py send_demo_event` (the billing system) names her by it, in another format.
DEMO_PHONE = "+1 (555) 010-0100"
DEALS = [("Analytical website redesign", "12000", "proposal", 0),
         ("Compiler Co brand refresh", "8500", "negotiation", 1),
         ("Bletchley SEO retainer", "3000", "qualified", 2)]
LEADS = [("Katherine Johnson", "katherine@example.com", "Orbital Partners", "referral"),
         ("Margaret Hamilton", "margaret@example.com", "Apollo Software", "website"),
         ("Edsger Dijkstra", "edsger@example.com", "Shortest Path BV", "event")]


# name, description, trigger, its settings, steps: projects, events and a start by hand.
DEMO_EVENT_WORKFLOWS: list[tuple[str, str, str, dict[str, Any], list[dict[str, Any]]]] = [
    ("Open a project for a won deal", "A won deal becomes a project (its contact, its owner), with a note.",
     "deal_stage_change", {"to_stage": "won"}, [
         {"id": "open", "type": "create_project", "label": "Open the project", "config": {
             "name": "{{deal.title}}", "status": "active", "ends_in_days": 30}},
         {"id": "note", "type": "create_note", "label": "Note it", "config": {
             "body": "Project opened by automation when the deal was won."}}]),
    ("Complete a project after its final inspection", "The task 'Final inspection' done completes its project.",
     "task_completed", {}, [
         {"id": "inspected", "type": "condition", "label": "Final inspection", "config": {
             "combinator": "and", "rules": [{"field": "trigger.task.title", "operator": "contains",
                                             "value": "Final inspection"}]}},
         {"id": "complete", "type": "update_field", "label": "Complete it", "config": {
             "field": "project.status", "value": "completed"}}]),
    ("Ask for a review when a project is completed", "Project completed: thank the client, ask for a review.",
     "project_completed", {}, [
         {"id": "thanks", "type": "send_email", "label": "Review request", "config": {
             "to": "{{trigger.contact.email}}", "subject": "How did {{project.name}} go?",
             "body": "Hi {{trigger.contact.first_name}},\n\n{{project.name}} is done. Would you leave us a "
                     "review? It takes a minute and helps us a lot."}}]),
    ("Text the client when a project is completed", "Project completed: a short thank-you by SMS.",
     "project_completed", {}, [
         {"id": "text", "type": "send_sms", "label": "Thank-you SMS", "config": {
             "to": "{{trigger.contact.phone}}",
             "body": "Hi {{trigger.contact.first_name}}, {{project.name}} is done. Thank you! "
                     "Reply STOP to opt out."}}]),
    ("Overdue invoice reminder", "The billing system says an invoice is overdue: a polite reminder, and a task "
                                 "when it is more than 14 days late.",
     "event:invoice.overdue", {}, [
         {"id": "remind", "type": "send_email", "label": "Reminder", "config": {
             "to": "{{trigger.contact.email}}", "subject": "Invoice {{trigger.invoice.number}} is overdue",
             "body": "Hi {{trigger.contact.first_name}},\n\nour invoice {{trigger.invoice.number}} over "
                     "{{trigger.invoice.amount_due}} was due on {{trigger.invoice.due_date}}. "
                     "{{trigger.invoice.url}}"}},
         {"id": "late", "type": "condition", "label": "Very late", "config": {
             "combinator": "and", "rules": [{"field": "trigger.invoice.days_overdue", "operator": "gt",
                                             "value": 14}]}},
         {"id": "call", "type": "create_task", "label": "Call about it", "config": {
             "title": "Call {{trigger.contact.first_name}} about invoice {{trigger.invoice.number}}",
             "priority": "high", "assignee": "owner"}}]),
    ("Log a site visit", "Started by hand on a project: asks for the visit's date and notes, writes a note.",
     "manual_project", {"inputs": [
         {"key": "visited_on", "label": "Visited on", "kind": "date", "required": True},
         {"key": "outcome", "label": "Outcome", "kind": "choice", "choices": ["on track", "delayed", "blocked"],
          "default": "on track"},
         {"key": "notes", "label": "Notes", "kind": "long_text"}]}, [
         {"id": "log", "type": "create_note", "label": "Visit note", "config": {
             "body": "Site visit on {{trigger.input.visited_on}}: {{trigger.input.outcome}}. "
                     "{{trigger.input.notes}}"}}]),
]

LIVE_TEMPLATES = {"large-deal-approval", "lost-deal-feedback", "proposal-follow-up-3-touch", "weekly-pipeline-review"}


def demo_password_file() -> Path:
    return Path(settings.VAR_DIR) / "demo-password.txt"


def remember_demo_password(password: str) -> None:
    path = demo_password_file()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(password + "\n")
    path.chmod(0o600)


def room_for_more(org: Organization) -> str:
    """Whether the workflow a newcomer builds next can be activated: said once the demo is ready.

    An existing demo keeps the plan it has (someone may have set it in the admin on purpose), so
    a demo seeded on Pro before it moved to Enterprise is told how to make room."""
    active = Workflow.objects.filter(organization=org, status=WorkflowStatus.ACTIVATED).count()
    limit = plans.ACTIVE_WORKFLOW_LIMIT.get(org.plan)
    plan = org.get_plan_display()
    if not plans.includes_automation(org.plan):
        return f"{org.name} is on the {plan} plan, which has no automation: set its plan in the admin."
    if limit is None:
        return f"{org.name} is on the {plan} plan: {active} workflows active, no limit; yours can be activated too."
    if active < limit:
        return f"{org.name} is on the {plan} plan: {active} of {limit} workflows active, {limit - active} more can be."
    return (f"{org.name} is on the {plan} plan: {active} of {limit} workflows active, none more can be: pause one, "
            f"or set the organization's plan to Enterprise in the admin.")


class Command(BaseCommand):
    help = "Create or refresh the demo organization 'Demo Agency' (safe to run again)."

    def step(self, text: str) -> None:
        self.stdout.write(f"  • {text}")

    @transaction.atomic
    def handle(self, *args, **options) -> None:
        self.stdout.write("Seeding demo data…")
        # Enterprise: the demo shows every capability with all its workflows live (ten of them,
        # the whole of Pro's allowance), and the first workflow a newcomer builds can go live too.
        org, created = Organization.objects.get_or_create(
            slug="demo", defaults={"name": "Demo Agency", "plan": Organization.Plan.ENTERPRISE,
                                   "time_zone": "Europe/Berlin"}
        )
        self.step(f"organization {org.name} ({'created' if created else 'exists'})")
        stages = {}
        for order, (slug, name) in enumerate(STAGES):
            stages[slug], _ = Stage.objects.get_or_create(
                organization=org, slug=slug,
                defaults={"name": name, "order": order, "is_won": slug == "won", "is_lost": slug == "lost"},
            )
        self.step(f"{len(stages)} stages")

        User = get_user_model()
        user = User.objects.filter(username="demo").first()
        password = os.environ.get("DEMO_PASSWORD")
        if user is None:
            generated = not password
            password = password or secrets.token_urlsafe(9)
            user = User.objects.create_user("demo", "demo@example.com", password, is_staff=True,
                                            first_name="Demo")
            note = f"password: {password}" if generated else "password from DEMO_PASSWORD"
            if generated:  # so `make run` can show it again once everything is up (var/ is not committed)
                remember_demo_password(password)
            self.step(f"user 'demo' created ({note})")
        else:
            if password:
                user.set_password(password)
                user.save(update_fields=["password"])
            self.step("user 'demo' exists" + (" (password reset from DEMO_PASSWORD)" if password else ""))
        Membership.objects.get_or_create(user=user, organization=org,
                                         defaults={"role": Membership.Role.ADMIN})

        if not Contact.objects.filter(organization=org).exists():
            contacts = [Contact.objects.create(organization=org, first_name=f, last_name=last,
                                               email=e, company=c) for f, last, e, c in CONTACTS]
            for title, amount, stage, contact in DEALS:
                Deal.objects.create(organization=org, title=title, amount=Decimal(amount),
                                    stage=stages[stage], contact=contacts[contact], owner=user)
            for name, email, company, source in LEADS:
                Lead.objects.create(organization=org, name=name, email=email, company=company, source=source,
                                    owner=user)
            self.step(f"{len(CONTACTS)} contacts, {len(DEALS)} deals, {len(LEADS)} leads")
        else:
            self.step("contacts, deals and leads exist")

        if not Workflow.objects.filter(organization=org, name="Won deal kickoff").exists():
            kickoff = workflow_create(
                organization=org, name="Won deal kickoff", by=user, reenrollment=Workflow.Reenrollment.ONCE,
                description="When a deal is won: kickoff task, probability 100, email the client.",
                trigger_type="deal_stage_change", trigger_config={"to_stage": "won"},
                actions=[
                    {"type": "create_task", "label": "Kickoff Task", "config": {"title": "Kick off {{deal.title}}",
                                                       "due_in_days": 2, "priority": "high",
                                                       "assignee": "owner"}},
                    {"type": "update_field", "label": "Probability 100",
                     "config": {"field": "probability", "value": 100}},
                    {"type": "send_email", "label": "Welcome Email", "config": {
                        "to": "{{deal.contact.email}}",
                        "subject": "Welcome aboard: {{deal.title}}",
                        "body": "Hi {{deal.contact.first_name}},\n\nThanks for choosing us for "
                                "{{deal.title}}. We will be in touch to schedule the kickoff.\n"}},
                ],
            )
            workflow_transition(workflow_id=kickoff.pk, name="activate", by=user)
            # A saved edit waiting to be published: the Publish page shows which recent runs it
            # would change (the regression check), once the worker has run the demo's history.
            edits = [dict(action) for action in Workflow.objects.get(pk=kickoff.pk).definition["actions"]]
            for action in edits:
                if action["type"] == "send_email":
                    action["config"] = {**action["config"], "subject": "Welcome to the team: {{deal.title}}"}
            workflow_update(workflow_id=kickoff.pk, by=user, actions=edits)
            self.step("workflow 'Won deal kickoff' (activated; an edit of its email waits on Publish)")
        # What the Health tab's "this month" and the Costs page price: a kickoff by hand takes about
        # 20 minutes; prices near an email provider's, an SMS carrier's and a small model's.
        kickoff = Workflow.objects.get(organization=org, name="Won deal kickoff")
        if not kickoff.minutes_saved:
            workflow_set_minutes_saved(workflow_id=kickoff.pk, by=user, minutes=20)
        if not UnitPrices.objects.filter(organization=org).exists():
            unit_prices_set(organization_id=org.pk, by=user, values={
                "email": "0.001", "sms_segment": "0.0079", "ai_1k_tokens": "0.003", "webhook_call": "0.0001"})
        self.step("time saved (20 minutes a kickoff run) and unit prices (the Costs page)")
        if not Workflow.objects.filter(organization=org, name="Lead welcome email").exists():
            workflow_create(
                organization=org, name="Lead welcome email", by=user,
                description="Draft: welcome a converted lead.",
                trigger_type="lead_converted",
                actions=[{"type": "send_email", "config": {
                    "to": "{{lead.email}}", "subject": "Welcome, {{lead.name}}",
                    "body": "Hi {{lead.name}}, great to start working with {{lead.company}}."}}],
            )
            self.step("workflow 'Lead welcome email' (draft)")
        if not Workflow.objects.filter(organization=org, name="Referral thank-you").exists():
            workflow_create(
                organization=org, name="Referral thank-you", by=user,
                description="Draft: a converted lead who came by referral gets the referral email.",
                trigger_type="lead_converted",
                actions=[{"id": "referred", "type": "condition", "label": "Came by referral", "config": {
                            "combinator": "and", "rules": [{"field": "lead.source", "operator": "eq",
                                                            "value": "referral"}]}},
                         {"id": "thanks", "type": "send_email", "label": "Referral email", "config": {
                            "to": "{{lead.email}}", "subject": "Thanks for coming to us by referral, {{lead.name}}",
                            "body": "Hi {{lead.name}}, whoever sent you our way: thank them from us."}}],
            )
            self.step("workflow 'Referral thank-you' (draft: a condition on the lead's source)")
        self._graph_workflows(org, user)
        self._field_change_workflow(org, user)
        self._contact_change_workflow(org, user)
        self._bulk_and_ai_workflows(org, user)
        self._projects_and_events(org, user, stages)
        self._rollout_and_shadow(org, user)
        self._history(org, stages, user)
        self.stdout.write(self.style.SUCCESS("Demo data ready. Log in as 'demo' at /crm/automation/ "
                                             "(the admin, /admin/, is for records and settings)."))
        self.stdout.write(room_for_more(org))

    def _projects_and_events(self, org, user, stages) -> None:
        """Projects (one opened by a won deal's workflow, one finished by a task's workflow, whose
        completion asks for a review), another system's events (an overdue invoice from the
        billing system: `manage.py send_demo_event`), a declared event and a manual workflow
        with inputs."""
        ada = Contact.objects.filter(organization=org, email="ada@example.com").first()
        if ada is not None and not ada.phone:
            ada.phone = DEMO_PHONE
            ada.save(update_fields=["phone"])
        if not Project.objects.filter(organization=org).exists():
            deal = Deal.objects.filter(organization=org, contact=ada).first()
            project = Project.objects.create(organization=org, name="Analytical website build", contact=ada,
                                             deal=deal, owner=user, status=Project.Status.ACTIVE,
                                             service_type="Website build")
            Task.objects.create(organization=org, title="Final inspection", project=project, assignee=user)
            self.step("project 'Analytical website build' (active; its task 'Final inspection' completes it)")
        EventType.objects.get_or_create(organization=org, name="permit.approved", defaults={
            "description": "The city approved a building permit for a project.", "about": "project",
            "fields": [{"key": "permit.number", "kind": "text", "required": True, "label": "Permit number"},
                       {"key": "permit.approved_on", "kind": "date", "required": False, "label": "Approved on"}]})
        if not SmsSettings.objects.filter(organization=org).exists():
            SmsSettings.objects.create(organization=org, from_number="+15550000100", quiet_start=time(21),
                                       quiet_end=time(8), auth_token=secrets.token_urlsafe(24))
            self.step("SMS settings (the test provider: nothing leaves the server; quiet hours 21:00–08:00)")
        if not WebhookEndpoint.objects.filter(organization=org, name="Billing system").exists():
            webhook_endpoint_create(organization=org, name="Billing system", by=user)
            self.step("webhook endpoint 'Billing system' (send_demo_event signs with its secret)")
        for name, description, trigger, config, actions in DEMO_EVENT_WORKFLOWS:
            if Workflow.objects.filter(organization=org, name=name).exists():
                continue
            workflow = workflow_create(organization=org, name=name, by=user, description=description,
                                       trigger_type=trigger, trigger_config=config, actions=actions)
            workflow_transition(workflow_id=workflow.pk, name="activate", by=user)
            self.step(f"workflow '{name}' (activated)")

    def _rollout_and_shadow(self, org, user) -> None:
        """A new version of "Big deal alert" rolling out to a quarter of the deals (raised on a
        schedule), and a workflow trying itself out in shadow mode (every effect previewed)."""
        alert = Workflow.objects.filter(organization=org, name="Big deal alert").first()
        if alert is not None and not alert.rollouts.exists():
            actions = [{**action, "config": {**action["config"], "title": "Big deal: {{deal.title}} is now "
                                                                       "{{deal.amount}}"}}
                       if action["type"] == "notify" else action for action in alert.definition["actions"]]
            workflow_update(workflow_id=alert.pk, by=user, actions=actions)
            workflow_publish(workflow_id=alert.pk, by=user, share=25,
                             steps=[{"percent": 50, "after_hours": 24}, {"percent": 100, "after_hours": 24}])
            self.step("'Big deal alert' version 2 rolling out to 25 % of the deals (50 % tomorrow, all the day after)")
        if not Workflow.objects.filter(organization=org, name="Lost deal follow-up").exists():
            lost = workflow_create(
                organization=org, name="Lost deal follow-up", by=user,
                description="Trying itself out in shadow mode: what it would do to each lost deal is previewed.",
                trigger_type="deal_stage_change", trigger_config={"to_stage": "lost"},
                actions=[{"type": "create_task", "label": "Ask why", "config": {
                    "title": "Ask {{deal.contact.first_name}} why we lost {{deal.title}}", "assignee": "owner"}},
                         {"type": "send_email", "label": "Keep in touch", "config": {
                             "to": "{{deal.contact.email}}", "subject": "Thank you for considering us",
                             "body": "Hi {{deal.contact.first_name}}, we would love to stay in touch."}}])
            workflow_transition(workflow_id=lost.pk, name="activate", by=user)
            workflow_set_mode(workflow_id=lost.pk, by=user, mode="shadow")
            self.step("workflow 'Lost deal follow-up' (activated, in shadow mode: nothing is sent)")

    def _field_change_workflow(self, org, user) -> None:
        """A record-updated trigger with crossing semantics: fires once when a deal's amount
        goes over 20,000, not on every later save of a big deal."""
        if Workflow.objects.filter(organization=org, name="Big deal alert").exists():
            return
        alert = workflow_create(
            organization=org, name="Big deal alert", by=user, reenrollment=Workflow.Reenrollment.EVERY_TIME,
            description="When a deal's amount goes over 20,000: tell the admins (once per crossing).",
            trigger_type="deal_updated", trigger_config={"fields": ["amount"], "crossing": True},
            conditions={"combinator": "and", "rules": [{"field": "deal.amount", "operator": "gt", "value": 20000}]},
            actions=[{"type": "notify", "label": "Tell Admins", "config": {
                "title": "{{deal.title}} is now {{deal.amount}} (was {{trigger.changed.amount.old}})",
                "recipients": "admins"}}])
        workflow_transition(workflow_id=alert.pk, name="activate", by=user)
        self.step("workflow 'Big deal alert' (a field-change trigger, activated)")

    def _contact_change_workflow(self, org, user) -> None:
        """A contact-updated trigger watching one field: the admins hear of a new email address
        (the contact travels in the event: old and new address in the notification)."""
        if Workflow.objects.filter(organization=org, name="Contact email changed").exists():
            return
        changed = workflow_create(
            organization=org, name="Contact email changed", by=user, reenrollment=Workflow.Reenrollment.EVERY_TIME,
            description="When a contact's email address changes: tell the admins, with the old and the new one.",
            trigger_type="contact_updated", trigger_config={"fields": ["email"]},
            actions=[{"type": "notify", "label": "Tell Admins", "config": {
                "title": "{{contact.first_name}} {{contact.last_name}}'s email changed",
                "body": "Was {{trigger.changed.email.old}}, now {{trigger.changed.email.new}}.",
                "recipients": "admins"}}])
        workflow_transition(workflow_id=changed.pk, name="activate", by=user)
        self.step("workflow 'Contact email changed' (a contact-updated trigger, activated)")

    def _bulk_and_ai_workflows(self, org, user) -> None:
        """New leads welcomed one by one, but an import of more than 50 is held for review
        (try `manage.py import_leads`); and an AI flow as a draft: an agent writes the note, a
        router sorts the deal (activatable once AI_PROVIDER is set)."""
        if not Workflow.objects.filter(organization=org, name="New lead welcome").exists():
            welcome = workflow_create(
                organization=org, name="New lead welcome", by=user, reenrollment=Workflow.Reenrollment.ONCE,
                description="A task to call each new lead; an import of more than 50 leads is held for review.",
                trigger_type="lead_created", trigger_config={"bulk": {"mode": "hold", "over": 50}},
                actions=[{"type": "create_task", "label": "Call Lead", "config": {
                    "title": "Call {{lead.name}} ({{lead.company}})", "due_in_days": 1, "assignee": "owner"}}])
            workflow_transition(workflow_id=welcome.pk, name="activate", by=user)
            self.step("workflow 'New lead welcome' (imports over 50 held for review, activated)")
            # An import of 60 trade-show leads: the worker holds it, one item on the Bulk holds
            # page (/crm/automation/bulk-holds/) to release or discard, instead of 60 tasks.
            leads_import(organization_id=org.pk, by=user, owner=user, rows=[
                {"name": f"Expo Visitor {i:02}", "email": f"expo{i:02}@example.org", "company": "Trade Show 2026"}
                for i in range(1, 61)])
            self.step("60 leads imported from a trade-show list (held for review by 'New lead welcome')")
        if not Workflow.objects.filter(organization=org, name="AI follow-up").exists():
            workflow_create(
                organization=org, name="AI follow-up", by=user,
                description="When a deal is won: the AI model drafts a thank-you, then sorts the deal by how "
                            "likely a review is.",
                trigger_type="deal_stage_change", trigger_config={"to_stage": "won"},
                actions=[
                    {"id": "draft-note", "type": "agent", "label": "Draft Note", "config": {
                        "additionalPrompt": "Write a warm two-sentence thank-you to {{deal.contact.first_name}} "
                                            "for choosing us for {{deal.title}}."}},
                    {"id": "review-odds", "type": "router", "label": "Review Odds", "config": {
                        "classificationPrompt": "Given the deal {{deal.title}} ({{deal.amount}}), is the client "
                                                "likely to leave a review?",
                        "routes": [{"id": "route-0", "label": "likely"}, {"id": "route-1", "label": "unlikely"}]}},
                    {"id": "ask-review", "type": "send_email", "label": "Ask For Review", "config": {
                        "to": "{{deal.contact.email}}", "subject": "Thank you", "body": "{{Draft Note}}"}},
                    {"id": "call-client", "type": "create_task", "label": "Call Client", "config": {
                        "title": "Call {{deal.contact.first_name}} about {{deal.title}}", "assignee": "owner"}}],
                graph={"edges": [{"source": "trigger", "target": "draft-note"},
                                 {"source": "draft-note", "target": "review-odds"},
                                 {"source": "review-odds", "target": "ask-review", "sourceHandle": "route-0"},
                                 {"source": "review-odds", "target": "call-client", "sourceHandle": "route-1"}]})
            self.step("workflow 'AI follow-up' (agent and router nodes, draft)")
        if not Workflow.objects.filter(organization=org, name="AI deal assistant").exists():
            # A draft, like the one above: it is activated once an AI provider is set, so a
            # demo without an API key still starts.
            workflow_create(
                organization=org, name="AI deal assistant", by=user,
                description="When a deal reaches negotiation: an agent that may look up records, add a task and "
                            "set the deal's probability; then a loop of check-in tasks for as long as the model "
                            "thinks they help (at most 3).",
                trigger_type="deal_stage_change", trigger_config={"to_stage": "negotiation"},
                actions=[
                    {"id": "assistant", "type": "agent", "label": "Assistant", "config": {
                        "additionalPrompt": "The deal {{deal.title}} ({{deal.amount}}) is in negotiation. Look up "
                                            "the client's other deals, add one follow-up task for the owner, set the "
                                            "deal's probability to your estimate, and say what you did.",
                        "tools": ["search_records", "create_task", "update_field"], "maxToolCalls": 5}},
                    {"id": "check-ins", "type": "loop", "label": "Check-ins", "config": {
                        "loopMode": "ask-orchestrator", "maxIterations": 3,
                        "orchestratorPrompt": "Plan check-ins on {{deal.title}}: go on while another one would "
                                              "help close it."}},
                    {"id": "check-in", "type": "create_task", "label": "Check In", "config": {
                        "title": "Check in {{loop.index}} on {{deal.title}}", "due_in_days": 2,
                        "assignee": "owner"}}],
                graph={"edges": [{"source": "trigger", "target": "assistant"},
                                 {"source": "assistant", "target": "check-ins"},
                                 {"source": "check-ins", "target": "check-in", "sourceHandle": "loop-body"}]})
            self.step("workflow 'AI deal assistant' (an agent with CRM tools, an ask-orchestrator loop, draft)")
        if org.ai_monthly_token_budget is None:
            Organization.objects.filter(pk=org.pk).update(ai_monthly_token_budget=200_000)
            self.step("a monthly AI budget of 200,000 tokens (shown on each workflow's Health tab)")

    def _history(self, org, stages, user) -> None:
        """A first history for the run-history accordion and the approvals inbox: three deals
        move (won, a large one to negotiation, lost) the first time the demo is seeded. They
        are real stage changes: the worker `make run` starts runs their workflows."""
        if AutomationEvent.objects.filter(organization=org, kind=DEAL_STAGE_CHANGE).exists():
            return  # seeded before (or the demo has been used): its deals stay where they are
        moves = [("Compiler Co brand refresh", "won"), ("Analytical website redesign", "negotiation"),
                 ("Bletchley SEO retainer", "lost")]
        for title, slug in moves:
            deal = Deal.objects.filter(organization=org, title=title).first()
            if deal is not None and deal.stage.slug != slug:
                deal_move_to_stage(deal=deal, stage=stages[slug])
        self.step("3 deals moved (won, negotiation, lost): their runs appear once the worker starts")
        # An admin starts a workflow that is not started by a person, by hand, with a reason: its run
        # page says who and why, and what the trigger's own checks say (the deal is not won yet).
        kickoff = Workflow.objects.filter(organization=org, name="Won deal kickoff",
                                          status=WorkflowStatus.ACTIVATED).first()
        signed = Deal.objects.filter(organization=org, title="Analytical website redesign").first()
        if kickoff is not None and signed is not None:
            try:
                workflow_start(workflow_id=kickoff.pk, by=user, record=signed,
                               reason="Signed on paper; the stage follows once finance confirms")
            except (Refused, ValidationError) as exc:
                self.step(f"'Won deal kickoff' not started by hand: {' '.join(reasons(exc))}")
            else:
                self.step("'Won deal kickoff' started by hand on “Analytical website redesign”, with a reason")

    def _graph_workflows(self, org, user) -> None:
        """The flow engine's capabilities, each in a workflow: the shipped templates (waits,
        conditions, parallel and merge, a function query, an approval), a manual workflow that
        calls a sub-workflow."""
        for template in workflow_templates.available():
            if Workflow.objects.filter(organization=org, key=template.key).exists() or (
                    template.key == "won-deal-kickoff"):  # the chain above does that job
                continue
            workflow = workflow_templates.load(organization=org, by=user, key=template.key)
            live = template.key in LIVE_TEMPLATES
            if live:
                workflow_transition(workflow_id=workflow.pk, name="activate", by=user)
            self.step(f"workflow '{workflow.name}' from a template ({'activated' if live else 'draft'})")
        if not Workflow.objects.filter(organization=org, key="thank-you-note").exists():
            note = workflow_create(
                organization=org, name="Thank-you note", key="thank-you-note", by=user,
                description="Started by another workflow (or by hand): a short thank-you email.",
                trigger_type="manual_deal", actions=[{"id": "thank", "type": "send_email", "label": "Thank You Email",
                                                      "config": {"to": "{{deal.contact.email}}",
                                                                 "subject": "Thank you, {{deal.contact.first_name}}"}}])
            workflow_transition(workflow_id=note.pk, name="activate", by=user)
            check_in = workflow_create(
                organization=org, name="Client check-in", key="client-check-in", by=user,
                description="Started by hand from a deal: a call task and the thank-you note side by side, then "
                            "a notification.",
                trigger_type="manual_deal", error_handling=Workflow.ErrorHandling.CONTINUE, actions=[
                    {"id": "both", "type": "parallel", "label": "Both", "config": {}},
                    {"id": "call", "type": "create_task", "label": "Call Task",
                     "config": {"title": "Call {{deal.contact.first_name}} about {{deal.title}}",
                                "assignee": "owner", "due_in_days": 1}},
                    {"id": "note", "type": "sub_workflow", "label": "Thank You Note",
                     "config": {"workflowId": "thank-you-note", "awaitResponse": True}},
                    {"id": "done", "type": "merge", "label": "Done", "config": {"strategy": "wait-all"}},
                    {"id": "tell", "type": "notify", "label": "Tell Owner", "config": {
                        "title": "Check-in started for {{deal.title}} (note: {{Thank You Note.status}})",
                        "recipients": "owner"}}],
                graph={"edges": [
                    {"source": "trigger", "target": "both"},
                    {"source": "both", "target": "call", "sourceHandle": "branch-0"},
                    {"source": "both", "target": "note", "sourceHandle": "branch-1"},
                    {"source": "call", "target": "done"}, {"source": "note", "target": "done"},
                    {"source": "done", "target": "tell"}]})
            workflow_transition(workflow_id=check_in.pk, name="activate", by=user)
            self.step("workflows 'Client check-in' (manual: parallel, sub-workflow, merge) and 'Thank-you note'")
