"""What the automation saves and costs an organization this month, per workflow (its Health tab
and the health API) and in all (the workflow list).

- Time saved: a workflow's completed runs this month × the minutes of manual work one replaces
  (`Workflow.minutes_saved`, set by ops and admins; 0 counts nothing).
- Costs: what its runs' steps used this month, each where it is recorded — emails sent
  (`EmailMessage`, status sent), SMS segments sent (`SmsMessage.segments`, status sent), AI tokens
  (`AiCall` input + output tokens, whatever the answer), webhook and HTTP calls (each try of a
  `WebhookDelivery`: requests, Slack and Teams posts) — priced at the organization's `UnitPrices`.
  A row belongs to the month it was written in and to the workflow of the run whose step wrote it.

"This month" starts at midnight on the 1st in the organization's time zone. Every figure is one
grouped query per kind over the organization's rows of the month (their organization index), so
the whole organization costs what one workflow does.
"""

from dataclasses import dataclass, field
from datetime import datetime, time
from decimal import Decimal
from zoneinfo import ZoneInfo

from django.db.models import Count, F, OuterRef, Q, Subquery, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from crm_automation.automation.models import AiCall, RunStatus, UnitPrices, Workflow, WorkflowRun
from crm_automation.crm.models import EmailMessage, Organization, SmsMessage
from crm_automation.webhooks.models import WebhookDelivery

CENT = Decimal("0.01")
KINDS = ("emails", "sms_segments", "ai_tokens", "webhook_calls")


def month_start(organization: Organization, now: datetime | None = None) -> datetime:
    try:
        zone = ZoneInfo(organization.time_zone)
    except (KeyError, ValueError):  # (validated on save; an old row may still hold a bad name)
        zone = ZoneInfo("UTC")
    local = (now or timezone.now()).astimezone(zone)
    return datetime.combine(local.date().replace(day=1), time.min, tzinfo=zone)


@dataclass
class Usage:
    emails: int = 0
    sms_segments: int = 0
    ai_tokens: int = 0
    webhook_calls: int = 0

    def costs(self, prices: UnitPrices) -> dict[str, Decimal]:
        """Each kind's cost, to the cent (an unsaved row's prices are the int 0: Decimal first)."""
        return {"emails": (self.emails * Decimal(prices.email)).quantize(CENT),
                "sms_segments": (self.sms_segments * Decimal(prices.sms_segment)).quantize(CENT),
                "ai_tokens": (self.ai_tokens * Decimal(prices.ai_1k_tokens) / 1000).quantize(CENT),
                "webhook_calls": (self.webhook_calls * Decimal(prices.webhook_call)).quantize(CENT)}


@dataclass
class Month:
    """A workflow's month (or the organization's, all workflows together)."""

    since: datetime
    completed_runs: int = 0
    minutes_saved: int = 0
    usage: Usage = field(default_factory=Usage)
    costs: dict[str, Decimal] = field(default_factory=dict)

    @property
    def hours_saved(self) -> Decimal:
        return (Decimal(self.completed_runs * self.minutes_saved) / 60).quantize(Decimal("0.1"))

    @property
    def total_cost(self) -> Decimal:
        return sum(self.costs.values(), Decimal("0.00"))

    def as_data(self) -> dict:
        return {"month_start": self.since.isoformat(), "completed_runs": self.completed_runs,
                "minutes_saved_per_run": self.minutes_saved, "hours_saved": self.hours_saved,
                "usage": {kind: getattr(self.usage, kind) for kind in KINDS},
                "costs": {**self.costs, "total": self.total_cost}}


def plain(price: Decimal | int) -> str:
    """A price as people write it: 0.01, not 0.010000 (the column's places) nor 1E+2."""
    return format(Decimal(price).normalize(), "f")


def prices_of(organization_id: int) -> UnitPrices:
    """The organization's unit prices; all 0 until an admin sets them (not saved here)."""
    return UnitPrices.objects.filter(organization_id=organization_id).first() or UnitPrices(
        organization_id=organization_id)


def _by_workflow(rows, total) -> dict[int, int]:
    """{workflow id: total} of `rows` (a step's effect rows, each with a run id), grouped by the
    workflow of their run (one indexed look-up of the run per row, inside the query)."""
    run_workflow = WorkflowRun.objects.filter(pk=OuterRef("run_id")).values("workflow_id")[:1]
    grouped = (rows.filter(run_id__isnull=False).annotate(workflow_id=Subquery(run_workflow))
               .values("workflow_id").annotate(n=Coalesce(total, 0)).order_by())
    return {row["workflow_id"]: row["n"] for row in grouped if row["workflow_id"] is not None}


