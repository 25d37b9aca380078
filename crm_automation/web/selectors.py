"""Reads for the pages: the workflow list with its figures, the run history page by page, and
the titles of the records runs were about. Every query is bounded: no COUNT over runs, no
query per row."""

import uuid
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from django.db.models import Q, QuerySet
from django.utils import timezone

from crm_automation.automation import plans
from crm_automation.automation.definition import catalog
from crm_automation.automation.models import (
    CircuitBreak,
    MonthlyUsage,
    RunStatus,
    Workflow,
    WorkflowRun,
    WorkflowStatus,
)
from crm_automation.automation.selectors import median_durations, runs_of_organization
from crm_automation.crm.models import Deal, Lead, Organization, Stage
from crm_automation.web.rows import with_values
from crm_automation.web.words import trigger_in_words

HISTORY_PAGE = 25


def stage_names(organization_id: int) -> dict[str, str]:
    return dict(Stage.objects.filter(organization_id=organization_id).order_by("order", "pk")
                .values_list("slug", "name"))


@dataclass
class WorkflowFilters:
    search: str = ""
    status: str = ""
    trigger_type: str = ""

    @classmethod
    def from_query(cls, query) -> "WorkflowFilters":
        status = query.get("status", "")
        trigger = query.get("trigger", "")
        return cls(search=query.get("q", "").strip()[:100],
                   status=status if status in WorkflowStatus.values or status == "all" else "",
                   trigger_type=trigger if trigger in catalog.TRIGGER_TYPES else "")


def workflow_list(organization: Organization, filters: WorkflowFilters) -> list[Workflow]:
    """The organization's workflows (archived ones only when asked for), each with its trigger in
    words, its node count, success rate and median duration: three queries whatever the count."""
    workflows = Workflow.objects.filter(organization=organization).order_by("name", "id")
    if filters.status and filters.status != "all":
        workflows = workflows.filter(status=filters.status)
    elif not filters.status:
        workflows = workflows.exclude(status=WorkflowStatus.ARCHIVED)
    if filters.trigger_type:
        workflows = workflows.filter(trigger_type=filters.trigger_type)
    if filters.search:
        workflows = workflows.filter(Q(name__icontains=filters.search) | Q(description__icontains=filters.search))
    found = list(workflows[:500])
    names = stage_names(organization.pk)
    medians = median_durations(workflow_ids=[w.pk for w in found]) if found else {}
    breaks = {b.workflow_id: b for b in CircuitBreak.objects.filter(workflow__in=found, closed_at__isnull=True)}
    for workflow in found:
        with_values(workflow,
                    node_count=len(workflow.document["nodes"]) - 1,  # its actions: the trigger is a node too
                    trigger_words=trigger_in_words(workflow.trigger_type, workflow.definition["trigger_config"],
                                                   names, organization.time_zone),
                    median_ms=medians.get(workflow.pk), open_break=breaks.get(workflow.pk),
                    success_rate=(round(100 * workflow.success_count / workflow.run_count)
                                  if workflow.run_count else None))
    return found


@dataclass(frozen=True)
class Usage:
    active: int
    active_limit: int | None
    logged: int
    logged_limit: int | None
    suppressed: int
    plan: str = ""  # the plan's name, for "no limit on the Enterprise plan"

    @property
    def room(self) -> int | None:
        """How many more workflows may be activated; None when the plan sets no limit."""
        return None if self.active_limit is None else max(0, self.active_limit - self.active)


def usage(organization: Organization) -> Usage:
    """“7 of 10 active”, “312 of 500 logged runs this month”: the plan's counters, no COUNT of runs."""
    month = MonthlyUsage.objects.filter(organization=organization, month=plans.month_start()).first()
    return Usage(active=Workflow.objects.filter(organization=organization, status=WorkflowStatus.ACTIVATED).count(),
                 active_limit=plans.ACTIVE_WORKFLOW_LIMIT.get(organization.plan),
                 logged=month.logged_runs if month else 0,
                 logged_limit=plans.MONTHLY_LOGGED_RUNS.get(organization.plan),
                 suppressed=month.suppressed_runs if month else 0, plan=organization.get_plan_display())


