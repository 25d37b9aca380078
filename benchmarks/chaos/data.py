"""Data for the scenarios, made in the harness process (Django set up against the chaos database).

Organizations with stages, an org admin, contacts with emails and deals in "proposal"; workflows
created and activated through the services (`workflow_create`, `workflow_transition`, by=None).
Deals are bulk-created, which records no trigger: the scenarios' movers make the triggers.
"""

import copy
from dataclasses import dataclass, field
from pathlib import Path

from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.db import connection

from crm_automation.automation.definition import compiled, documents
from crm_automation.automation.models import Workflow, WorkflowVersion
from crm_automation.automation.services.workflows import workflow_create, workflow_transition
from crm_automation.crm.models import Contact, Deal, Membership, Organization, Stage

STAGES = ["new", "qualified", "proposal", "negotiation", "won", "lost"]
KICKOFF = [
    {"type": "create_task", "config": {"title": "Kick off {{deal.title}}", "due_in_days": 2}},
    {"type": "update_field", "config": {"field": "probability", "value": 100}},
    {"type": "send_email", "config": {"to": "{{deal.contact.email}}", "subject": "Welcome {{deal.title}}",
                                      "body": "Hi {{deal.contact.first_name}}"}},
]
# Tables a fresh scenario keeps: the schema's bookkeeping and the sweep schedule.
KEEP_TABLES = {"django_migrations", "django_content_type", "auth_permission", "django_q_schedule"}


@dataclass
class OrgData:
    org: Organization
    stages: dict[str, Stage]
    admin: User
    deal_ids: list[str] = field(default_factory=list)
    workflows: list[Workflow] = field(default_factory=list)

    @property
    def pk(self) -> int:
        return self.org.pk


def reset_database() -> None:
    """A clean slate: empty every table but the schema's bookkeeping (no cluster may run)."""
    tables = [t for t in connection.introspection.table_names() if t not in KEEP_TABLES]
    with connection.cursor() as cursor:
        cursor.execute("TRUNCATE {} RESTART IDENTITY CASCADE".format(
            ", ".join(connection.ops.quote_name(t) for t in tables)))


def make_org(slug: str, *, plan: str = Organization.Plan.ENTERPRISE, deals: int = 0,
             email_domain: str = "example.com", contacts: int = 25) -> OrgData:
    org = Organization.objects.create(name=slug.title(), slug=slug, plan=plan)
    stages = {s: Stage.objects.create(organization=org, slug=s, name=s.title(), order=i,
                                      is_won=s == "won", is_lost=s == "lost")
              for i, s in enumerate(STAGES)}
    admin = get_user_model().objects.create_user(f"{slug}-admin", f"{slug}-admin@example.com", None,
                                                 is_staff=True)
    Membership.objects.create(user=admin, organization=org, role=Membership.Role.ADMIN)
    data = OrgData(org=org, stages=stages, admin=admin)
    if deals:
        add_deals(data, deals, email_domain=email_domain, contacts=contacts)
    return data


def add_deals(data: OrgData, n: int, *, email_domain: str = "example.com", contacts: int = 25) -> list[str]:
    people = Contact.objects.bulk_create([
        Contact(organization=data.org, first_name=f"Client{i}", last_name=data.org.slug,
                email=f"client{i}.{data.org.slug}@{email_domain}") for i in range(min(n, contacts))])
    start = len(data.deal_ids)
    deals = Deal.objects.bulk_create([
        Deal(organization=data.org, title=f"{data.org.slug} deal {start + i}", amount=1000 + i,
             stage=data.stages["proposal"], contact=people[i % len(people)], owner=data.admin)
        for i in range(n)], batch_size=1000)
    ids = [str(d.pk) for d in deals]
    data.deal_ids += ids
    return ids


def add_workflow(data: OrgData, name: str = "Won kickoff", *, actions: list[dict] | None = None,
                 to_stage: str = "won", reenrollment: str = Workflow.Reenrollment.NOT_WHILE_RUNNING,
                 activate: bool = True, description: str = "") -> Workflow:
    wf = workflow_create(organization=data.org, name=name, trigger_type="deal_stage_change",
                         trigger_config={"to_stage": to_stage}, actions=KICKOFF if actions is None else actions,
                         reenrollment=reenrollment, description=description, by=None)
    if activate:
        wf = workflow_transition(workflow_id=wf.pk, name="activate", by=None)
    data.workflows.append(wf)
    return wf


def tamper_template(wf: Workflow, position: int, key: str, text: str) -> None:
    """Store a template the validation would refuse, straight into the document of the workflow
    and of its current version (QuerySet.update bypasses the immutability check and the services)."""
    version_id = wf.current_version_id
    assert version_id is not None, "the workflow was published"
    definition = copy.deepcopy(WorkflowVersion.objects.get(pk=version_id).definition)
    definition["actions"][position]["config"][key] = text
    document = documents.document_of(key=wf.key, name=wf.name, description=wf.description, definition=definition)
    WorkflowVersion.objects.filter(pk=version_id).update(document=document)
    Workflow.objects.filter(pk=wf.pk).update(document=document)
    compiled.forget()  # (this process compiled the version when it was activated)


def write_ids(path: Path, ids: list[str]) -> Path:
    path.write_text("\n".join(ids) + "\n")
    return path