def usage_by_workflow(organization_id: int, since: datetime) -> dict[int, Usage]:
    """What each workflow's runs used since `since`."""
    mine = {"organization_id": organization_id, "created_at__gte": since}
    found: dict[int, Usage] = {}
    for kind, counts in (
        ("emails", _by_workflow(EmailMessage.objects.filter(status=EmailMessage.Status.SENT, **mine), Count("id"))),
        ("sms_segments", _by_workflow(SmsMessage.objects.filter(status=SmsMessage.Status.SENT, **mine),
                                      Sum("segments"))),
        ("ai_tokens", _by_workflow(AiCall.objects.filter(**mine), Sum(F("input_tokens") + F("output_tokens")))),
        ("webhook_calls", _by_workflow(WebhookDelivery.objects.filter(**mine), Sum("attempts"))),
    ):
        for workflow_id, n in counts.items():
            setattr(found.setdefault(workflow_id, Usage()), kind, n)
    return found


def _completed_runs(organization_id: int, since: datetime, workflow_id: int | None = None) -> dict[int, int]:
    runs = WorkflowRun.objects.filter(organization_id=organization_id, started_at__gte=since, simulated=False,
                                      status=RunStatus.COMPLETED)
    if workflow_id is not None:
        runs = runs.filter(workflow_id=workflow_id)
    else:
        runs = runs.filter(workflow__minutes_saved__gt=0)  # the others save nothing to count
    return dict(runs.values("workflow_id").annotate(n=Count("id")).order_by().values_list("workflow_id", "n"))


def workflow_month(workflow: Workflow, now: datetime | None = None) -> Month:
    """The workflow's time saved and costs this month."""
    since = month_start(workflow.organization, now)
    usage = usage_by_workflow(workflow.organization_id, since).get(workflow.pk, Usage())
    completed = _completed_runs(workflow.organization_id, since, workflow.pk).get(workflow.pk, 0)
    return Month(since=since, completed_runs=completed, minutes_saved=workflow.minutes_saved, usage=usage,
                 costs=usage.costs(prices_of(workflow.organization_id)))


@dataclass
class WorkflowShare:
    workflow_id: int
    name: str
    hours_saved: Decimal
    cost: Decimal


@dataclass
class OrganizationMonth:
    since: datetime
    hours_saved: Decimal
    usage: Usage
    costs: dict[str, Decimal]
    workflows: list[WorkflowShare] = field(default_factory=list)  # those that saved or cost something

    @property
    def total_cost(self) -> Decimal:
        return sum(self.costs.values(), Decimal("0.00"))


def _hours(minutes: int) -> Decimal:
    return (Decimal(minutes) / 60).quantize(Decimal("0.1"))


def organization_month(organization: Organization, now: datetime | None = None) -> OrganizationMonth:
    """All the organization's workflows together this month, and each one's share (most first)."""
    since = month_start(organization, now)
    prices = prices_of(organization.pk)
    minutes = dict(Workflow.objects.filter(organization=organization).filter(~Q(minutes_saved=0))
                   .values_list("pk", "minutes_saved"))
    saved = {workflow_id: n * minutes.get(workflow_id, 0)
             for workflow_id, n in _completed_runs(organization.pk, since).items()}
    used = usage_by_workflow(organization.pk, since)
    usage = Usage()
    for each in used.values():
        for kind in KINDS:
            setattr(usage, kind, getattr(usage, kind) + getattr(each, kind))
    names = dict(Workflow.objects.filter(organization=organization, pk__in=set(saved) | set(used))
                 .values_list("pk", "name"))
    shares = [WorkflowShare(workflow_id, name, _hours(saved.get(workflow_id, 0)),
                            sum(used.get(workflow_id, Usage()).costs(prices).values(), Decimal("0.00")))
              for workflow_id, name in names.items()]
    shares.sort(key=lambda share: (-share.hours_saved, -share.cost, share.name))
    return OrganizationMonth(since=since, hours_saved=_hours(sum(saved.values())), usage=usage,
                             costs=usage.costs(prices), workflows=shares)