@dataclass
class RunFilters:
    workflow_id: int | None = None
    status: str = ""
    since: date | None = None
    until: date | None = None
    record: str = ""  # a deal's or lead's id
    errors: tuple[str, ...] = ()

    @classmethod
    def from_query(cls, query) -> "RunFilters":
        found, errors = cls(), []
        if query.get("workflow", "").isdigit() and len(query["workflow"]) < 18:
            found.workflow_id = int(query["workflow"])
        if query.get("status") in RunStatus.values:
            found.status = query["status"]
        for name in ("since", "until"):
            raw = query.get(name, "").strip()
            if raw:
                try:
                    setattr(found, name, date.fromisoformat(raw))
                except ValueError:
                    errors.append(f"“{raw[:20]}” is not a date (use the date picker or YYYY-MM-DD)")
        raw = query.get("record", "").strip()
        if raw:
            try:
                found.record = str(uuid.UUID(raw))
            except ValueError:
                errors.append("the record filter takes a deal's or lead's id (open a record and use its link)")
        found.errors = tuple(errors)
        return found

    @property
    def active(self) -> bool:
        return bool(self.workflow_id or self.status or self.since or self.until or self.record)

    def apply(self, runs: QuerySet[WorkflowRun]) -> QuerySet[WorkflowRun]:
        if self.workflow_id:
            runs = runs.filter(workflow_id=self.workflow_id)
        if self.status:
            runs = runs.filter(status=self.status)
        if self.since:
            runs = runs.filter(started_at__gte=_start_of(self.since))
        if self.until:
            runs = runs.filter(started_at__lt=_start_of(self.until + timedelta(days=1)))
        if self.record:
            runs = runs.filter(trigger_entity_id=self.record)
        return runs


def _start_of(day: date) -> datetime:
    """Midnight of `day` in the current (the organization's) time zone."""
    return timezone.make_aware(datetime.combine(day, time.min))


def history_page(organization: Organization, filters: RunFilters, after: str = "") -> tuple[list[WorkflowRun], str]:
    """One page of the run history, newest first, and the id to continue after ("" at the end).

    The cursor is the last run's id: its (started_at, id) position is read back (scoped to the
    organization, so another organization's id just starts from the top) and the page is an
    index range from there."""
    # Simulations are not history; a shadow-mode run is (a real event), shown with its badge.
    runs = filters.apply(runs_of_organization(organization_id=organization.pk).filter(
        Q(simulated=False) | Q(metadata__shadow=True)))
    if after.isdigit() and len(after) < 18:
        last = WorkflowRun.objects.filter(pk=int(after), organization=organization).values(
            "started_at", "id").first()
        if last:
            # (started_at, id) < (last's): the plain `started_at <=` bound is what lets the
            # database start its index range there; the OR alone would make it read from the top.
            runs = runs.filter(Q(started_at__lt=last["started_at"]) | Q(id__lt=last["id"]),
                               started_at__lte=last["started_at"])
    page = list(runs[:HISTORY_PAGE + 1])
    more = len(page) > HISTORY_PAGE
    page = page[:HISTORY_PAGE]
    name_records(page)
    names = stage_names(organization.pk)
    for run in page:  # what happened, with the stages it moved between: "Deal moves from Proposal to Won"
        with_values(run, trigger_words=trigger_in_words(run.trigger_type, run.metadata, names))
    return page, str(page[-1].pk) if more else ""


def name_records(runs: list[WorkflowRun]) -> None:
    """Set `record_title` and `record_kind` on each run: two queries for the whole page."""
    ids: dict[str, set[uuid.UUID]] = {"deal": set(), "lead": set()}
    for run in runs:
        if run.trigger_entity_type in ids:
            ids[run.trigger_entity_type].add(run.trigger_entity_id)
    titles: dict[uuid.UUID, str] = {}
    if ids["deal"]:
        titles.update(Deal.objects.filter(pk__in=ids["deal"]).values_list("pk", "title"))
    if ids["lead"]:
        titles.update(Lead.objects.filter(pk__in=ids["lead"]).values_list("pk", "name"))
    for run in runs:
        if run.trigger_entity_type in ids:
            title = titles.get(run.trigger_entity_id) or f"a deleted {run.trigger_entity_type}"
        else:
            title = "webhook message" if run.trigger_type == catalog.WEBHOOK else ""
        with_values(run, record_kind=run.trigger_entity_type, record_title=title)
